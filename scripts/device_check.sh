#!/usr/bin/env bash
# One call on the GPU machine (the `device` tool): check the carried build, synthesize the
# real-shape test model, run the GPU tests, compute-sanitizer on a tiny model, and the
# decode benchmark; logs under $OUT, a short summary table printed last. Build here first
# (`make BUILD=build-gpu -j2 gpu-tests`), then
#   run(command="BUILD=build-gpu scripts/device_check.sh", carry=["build-gpu"])
# Optional: MK_DEVICE_STEPS="gpu models tests sanitizer cli bench decode peers serve" (default all
# but decode; cli = mk generate --backend gpu vs cpu; bench = scripts/device_bench.sh = `mk bench`, decode = bench/gpu_decode for each
# of MK_BENCH_BATCHES), MK_TEST_FILTER (default: the megakernel's tests), MK_BENCH_MODELS.
# Issue 8's floors (not in the default): sync = `mk gpu --sync-bench` (ns per cross-SM hop
# and per all-to-all level of kernels/sync.cuh, no work); ctx4096 = scripts/device_bench.sh
# with tg128 after a 4,096-token prompt at batch 1, no baselines, no pp, MK_CTX_REPS
# (default 3) reps: ms/token against the floor of weights + KV bytes (mk bench's floor ms).
# profile = scripts/device_bench.sh with MK_BENCH_PROFILE=$OUT (tg128 after 64 tokens, no
# baselines, no pp): mk bench --profile --pgo per model, $OUT/profile-NAME.tgz.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$PWD/$BUILD/device-out}
mkdir -p "$OUT"
STEPS=${MK_DEVICE_STEPS:-gpu models tests sanitizer cli bench}
export MK_SKIP_DEPS=1 PYTHONUNBUFFERED=1 MK_ROOT=$PWD
export MK_MODELS=${MK_MODELS:-/tmp/mk-models}
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

synth() { # arch preset -> directory (made once per machine)
    local dir=$MK_MODELS/$1-$2
    [ -f "$dir/config.json" ] || "$BUILD/mk" synth --arch "$1" --preset "$2" --out "$dir" >/dev/null || return 1
    echo "$dir"
}

