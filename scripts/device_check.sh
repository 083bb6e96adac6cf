#!/usr/bin/env bash
# One call on the GPU machine (the `device` tool): check the carried build, run the GPU
# tests, compute-sanitizer on a tiny model, and a short benchmark; logs under $OUT, a
# short summary table printed last. Build here first (`make -j2 test-build`), then
#   run(command="scripts/device_check.sh", carry=["build"])
# Optional: MK_DEVICE_STEPS="gpu tests sanitizer bench" (default all), MK_BENCH_ARGS.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$PWD/$BUILD/device-out}
mkdir -p "$OUT"
STEPS=${MK_DEVICE_STEPS:-gpu tests sanitizer bench}
export MK_SKIP_DEPS=1 PYTHONUNBUFFERED=1
rows=()

step() { # name, command...
    local name=$1; shift
    local t0=$(date +%s.%N)
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    local summary
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$OUT/$name.log" | tail -1)
    [ -z "$summary" ] && summary=$(tail -1 "$OUT/$name.log" | cut -c1-70)
    rows+=("$(printf '%-10s rc=%-3d %7ss  %s' "$name" "$rc" "$dt" "$summary")")
    echo "== $name (rc=$rc, ${dt}s): last lines"; tail -25 "$OUT/$name.log"
}

for s in $STEPS; do
    case $s in
    gpu) step gpu bash -c "nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv; '$BUILD/mk' gpu" ;;
    tests) step tests env BUILD="$BUILD" MK_TEST_FILTER="${MK_TEST_FILTER:-^test_gpu}" tests/run.sh ;;
    sanitizer)
        if [ -x "$BUILD/tests/test_gpu_sanitize" ]; then
            step sanitizer compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/test_gpu_sanitize"
        else
            rows+=("sanitizer  skipped: $BUILD/tests/test_gpu_sanitize not built")
        fi ;;
    bench) step bench bash -c "scripts/device_bench.sh 2>&1" ;;
    esac
done

echo
echo "== summary ($(date -u +%F), $("$BUILD/mk" gpu 2>&1 | cut -d, -f1))"
printf '%s\n' "${rows[@]}"
