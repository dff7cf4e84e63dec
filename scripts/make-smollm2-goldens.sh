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

readonly LLAMA_CPP_PYTHON="llama-cpp-python==0.3.16"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LLM42_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm42}"
venv="$cache/llama-cpp-venv"

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  echo "make-smollm2-goldens: building $LLAMA_CPP_PYTHON in $venv (about 15 minutes)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check numpy gguf
  # A native build uses instructions these machines' CPUs may lack (illegal instruction).
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=2 nice -n 19 "$venv/bin/pip" install --disable-pip-version-check \
    --no-cache-dir "$LLAMA_CPP_PYTHON"
fi
if [[ "${1:-}" == "--build-only" ]]; then exit 0; fi

model="$("$root/scripts/fetch-smollm2.sh")"
f32="${model%.Q4_1.gguf}.F32.gguf"
if [[ ! -f "$f32" ]]; then
  echo "make-smollm2-goldens: writing $f32" >&2
  "$venv/bin/python" "$root/scripts/gguf_to_f32.py" "$model" "$f32.tmp"
  mv "$f32.tmp" "$f32"
fi
"$venv/bin/python" "$root/scripts/make_smollm2_goldens.py" --q4 "$model" --f32 "$f32" \
  --out "$root/tests/goldens/smollm2" "$@"