for s in $STEPS; do
    case $s in
    gpu) step gpu bash -c "nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv; '$BUILD/mk' gpu" ;;
    models)
        step models synth qwen3 0.6b
        [ -f "$MK_MODELS/qwen3-0.6b/config.json" ] && export MK_GPU_QWEN3_06B=$MK_MODELS/qwen3-0.6b ;;
    tests) step tests env BUILD="$BUILD" MK_TEST_FILTER="${MK_TEST_FILTER:-^test_gpu_(model|tasks|timeout|sanitize|engine)}" tests/run.sh ;;
    sanitizer)
        if [ -x "$BUILD/tests/test_gpu_sanitize" ]; then
            step sanitizer compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/test_gpu_sanitize"
        else
            rows+=("sanitizer  skipped: $BUILD/tests/test_gpu_sanitize not built")
        fi ;;
    bench) step bench bash -c "scripts/device_bench.sh 2>&1" ;;
    sync) step sync "$BUILD/mk" gpu --sync-bench ;;
    profile) # the per-task profile and the profile-guided plan (mk-pgo) of each model
        step profile env MK_BENCH_PROFILE="$OUT" MK_BENCH_PP=0 MK_BENCH_BASELINES=none \
            bash -c "scripts/device_bench.sh 2>&1" ;;
    ctx4096) # the depth prompt is fed one token per step: ~4,200 steps per rep (8B: ~30 s)
        step ctx4096 env MK_BENCH_DEPTH=4096 MK_BENCH_TG=128 MK_BENCH_PP=0 MK_BENCH_BATCHES=1 \
            MK_BENCH_BASELINES=none MK_BENCH_REPS="${MK_CTX_REPS:-3}" \
            MK_BENCH_JSONL="$OUT/results.jsonl" bash -c "scripts/device_bench.sh 2>&1" ;;
    cli) # mk generate --backend gpu: same greedy ids as --backend cpu on a golden checkpoint
        gold=tests/data/goldens/qwen3_bf16/ckpt
        step cli bash -c "'$BUILD/mk' generate $gold --prompt-ids 5,6,7,8 -n 12 --ignore-eos --backend gpu --output json >'$OUT/gen-gpu.json' &&
            '$BUILD/mk' generate $gold --prompt-ids 5,6,7,8 -n 12 --ignore-eos --backend cpu --output json >'$OUT/gen-cpu.json' &&
            python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))[\"ids\"]; c=json.load(open(sys.argv[2]))[\"ids\"]; print(\"gpu\", g); print(\"cpu\", c); sys.exit(g != c)' '$OUT/gen-gpu.json' '$OUT/gen-cpu.json' &&
            '$BUILD/mk' generate \"\$MK_MODELS/qwen3-0.6b\" --prompt-ids 1,2,3,4,5,6,7,8 -n 64 --ignore-eos --backend gpu" ;;
    peers) # PyTorch on the same checkpoints: eager and torch.compile + one CUDA graph
        for m in ${MK_PEER_MODELS:-qwen3:0.6b:qwen3-0.6b llama:1b:llama-3.2-1b}; do
            arch=${m%%:*}; rest=${m#*:}; preset=${rest%%:*}; name=${rest#*:}
            dir=$(synth "$arch" "$preset") &&
                step "peers-$name" python3 bench/peers/torch_decode.py "$dir" --name "$name" \
                    --compile-mode "${MK_PEER_COMPILE_MODE:-default}" --reps 3 --warmup 1 \
                    --jsonl "$OUT/results.jsonl"
        done ;;
    serve) # mk serve on the GPU backend under load: TTFT / TPOT / ITL at concurrency 1, 8, 32
        for m in ${MK_SERVE_MODELS:-qwen3:0.6b:qwen3-0.6b}; do
            arch=${m%%:*}; rest=${m#*:}; preset=${rest%%:*}; name=${rest#*:}
            dir=$MK_MODELS/$arch-$preset-tok tokdir=data/tokenizers/$arch
            [ -d "$tokdir" ] || tokdir=data/tokenizers/${arch}3  # llama -> llama3
            [ -f "$dir/config.json" ] || "$BUILD/mk" synth --arch "$arch" --preset "$preset" \
                --tokenizer "$tokdir" --out "$dir" >/dev/null
            step "serve-$name" python3 bench/serve_load.py --serve "$dir" --mk "$BUILD/mk" \
                --model-label "$name" --concurrency "${MK_SERVE_CONCURRENCY:-1,8,32}" \
                --input-len 64 --output-len 64 --out "$OUT/results.jsonl"
        done ;;
    decode) # the megakernel's own decode driver (bench/gpu_decode), tg128 per batch
        args=()
        for m in ${MK_BENCH_MODELS:-qwen3:0.6b:qwen3-0.6b llama:1b:llama-3.2-1b qwen3:8b:qwen3-8b}; do
            arch=${m%%:*}; rest=${m#*:}; preset=${rest%%:*}
            dir=$(synth "$arch" "$preset") && args+=(--name "${rest#*:}" "$dir")
        done
        for b in ${MK_BENCH_BATCHES:-1}; do
            step "decode-b$b" "$BUILD/bench/gpu_decode" --batch "$b" --reps "${MK_BENCH_REPS:-5}" "${args[@]}"
        done ;;
    esac
done
cp "$BUILD"/test-logs/test_gpu_*.log "$OUT/" 2>/dev/null

echo
echo "== summary ($(date -u +%F), $("$BUILD/mk" gpu 2>&1 | cut -d, -f1))"
grep -h '^JSON ' "$OUT"/decode-b*.log 2>/dev/null | cut -c6-
grep -h -E '^(ceiling|qwen|llama)' "$OUT"/decode-b*.log 2>/dev/null | cut -c1-150
printf '%s\n' "${rows[@]}"
