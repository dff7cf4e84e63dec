#!/usr/bin/env bash
# llm42 against llama.cpp on the CPU, side by side in one run: prefill and decode tok/s of
# `llm42 generate` and of llama.cpp (llama-cpp-python) on the same SmolLM2-135M F32 GGUF, the same
# prompt ids and thread count, greedy, batch 1, repetitions interleaved, medians, and decode's share
# of the memory roofline measured in the same run (bench/cpu_llamacpp.py says how each is timed).
# A benchmark, not a test: neither CTest nor CI runs it.
#   LLM42_BIN    the llm42 binary (default: build/bin/llm42)
#   LLM42_CACHE  the cache folder of the model and of the llama-cpp-python venv
# Arguments go to bench/cpu_llamacpp.py: --threads 1,2 --prompt-tokens 128,512 --decode-tokens 128
# --reps 3 --json FILE (defaults: nproc threads, the rest as written).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/llama-cpp-env.sh"

if ! llama_cpp_present; then
  echo "bench-cpu-llamacpp: error: llama-cpp-python is not installed in $llama_cpp_venv." >&2
  echo "  Build it once (about 15 minutes on 2 cores): scripts/make-smollm2-goldens.sh --build-only" >&2
  exit 1
fi
f32="$(smollm2_f32)"
exec "$llama_cpp_venv/bin/python" "$root/bench/cpu_llamacpp.py" --model "$f32" \
  --llm42 "${LLM42_BIN:-$root/build/bin/llm42}" "$@"
