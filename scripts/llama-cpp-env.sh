# Sourced (not run) by the scripts that use llama.cpp as a peer: the llama-cpp-python venv and the
# SmolLM2 F32 file, one definition of each.
#   LLM42_CACHE  the cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/llm42)
# Needs $root (the repository root) set by the caller.

readonly LLAMA_CPP_PYTHON="llama-cpp-python==0.3.16"
llm42_cache="${LLM42_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm42}"
llama_cpp_venv="$llm42_cache/llama-cpp-venv"

# True when the venv exists and imports llama_cpp.
llama_cpp_present() {
  [[ -x "$llama_cpp_venv/bin/python" ]] && "$llama_cpp_venv/bin/python" -c 'import llama_cpp' 2>/dev/null
}

# Builds llama-cpp-python (llama.cpp from source) into the venv: about 15 minutes on 2 cores, at
# nice 19 so that it does not starve other builds.
llama_cpp_build() {
  echo "building $LLAMA_CPP_PYTHON in $llama_cpp_venv (about 15 minutes)" >&2
  python3 -m venv "$llama_cpp_venv"
  "$llama_cpp_venv/bin/pip" install --quiet --disable-pip-version-check numpy gguf
  # A native build uses instructions these machines' CPUs may lack (illegal instruction).
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=2 nice -n 19 "$llama_cpp_venv/bin/pip" install \
    --disable-pip-version-check --no-cache-dir "$LLAMA_CPP_PYTHON"
}

# Fetches the SmolLM2 Q4_1 file (scripts/fetch-smollm2.sh), writes its F32 copy (every tensor
# dequantized) beside it if absent, and prints the F32 path. Needs the venv (its gguf package).
smollm2_f32() {
  local q4 f32
  q4="$("$root/scripts/fetch-smollm2.sh")"
  f32="${q4%.Q4_1.gguf}.F32.gguf"
  if [[ ! -f "$f32" ]]; then
    echo "writing $f32" >&2
    "$llama_cpp_venv/bin/python" "$root/scripts/gguf_to_f32.py" "$q4" "$f32.tmp"
    mv "$f32.tmp" "$f32"
  fi
  echo "$f32"
}
