#!/usr/bin/env bash
# The short benchmark of a device check: synthesize the benchmark models on the GPU
# machine (random weights, real shapes) and run `mk bench` on each. Extended as the
# benchmark issue lands; prints one line per measurement.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODELS=${MK_BENCH_MODELS:-qwen3:0.6b}
for m in $MODELS; do
    arch=${m%%:*}; preset=${m##*:}
    dir=/tmp/mk-models/$arch-$preset
    [ -f "$dir/config.json" ] || "$BUILD/mk" synth --arch "$arch" --preset "$preset" --out "$dir" || exit 1
    "$BUILD/mk" bench "$dir" ${MK_BENCH_ARGS:-} || exit 1
done
