#!/usr/bin/env bash
# One device pass of issue 8's measurements, A/B in the same run: the GPU tests and
# compute-sanitizer; the sync floor; tg128 after a 64-token prompt at B=1 and B=8 for
# Qwen3-0.6B, Llama-3.2-1B and Qwen3-8B for every variant (binary + environment; same
# machine, same minute: a control binary tells a slower device from a slower build); the
# per-task profile and the profile-guided plan of Qwen3-0.6B (first variant); tg128 at
# depth 4096 (B=1, Qwen3-0.6B and Qwen3-8B, every variant). Logs and JSON lines under $OUT.
#   VARIANTS="name=binary[:VAR=value,...] ..."   default: "ring1=$BUILD/mk
#            ring0=$BUILD/mk:MK_GPU_RING=0", plus "old=$OLD_MK" first when OLD_MK is set.
#   CTX_VARIANTS="name ..."   the variants of the depth-4096 runs (default: all)
#   NO_PGO=1                  profile without the profile-guided plan
#   MODELS="arch preset,..."  the tg128 models (default: qwen3 0.6b,llama 1b,qwen3 8b)
#   SKIP_TESTS=1              no GPU tests and sanitizer (a pass of binaries already tested)
# Pack the build with scripts/device_pack.sh, then
#   run(carry=["build-carry"], command="tar -xJf build-carry/dev.tar.xz &&
#       BUILD=build-dev scripts/device_ab.sh")
. "$(dirname "$0")/device_env.sh"
if [ -z "${VARIANTS:-}" ]; then
    VARIANTS="ring1=$BUILD/mk ring0=$BUILD/mk:MK_GPU_RING=0"
    [ -n "${OLD_MK:-}" ] && VARIANTS="old=$OLD_MK $VARIANTS"
fi
# run SPEC ARGS...: SPEC = NAME=BIN[:VAR=value,...]; BIN with ARGS under those variables,
# bounded by 300 s
run() {
    local bin=${1#*=} envs=""
    shift
    case $bin in *:*) envs=${bin#*:}; bin=${bin%%:*} ;; esac
    timeout 300 env ${envs//,/ } "$bin" "$@"
}
synth qwen3 0.6b
export MK_GPU_QWEN3_06B=$M/qwen3-0.6b
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
if [ -z "${SKIP_TESTS:-}" ]; then
    MK_TEST_FILTER='^test_gpu_(model|tasks|sanitize|engine|timeout|profile|prefill)' BUILD="$BUILD" \
        timeout 300 tests/run.sh >"$OUT/tests.log" 2>&1
    tail -10 "$OUT/tests.log"
    timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/test_gpu_sanitize" 2>&1 | tail -1
fi
"$BUILD/mk" gpu --sync-bench 2>&1 | tail -1
common=(--batch 1,8 --reps 3 --tg 128 --depth 64 --pp 0 --baselines none --jsonl "$OUT/results.jsonl")
first=""
for v in $VARIANTS; do
    case $v in old=*) ;; *) [ -z "$first" ] && first=${v%%=*} ;; esac
done
IFS=, read -r -a models <<<"${MODELS:-qwen3 0.6b,llama 1b,qwen3 8b}"
for m in "${models[@]}"; do
    set -- $m
    synth "$1" "$2"
    for v in $VARIANTS; do
        name=${v%%=*}
        extra=()
        [ "$2" = 0.6b ] && [ "$name" = "$first" ] &&
            extra=(--profile "$OUT/p06" --profile-steps 8)
        [ ${#extra[@]} -gt 0 ] && [ -z "${NO_PGO:-}" ] && extra+=(--pgo)
        run "$v" bench "$M/$1-$2" --name "$1-$2-$name" "${common[@]}" \
            ${extra[@]+"${extra[@]}"} >"$OUT/bench-$2-$name.log" 2>&1
        grep -E '^\| mk|phased linear tasks|critical path \(|pgo:' "$OUT/bench-$2-$name.log" |
            sed "s/^/$name /"
    done
done
for m in "qwen3 0.6b" "qwen3 8b"; do
    set -- $m
    for v in $VARIANTS; do
        name=${v%%=*}
        case " ${CTX_VARIANTS:-$name} " in *" $name "*) ;; *) continue ;; esac
        run "$v" bench "$M/$1-$2" --name "$1-$2-ctx4096-$name" --batch 1 \
            --reps 2 --tg 128 --depth 4096 --pp 0 --baselines none --jsonl "$OUT/results.jsonl" 2>&1 |
            grep -E '^\| mk \|' | sed "s/^/ctx4096 $name /"
    done
done
# the device tool returns at most 8 files: pack the traces and logs
(cd "$OUT" && tar czf traces.tgz p06*.json bench-*.log 2>/dev/null && rm -f p06*.json bench-*.log)
ls "$OUT"
