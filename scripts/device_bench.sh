#!/usr/bin/env bash
# The benchmark of a device check: synthesize the benchmark models on the GPU machine
# (random weights, real shapes; decode speed does not depend on the values) and run
# `mk bench` on each: the streaming-read ceiling, tg128 after a 64-token prompt and pp512
# for each batch of MK_BENCH_BATCHES (default 1), with the per-op baselines
# (MK_BENCH_BASELINES, default all). Prints the markdown table of each model; with
# MK_BENCH_JSONL=FILE the JSON lines are appended to FILE too; MK_BENCH_SERVE="ARGS" also
# runs `mk bench --serve-sim ARGS` (TTFT/TPOT/ITL of a request stream).
# MK_BENCH_PROFILE=DIR: each model's mk bench also profiles its first tg test and measures
# the plan rescheduled with the profiled task times (--profile, --pgo: system mk-pgo); a
# model's traces and summaries are packed into DIR/profile-NAME.tgz (PNG timelines: fetch
# it and run bench/profile_png.py NAME.json where matplotlib is).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MK_MODELS=${MK_MODELS:-/tmp/mk-models}
MODELS=${MK_BENCH_MODELS:-qwen3:0.6b:qwen3-0.6b llama:1b:llama-3.2-1b qwen3:8b:qwen3-8b}
export MK_COMMIT=${MK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
batches=$(echo "${MK_BENCH_BATCHES:-1}" | tr ' ' ',')
extra=()
[ -n "${MK_BENCH_JSONL:-}" ] && extra+=(--jsonl "$MK_BENCH_JSONL")
prof_tmp=
if [ -n "${MK_BENCH_PROFILE:-}" ]; then
    mkdir -p "$MK_BENCH_PROFILE" && MK_BENCH_PROFILE=$(cd "$MK_BENCH_PROFILE" && pwd) && prof_tmp=$(mktemp -d) || exit 1
fi
for m in $MODELS; do
    arch=${m%%:*}; rest=${m#*:}; preset=${rest%%:*}; name=${rest#*:}
    dir=$MK_MODELS/$arch-$preset
    [ -f "$dir/config.json" ] || "$BUILD/mk" synth --arch "$arch" --preset "$preset" --out "$dir" >/dev/null || exit 1
    prof=()
    [ -n "$prof_tmp" ] && prof=(--profile "$prof_tmp/$name" --pgo)
    "$BUILD/mk" bench "$dir" --name "$name" --batch "$batches" --reps "${MK_BENCH_REPS:-5}" \
        --tg "${MK_BENCH_TG:-128}" --depth "${MK_BENCH_DEPTH:-64}" --pp "${MK_BENCH_PP:-512}" \
        --baselines "${MK_BENCH_BASELINES:-all}" ${extra[@]+"${extra[@]}"} ${prof[@]+"${prof[@]}"} || exit 1
    if [ -n "$prof_tmp" ]; then
        (cd "$prof_tmp" && tar czf "$MK_BENCH_PROFILE/profile-$name.tgz" "$name"* && rm -f "$name"*) || exit 1
    fi
    if [ -n "${MK_BENCH_SERVE:-}" ]; then # e.g. "--requests 64 --rate 8"
        # shellcheck disable=SC2086
        "$BUILD/mk" bench "$dir" --name "$name" --serve-sim $MK_BENCH_SERVE \
            ${extra[@]+"${extra[@]}"} || exit 1
    fi
done
[ -z "$prof_tmp" ] || rmdir "$prof_tmp"
