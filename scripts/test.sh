#!/usr/bin/env bash
# The test command: builds llm42 (Release, CUDA backend compiled when nvcc is found), runs every
# test with CTest, then rebuilds the tests with AddressSanitizer + UndefinedBehaviorSanitizer and
# runs the robustness suites (corrupted model files, tokenizer files, HTTP/JSON parsers) there.
# Tests that need ../shared (models, tokenizers) skip with a message when it is absent; tests that
# need a GPU skip without one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-env.sh
bash scripts/build.sh
jobs=$(nproc)
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 1500

echo "== sanitizer build (ASan + UBSan): robustness suites"
cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLM42_SANITIZE=ON \
  -DLLM42_CUDA=OFF -DLLM42_NATIVE=OFF -DLLM42_PYTHON="$PWD/.venv/bin/python" >/dev/null
ninja -C build-san llm42_tests llm42
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-san --output-on-failure -j "$jobs" -R 'Corrupt' --timeout 900
