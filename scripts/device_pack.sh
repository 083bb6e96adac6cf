#!/usr/bin/env bash
# Pack a build for the GPU machine under the device tool's 64 MiB carry limit: the
# stripped `mk`, the shared libraries it loads (lib/), the GPU tests and the benchmark
# drivers, as build-carry/NAME.tar.xz holding the directory build-NAME/ (NAME: dev by
# default). Build first (`make BUILD=B -j2 all gpu-tests`), then
# `scripts/device_pack.sh B [NAME]` and
#   run(carry=["build-carry"], command="tar -xJf build-carry/dev.tar.xz &&
#       BUILD=build-dev scripts/device_check.sh")
# Several builds (A/B of branches) pack side by side under different names.
set -eu
cd "$(dirname "$0")/.."
SRC=${1:-build}
NAME=${2:-dev}
case $NAME in *[!a-z0-9_-]*|"") echo "device_pack: bad NAME $NAME" >&2; exit 2 ;; esac
D=build-$NAME
[ -x "$SRC/mk" ] || { echo "device_pack: $SRC/mk not built" >&2; exit 1; }
rm -rf build-carry/$D && mkdir -p build-carry/$D/tests build-carry/$D/bench
cp -a "$SRC/mk" build-carry/$D/ && strip build-carry/$D/mk
[ -d "$SRC/lib" ] && cp -a "$SRC/lib" build-carry/$D/
for t in "$SRC"/tests/test_gpu_*; do
    [ -x "$t" ] && cp -a "$t" build-carry/$D/tests/ && strip "build-carry/$D/tests/$(basename "$t")"
done
for b in "$SRC"/bench/*; do
    [ -x "$b" ] && [ -f "$b" ] && cp -a "$b" build-carry/$D/bench/ && strip "build-carry/$D/bench/$(basename "$b")"
done
(cd build-carry && tar -cJf "$NAME.tar.xz" "$D" && rm -rf "$D")
ls -l "build-carry/$NAME.tar.xz"
