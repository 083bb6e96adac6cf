#!/usr/bin/env bash
# Where a latency-bound decode step stalls: Nsight Compute on one megakernel launch of
# tg16 (Qwen3-0.6B, B=1, synthesized weights) with warp-state and per-instruction
# sampling sections, plus the SASS size of every kernel of the build. Outputs under $OUT:
# sass_sizes.txt, ncu_details.txt, ncu_source.csv (per-SASS-instruction samples by stall
# reason), mk06.ncu-rep. Pack the build with scripts/device_pack.sh, then
#   run(carry=["build-carry"], command="tar -xJf build-carry/dev.tar.xz &&
#       BUILD=build-dev scripts/device_ncu.sh")
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$PWD/$BUILD/device-out}
M=${MK_MODELS:-/tmp/mk-models}
B=${MK_NCU_BATCH:-1}
mkdir -p "$OUT"
export MK_SKIP_DEPS=1
[ -f "$M/qwen3-0.6b/config.json" ] ||
    "$BUILD/mk" synth --arch qwen3 --preset 0.6b --out "$M/qwen3-0.6b" >/dev/null
cuobjdump -sass "$BUILD/mk" 2>/dev/null | awk '
    /Function :/ { f = $3 }
    /^ +\/\*[0-9a-f]+\*\// { n[f]++ }
    END { for (f in n) print n[f], f }' | sort -n | tail -40 >"$OUT/sass_sizes.txt"
tail -8 "$OUT/sass_sizes.txt"
timeout 400 ncu -k regex:mk_megakernel --launch-skip 1 --launch-count 1 \
    --section WarpStateStats --section SourceCounters --section SchedulerStats \
    --section InstructionStats --section LaunchStats -f -o "$OUT/mk06" \
    "$BUILD/mk" bench "$M/qwen3-0.6b" --batch "$B" --reps 1 --tg 16 --depth 64 --pp 0 \
    --baselines none >"$OUT/ncu_run.log" 2>&1
echo "ncu rc $?"; tail -5 "$OUT/ncu_run.log"
ncu -i "$OUT/mk06.ncu-rep" --page details >"$OUT/ncu_details.txt" 2>&1
grep -iE "stall|no instruction|warp cycles|issued|branch" "$OUT/ncu_details.txt" | head -40
ncu -i "$OUT/mk06.ncu-rep" --page source --csv --print-source sass >"$OUT/ncu_source.csv" 2>&1
wc -c "$OUT/ncu_source.csv"; head -3 "$OUT/ncu_source.csv" | cut -c1-600
ls -la "$OUT"
