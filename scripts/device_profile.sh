#!/usr/bin/env bash
# One device pass of per-task profiles (no A/B, no tests): for every model and batch,
# `mk bench --profile` of tg128 after a 64-token prompt; prints the per-op table, the
# linear tasks' phases and the critical path, and keeps the logs and traces under $OUT.
#   BUILD=build-x             the build whose mk runs (default build)
#   MODELS="arch preset,..."  (default: qwen3 0.6b)
#   BATCHES=1,8               (default: 1,8)
# Pack the build with scripts/device_pack.sh, then
#   run(carry=["build-carry"], command="tar -xJf build-carry/x.tar.xz &&
#       BUILD=build-x scripts/device_profile.sh")
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$PWD/$BUILD/device-out}
M=${MK_MODELS:-/tmp/mk-models}
mkdir -p "$OUT"
export MK_SKIP_DEPS=1
IFS=, read -r -a models <<<"${MODELS:-qwen3 0.6b}"
for m in "${models[@]}"; do
    set -- $m
    d="$M/$1-$2"
    [ -f "$d/config.json" ] || "$BUILD/mk" synth --arch "$1" --preset "$2" --out "$d" >/dev/null
    log="$OUT/prof-$2.log"
    timeout 300 "$BUILD/mk" bench "$d" --name "$1-$2-prof" --batch "${BATCHES:-1,8}" --reps 1 \
        --tg 128 --depth 64 --pp 0 --baselines none --profile "$OUT/p-$2" --profile-steps 8 \
        >"$log" 2>&1
    grep -E '^\| mk|phased linear tasks|critical path \(' "$log"
    for f in "$OUT/p-$2"-b*.txt; do
        echo "== $1 $2 $(basename "$f" .txt)"
        sed -n '/^time by op/,/^  SAMPLE/p' "$f"
    done
done
(cd "$OUT" && tar czf traces.tgz p-*.json prof-*.log 2>/dev/null && rm -f p-*.json prof-*.log)
ls "$OUT"
