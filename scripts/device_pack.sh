#!/usr/bin/env bash
# Pack a build for the GPU machine under the device tool's 64 MiB carry limit: the
# stripped `mk`, the shared libraries it loads (lib/), the GPU tests and the benchmark
# drivers, as build-carry/dev.tar.xz holding the directory build-dev/. Build first
# (`make BUILD=B -j2 all gpu-tests`), then `scripts/device_pack.sh B` and
#   run(carry=["build-carry"], command="tar -xJf build-carry/dev.tar.xz &&
#       BUILD=build-dev scripts/device_check.sh")
set -eu
cd "$(dirname "$0")/.."
SRC=${1:-build}
[ -x "$SRC/mk" ] || { echo "device_pack: $SRC/mk not built" >&2; exit 1; }
rm -rf build-carry/build-dev && mkdir -p build-carry/build-dev/tests build-carry/build-dev/bench
cp -a "$SRC/mk" build-carry/build-dev/ && strip build-carry/build-dev/mk
[ -d "$SRC/lib" ] && cp -a "$SRC/lib" build-carry/build-dev/
for t in "$SRC"/tests/test_gpu_*; do
    [ -x "$t" ] && cp -a "$t" build-carry/build-dev/tests/ && strip "build-carry/build-dev/tests/$(basename "$t")"
done
for b in "$SRC"/bench/*; do
    [ -x "$b" ] && [ -f "$b" ] && cp -a "$b" build-carry/build-dev/bench/ && strip "build-carry/build-dev/bench/$(basename "$b")"
done
(cd build-carry && tar -cJf dev.tar.xz build-dev && rm -rf build-dev)
ls -l build-carry/dev.tar.xz
