# Sourced by the device A/B and profile scripts: the repository root as the working
# directory, BUILD (default build), OUT (default $BUILD/device-out, created), M (the models'
# directory, MK_MODELS or /tmp/mk-models), MK_SKIP_DEPS=1, and `synth ARCH PRESET`, which
# writes the random-weight model $M/ARCH-PRESET once per machine.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$PWD/$BUILD/device-out}
M=${MK_MODELS:-/tmp/mk-models}
mkdir -p "$OUT"
export MK_SKIP_DEPS=1
synth() { [ -f "$M/$1-$2/config.json" ] || "$BUILD/mk" synth --arch "$1" --preset "$2" --out "$M/$1-$2" >/dev/null; }
