#!/usr/bin/env bash
# Makes the SmolLM2 golden files in tests/goldens/smollm2/ with llama.cpp as the oracle:
#   1. builds llama-cpp-python (llama.cpp from source) in a venv in the cache folder, once
#      (~15 minutes on 2 cores, run at nice 19 so that it does not starve other builds);
#   2. fetches SmolLM2-135M-Instruct Q4_1 (scripts/fetch-smollm2.sh) and writes an F32 copy of it
#      (every tensor dequantized with the `gguf` package) next to it;
#   3. runs scripts/make_smollm2_goldens.py: token ids of the tokenizer corpus, greedy ids and text
#      of a few plain and chat prompts on the F32 copy and on the Q4_1 file.
# The goldens are small and committed; CI never builds llama.cpp.
#   LLM42_CACHE  the cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/llm42)
#   --build-only stop after step 1
#   --only tokenize|greedy  write only that golden file
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/llama-cpp-env.sh"

if ! llama_cpp_present; then llama_cpp_build; fi
if [[ "${1:-}" == "--build-only" ]]; then exit 0; fi

model="$("$root/scripts/fetch-smollm2.sh")"
f32="$(smollm2_f32)"
"$llama_cpp_venv/bin/python" "$root/scripts/make_smollm2_goldens.py" --q4 "$model" --f32 "$f32" \
  --out "$root/tests/goldens/smollm2" "$@"
