#!/usr/bin/env bash
# One device pass of per-task profiles (no tests): for every model and variant,
# `mk bench --profile` of tg128 after a 64-token prompt at the given batches; prints the
# bench lines, the linear tasks' phases, the critical path and the per-op table, and keeps
# the summaries (p-MODEL-VARIANT-bB.txt) and logs in $OUT/profiles.tgz.
#   BUILD=build-x             the build whose mk synthesizes the models (default build)
#   VARIANTS="name=bin ..."   the binaries profiled (default: "mk=$BUILD/mk")
#   MODELS="arch preset,..."  (default: qwen3 0.6b)
#   BATCHES=1,8               (default: 1,8)
# Pack the builds with scripts/device_pack.sh, then
#   run(carry=["build-carry"], command="tar -xJf build-carry/x.tar.xz &&
#       BUILD=build-x scripts/device_profile.sh")
. "$(dirname "$0")/device_env.sh"
IFS=, read -r -a models <<<"${MODELS:-qwen3 0.6b}"
for m in "${models[@]}"; do
    set -- $m
    synth "$1" "$2"
    d="$M/$1-$2"
    for v in ${VARIANTS:-mk=$BUILD/mk}; do
        name=${v%%=*} bin=${v#*=}
        log="$OUT/prof-$2-$name.log"
        timeout 300 "$bin" bench "$d" --name "$1-$2-$name" --batch "${BATCHES:-1,8}" --reps 1 \
            --tg 128 --depth 64 --pp 0 --baselines none --profile "$OUT/p-$2-$name" \
            --profile-steps 8 >"$log" 2>&1
        echo "== $1 $2 $name"
        grep -E '^\| mk|phased linear tasks|critical path \(' "$log"
        for f in "$OUT/p-$2-$name"-b*.txt; do
            echo "-- $(basename "$f" .txt)"
            sed -n '/^  op /,/^  SAMPLE/p' "$f" | grep -E 'NORM_LINEAR|LINEAR_RESIDUAL|GATE_UP|ATTN|LOGITS'
        done
    done
done
# the device tool returns at most 8 files: the summaries and logs in one tarball, the
# traces (4 MB a variant) only with KEEP_TRACES=1
(cd "$OUT" && tar czf profiles.tgz p-*.txt prof-*.log ${KEEP_TRACES:+p-*.json} 2>/dev/null &&
    rm -f p-*.txt prof-*.log p-*.json)
ls "$OUT"
