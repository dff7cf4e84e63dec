#!/usr/bin/env bash
# Builds the CUDA tests and kernel labs on this machine (no GPU needed) and packs them, with the
# small test models, into .gpubin/ (ignored by git) for the device machine, where
# scripts/gpu-validate.sh runs them. Usage: scripts/gpu-pack.sh
# TOKENIZERS="llama3 ...": also the shared tokenizers of those names (shared/tokenizers/NAME:
# llama3 is 9 MB), for runs that send text to a dummy model (scripts/gpu-multi.sh PART=check).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SHARED=${LLM42_SHARED_DIR:-$ROOT/../shared}
PACK=$ROOT/.gpubin

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" llm42 llm42_cuda_tests cuda_gemm_lab cuda_attention_lab cuda_decode_lab cuda_korder_lab \
  cuda_tp_lab cuda_nccl_lab

rm -rf "$PACK"
mkdir -p "$PACK/shared/models"
cp "$BUILD/tests/llm42_cuda_tests" "$BUILD"/bin/cuda_*_lab "$BUILD/bin/llm42" "$PACK/"
strip --strip-debug "$PACK"/llm42_cuda_tests "$PACK"/cuda_*_lab "$PACK"/llm42
for m in stories260K stories260K-hf tiny-llama3 tiny-qwen2 tiny-qwen3 tiny-mistral; do
  cp -r "$SHARED/models/$m" "$PACK/shared/models/"
done
for t in ${TOKENIZERS:-}; do
  mkdir -p "$PACK/shared/tokenizers"
  cp -r "$SHARED/tokenizers/$t" "$PACK/shared/tokenizers/"
done
git -C "$ROOT" rev-parse HEAD >"$PACK/commit.txt"
# BASE_BIN: another build's llm42 (e.g. the commit before a change), packed as llm42-base for
# side-by-side runs in the same device call (scripts/gpu-tp.sh).
if [ -n "${BASE_BIN:-}" ]; then
  cp "$BASE_BIN" "$PACK/llm42-base"
  strip --strip-debug "$PACK/llm42-base"
fi
# OpenMP's runtime, in case the device image lacks it (scripts/gpu-*.sh append lib/ to the path).
mkdir -p "$PACK/lib"
cp "$(ldd "$PACK/llm42" | awk '/libgomp/ {print $3}')" "$PACK/lib/"

# The device machine has the CUDA 13 runtime libraries but none of the build's other
# dependencies: everything else must be linked statically.
missing=$(ldd "$PACK/llm42_cuda_tests" "$PACK/llm42" | grep -v -E "^/|:$" | grep -v -E 'cublas|nccl|libcuda|libc\.|libm\.|libgcc|libstdc|libgomp|ld-linux|linux-vdso|libpthread|libdl|librt' || true)
if [ -n "$missing" ]; then
  echo "unexpected shared libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
du -sh "$PACK"
echo "packed into $PACK (carry it as .gpubin)"
