#!/usr/bin/env bash
# `make run`: generate text with MODEL (a checkpoint directory), or, with no MODEL, with a
# freshly synthesized small Qwen3-architecture model whose weights are RANDOM.
# Runs on the GPU when `mk gpu` finds one, otherwise on the CPU reference.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MK=$BUILD/mk
PROMPT=${PROMPT:-Write a haiku about a GPU.}
N=${N:-32}
model=${MODEL:-}
if [ -z "$model" ]; then
    model=$BUILD/models/random-qwen3-tiny
    if [ ! -f "$model/config.json" ]; then
        "$MK" synth --arch qwen3 --preset tiny --seed 1 --tokenizer data/tokenizers/qwen3 --out "$model"
    fi
    echo "NOTE: no MODEL= given, so this runs a synthesized Qwen3-architecture model with"
    echo "      RANDOM weights ($model): the text below is meaningless by design."
    echo "      Run a real checkpoint with: make run MODEL=/path/to/hf-checkpoint-dir"
fi
"$MK" info "$model"
if gpu=$("$MK" gpu); then backend=gpu; echo "GPU: $gpu"; else backend=cpu; echo "no GPU ($gpu): using the CPU reference"; fi
echo "prompt: $PROMPT"
"$MK" generate "$model" --prompt "$PROMPT" -n "$N" --backend "$backend"
