#!/usr/bin/env bash
# Configures and builds llm42 in ./build (Release; the CUDA backend too when nvcc is found).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLM42_PYTHON="$PWD/.venv/bin/python" >/dev/null
ninja -C build
