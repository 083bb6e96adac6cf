#!/usr/bin/env bash
# Install what the build and the tests need, only what is missing. Idempotent; safe to
# run on every `make test` / `make run`. Debian packages through apt-get (root or sudo),
# Python oracles (tokenizers, safetensors, numpy, transformers without torch, openai)
# through pip. Set MK_SKIP_DEPS=1 to skip (e.g. on the GPU image, which has no network).
set -euo pipefail
[ "${MK_SKIP_DEPS:-0}" = 1 ] && exit 0

apt_pkgs=(build-essential pkg-config clang libjansson-dev libpcre2-dev libutf8proc-dev
          libmicrohttpd-dev)
# python3 and pip may come from elsewhere (pyenv): ask apt for them only when absent.
command -v python3 >/dev/null || apt_pkgs+=(python3)
python3 -m pip --version >/dev/null 2>&1 || apt_pkgs+=(python3-pip)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing Debian packages: ${missing[*]}"
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py_mods=(tokenizers safetensors numpy transformers openai jinja2)
py_pkgs=(tokenizers safetensors numpy transformers openai jinja2)
need=()
for i in "${!py_mods[@]}"; do
    python3 -c "import ${py_mods[$i]}" >/dev/null 2>&1 || need+=("${py_pkgs[$i]}")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "deps: installing Python packages: ${need[*]}"
    { python3 -m pip install -q --disable-pip-version-check "${need[@]}" 2>&1 || \
      python3 -m pip install -q --disable-pip-version-check --break-system-packages "${need[@]}" 2>&1; } \
        | grep -v -e 'Running pip as the' -e '^$' || true
    for m in "${py_mods[@]}"; do
        python3 -c "import $m" >/dev/null 2>&1 || { echo "deps: python module $m still missing" >&2; exit 1; }
    done
fi
exit 0
