#!/usr/bin/env bash
# The whole device procedure, run on the GPU machine from the repository root with the binaries
# that scripts/gpu-pack.sh packed into .gpubin/: the CUDA tests (gtest JSON) and the kernel
# labs. Everything is written to $OUT; a short summary is printed last.
#
#   scripts/gpu-validate.sh                  # everything
#   GTEST_FILTER='CudaKernels.*' LABS=none scripts/gpu-validate.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.gpubin}
OUT=${OUT:-$PWD/gpu-out}
LABS=${LABS:-all}
mkdir -p "$OUT"
export LLM42_SHARED_DIR=$PWD/$BIN/shared
# The canonical GEMM table is tuned on first use; keep it with the results.
export LLM42_GEMM_CACHE=$OUT/gemm-cache.json
# The binaries find cuBLASLt through RUNPATH /usr/local/cuda/lib; add the usual other places.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ldd "$BIN/llm42_cuda_tests" | grep -q 'not found'; then
  lib=$(find / -name 'libcublasLt.so.13*' -not -path '/proc/*' 2>/dev/null | head -n 1)
  [ -n "$lib" ] && export LD_LIBRARY_PATH=$(dirname "$lib"):$LD_LIBRARY_PATH
fi

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  echo "commit $(cat "$BIN/commit.txt" 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
} >"$OUT/env.txt" 2>&1

start=$(date +%s)
timeout "${TEST_TIMEOUT:-420}" "$BIN/llm42_cuda_tests" --gtest_output="json:$OUT/tests.json" \
  ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} >"$OUT/tests.log" 2>&1
test_rc=$?
test_s=$(($(date +%s) - start))

# SANITIZE=1: the kernel and attention-invariance tests again under compute-sanitizer memcheck.
if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  timeout "${SANITIZE_TIMEOUT:-60}" compute-sanitizer --tool memcheck --print-limit 20 \
    "$BIN/llm42_cuda_tests" \
    --gtest_filter="${SANITIZE_FILTER:-CudaKernels.*:Geometries/*:-CudaKernels.Sampling*}" \
    >"$OUT/sanitizer.log" 2>&1
  echo "sanitizer exit $?" >>"$OUT/sanitizer.log"
fi

: >"$OUT/labs.log"
if [ "$LABS" != none ]; then
  for lab in cuda_gemm_lab cuda_attention_lab cuda_decode_lab cuda_korder_lab; do
    echo "== $lab" >>"$OUT/labs.log"
    timeout "${LAB_TIMEOUT:-150}" "$BIN/$lab" ${LAB_ARGS:-} >>"$OUT/labs.log" 2>&1
    echo "== $lab exit $?" >>"$OUT/labs.log"
  done
fi

echo "==== environment"
cat "$OUT/env.txt"
if [ -f "$OUT/sanitizer.log" ]; then
  echo "==== memcheck"
  grep -E 'ERROR SUMMARY|Invalid|sanitizer exit|PASSED|FAILED' "$OUT/sanitizer.log" | head -n 20
fi
echo "==== labs"
grep -v -E '^\s*$' "$OUT/labs.log" | grep -v 'gemm autotune' | cut -c1-150
echo "==== tests (exit $test_rc after ${test_s}s)"
grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[ RUN|^\[       OK|Failure|Expected|Which is|actual|error|\[(gemm invariance|attention invariance|golden|dvr)\]' \
  "$OUT/tests.log" | grep -v '^\[ RUN' | cut -c1-220 | tail -n 120
exit $test_rc
