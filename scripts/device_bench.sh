#!/usr/bin/env bash
# The decode benchmark of a device check: synthesize the benchmark models on the GPU
# machine (random weights, real shapes; decode speed does not depend on the values) and
# run bench/gpu_decode (tg128 after a 64-token prompt, each batch of MK_BENCH_BATCHES, default 1)
# on them, after the streaming-read ceiling. Prints one line and one JSON line per model.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MK_MODELS=${MK_MODELS:-/tmp/mk-models}
MODELS=${MK_BENCH_MODELS:-qwen3:0.6b:qwen3-0.6b llama:1b:llama-3.2-1b qwen3:8b:qwen3-8b}
args=()
for m in $MODELS; do
    arch=${m%%:*}; rest=${m#*:}; preset=${rest%%:*}; name=${rest#*:}
    dir=$MK_MODELS/$arch-$preset
    [ -f "$dir/config.json" ] || "$BUILD/mk" synth --arch "$arch" --preset "$preset" --out "$dir" >/dev/null || exit 1
    args+=(--name "$name" "$dir")
done
export MK_COMMIT=${MK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
for b in ${MK_BENCH_BATCHES:-1}; do
    "$BUILD/bench/gpu_decode" --batch "$b" --reps "${MK_BENCH_REPS:-5}" "${args[@]}" || exit 1
done
