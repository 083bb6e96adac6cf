#!/usr/bin/env bash
# Pack a build for the GPU machine under the device tool's 64 MiB carry limit: the
# stripped `mk`, the shared libraries it loads (lib/), the GPU tests and the benchmark
# drivers, as build-carry/NAME.tar.xz holding the directory build-NAME/ (NAME: dev by
# default). Build first (`make BUILD=B -j2 all gpu-tests`), then
# `scripts/device_pack.sh B [NAME]` and
#   run(carry=["build-carry"], command="tar -xJf build-carry/dev.tar.xz &&
#       BUILD=build-dev scripts/device_check.sh")
# Several builds (A/B of branches) pack side by side under different names;
# MK_ONLY=BASE packs only the mk of a variant, as build-BASE/alt-NAME/mk (a few MB).
set -eu
cd "$(dirname "$0")/.."
SRC=${1:-build}
NAME=${2:-dev}
case $NAME in *[!a-z0-9_-]*|"") echo "device_pack: bad NAME $NAME" >&2; exit 2 ;; esac
D=build-$NAME
[ -x "$SRC/mk" ] || { echo "device_pack: $SRC/mk not built" >&2; exit 1; }
if [ -n "${MK_ONLY:-}" ]; then # only the stripped mk, as build-BASE/alt-NAME/mk: it loads
    # BASE's lib/ (rpath $ORIGIN/../lib); extract after BASE's tarball
    case $MK_ONLY in *[!a-z0-9_-]*) echo "device_pack: bad MK_ONLY $MK_ONLY" >&2; exit 2 ;; esac
    A=build-$MK_ONLY/alt-$NAME
    rm -rf "build-carry/$A" && mkdir -p "build-carry/$A"
    cp -a "$SRC/mk" "build-carry/$A/" && strip "build-carry/$A/mk"
    (cd build-carry && tar -cJf "$NAME.tar.xz" "$A" && rm -rf "build-$MK_ONLY")
    ls -l "build-carry/$NAME.tar.xz"
    exit 0
fi
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
