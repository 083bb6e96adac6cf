#!/usr/bin/env bash
# One device pass of issue 8's measurements, A/B in the same run: the GPU tests and
# compute-sanitizer; the sync floor; tg128 after a 64-token prompt at B=1 and B=8 for
# Qwen3-0.6B, Llama-3.2-1B and Qwen3-8B with the weight ring on and off (MK_GPU_RING=0),
# and with an older `mk` as a control when OLD_MK names one (same machine, same minute:
# catches a slower device); the per-task profile and the profile-guided plan of Qwen3-0.6B;
# tg128 at depth 4096 (B=1, Qwen3-0.6B and Qwen3-8B). Logs and JSON lines under $OUT.
# Pack the build with scripts/device_pack.sh, then
#   run(carry=["build-carry"], command="tar -xJf build-carry/dev.tar.xz &&
#       BUILD=build-dev scripts/device_ab.sh")
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$PWD/$BUILD/device-out}
M=${MK_MODELS:-/tmp/mk-models}
mkdir -p "$OUT"
export MK_SKIP_DEPS=1
synth() { [ -f "$M/$1-$2/config.json" ] || "$BUILD/mk" synth --arch "$1" --preset "$2" --out "$M/$1-$2" >/dev/null; }
synth qwen3 0.6b
export MK_GPU_QWEN3_06B=$M/qwen3-0.6b
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
MK_TEST_FILTER='^test_gpu_(model|tasks|sanitize|engine|timeout|profile|prefill)' BUILD="$BUILD" \
    timeout 300 tests/run.sh >"$OUT/tests.log" 2>&1
tail -10 "$OUT/tests.log"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/test_gpu_sanitize" 2>&1 | tail -1
"$BUILD/mk" gpu --sync-bench 2>&1 | tail -1
common=(--batch 1,8 --reps 3 --tg 128 --depth 64 --pp 0 --baselines none --jsonl "$OUT/results.jsonl")
for m in "qwen3 0.6b" "llama 1b" "qwen3 8b"; do
    set -- $m
    synth "$1" "$2"
    if [ -n "${OLD_MK:-}" ]; then
        timeout 200 "$OLD_MK" bench "$M/$1-$2" --name "$1-$2-old" "${common[@]}" 2>&1 |
            grep -E '^\| mk \|' | sed 's/^/old   /'
    fi
    for ring in 1 0; do
        extra=()
        [ "$2" = 0.6b ] && [ $ring = 1 ] && extra=(--profile "$OUT/p06" --profile-steps 8 --pgo)
        MK_GPU_RING=$ring timeout 300 "$BUILD/mk" bench "$M/$1-$2" --name "$1-$2-ring$ring" \
            "${common[@]}" ${extra[@]+"${extra[@]}"} >"$OUT/bench-$2-ring$ring.log" 2>&1
        grep -E '^\| mk|weight-ring tasks|critical path \(|pgo:' "$OUT/bench-$2-ring$ring.log" |
            sed "s/^/ring$ring /"
    done
done
for m in "qwen3 0.6b" "qwen3 8b"; do
    set -- $m
    timeout 300 "$BUILD/mk" bench "$M/$1-$2" --name "$1-$2-ctx4096" --batch 1 --reps 2 --tg 128 \
        --depth 4096 --pp 0 --baselines none --jsonl "$OUT/results.jsonl" 2>&1 |
        grep -E '^\| mk \|' | sed 's/^/ctx4096 /'
done
# the device tool returns at most 8 files: pack the traces and logs
(cd "$OUT" && tar czf traces.tgz p06*.json bench-*.log 2>/dev/null && rm -f p06*.json bench-*.log)
ls "$OUT"
