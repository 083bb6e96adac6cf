#!/usr/bin/env bash
# Run every test and end with the plain line "N passed, N failed".
#   unit   build/asan/tests/test_*      C tests built with ASan + UBSan
#   py     tests/py/test_*.py           oracle and CLI tests (run the sanitized `mk`)
#   fuzz   build/fuzz/fuzz_*            libFuzzer targets, MK_FUZZ_SECONDS each (default 10)
#   gpu    build/tests/test_*           only when a CUDA device is visible
# Each test prints "PASS name" / "FAIL name" lines; a binary that exits non-zero
# without printing a FAIL line (a crash, a sanitizer report) counts as one failure.
# MK_TEST_FILTER=regex runs only the tests whose file name matches.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-python3}
export MK_ROOT=$PWD MK_BUILD=$BUILD MK_BIN=$PWD/$BUILD/asan/mk MK_BIN_FAST=$PWD/$BUILD/mk
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export PYTHONUNBUFFERED=1
FILTER=${MK_TEST_FILTER:-.}
FUZZ_SECONDS=${MK_FUZZ_SECONDS:-10}
LOGDIR=${MK_TEST_LOGS:-$BUILD/test-logs}
mkdir -p "$LOGDIR"
passed=0 failed=0
failed_names=()

run_one() { # name, command...
    local name=$1; shift
    local log="$LOGDIR/$(basename "$name").log"
    local t0=$SECONDS
    timeout "${MK_TEST_TIMEOUT:-1800}" "$@" >"$log" 2>&1
    local rc=$?
    local p f
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    printf '%-40s %4d passed %3d failed  %4ds\n' "$name" "$p" "$f" $((SECONDS - t0))
    if [ "$f" -gt 0 ]; then
        failed_names+=("$name")
        grep -E '^(FAIL |    )' "$log" | head -40 | sed 's/^/  | /'
        [ "$rc" -ne 0 ] && { echo "  | exit status $rc; last lines of $log:"; tail -15 "$log" | sed 's/^/  | /'; }
    fi
}

for t in "$BUILD"/asan/tests/test_*; do
    [ -x "$t" ] || continue
    [[ $(basename "$t") =~ $FILTER ]] || continue
    run_one "unit/$(basename "$t")" "$t"
done

for t in tests/py/test_*.py; do
    [ -f "$t" ] || continue
    [[ $(basename "$t") =~ $FILTER ]] || continue
    run_one "py/$(basename "$t")" "$PYTHON" "$t"
done

for t in "$BUILD"/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    n=$(basename "$t")
    [[ $n =~ $FILTER ]] || continue
    work=$(mktemp -d)
    [ -d "tests/fuzz/corpus/${n#fuzz_}" ] && cp -r "tests/fuzz/corpus/${n#fuzz_}/." "$work/"
    run_one "fuzz/$n (${FUZZ_SECONDS}s)" bash -c \
        "'$t' -max_total_time=$FUZZ_SECONDS -print_final_stats=1 '$work' && echo 'PASS $n'"
    rm -rf "$work"
done

gpu_line=$("$BUILD/mk" gpu 2>&1); gpu_rc=$?
if [ "$gpu_rc" -eq 0 ]; then
    echo "GPU: $gpu_line"
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        [[ $(basename "$t") =~ $FILTER ]] || continue
        run_one "gpu/$(basename "$t")" "$t"
    done
else
    echo "GPU tests skipped: $gpu_line"
fi

[ "${#failed_names[@]}" -gt 0 ] && echo "failed: ${failed_names[*]} (logs in $LOGDIR)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
