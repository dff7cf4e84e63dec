#!/usr/bin/env bash
# The newcomer's first command: installs dependencies, builds, and generates text with a model
# that needs no download (dummy weights at a small Llama shape, one token per byte), then with
# the real stories260K model when the shared test data is next to the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/python-env.sh
bash scripts/build.sh
echo
echo "== llm42 generate --model dummy:tiny (random weights: the text is noise, the speed is real)"
./build/bin/llm42 generate --model dummy:tiny --prompt "Hello" -n 48 --deterministic
if [ -f ../shared/models/stories260K/stories260K.bin ]; then
  echo
  echo "== llm42 generate --model ../shared/models/stories260K/stories260K.bin"
  ./build/bin/llm42 generate --model ../shared/models/stories260K/stories260K.bin \
    --prompt "Once upon a time" -n 64 --deterministic
else
  echo
  echo "(../shared not found: skipping the stories260K example; dummy weights print random bytes)"
fi
