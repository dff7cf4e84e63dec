#!/usr/bin/env bash
# 21st session, call 4: canonical skinny variant 1 (a ring a warp, one leaf) for qkv, gate_up, lm_head: skinny tests,
# b1 decode base vs new, decode lab, gemm lab (quick), whole CUDA suite.
set -u
cd "$(dirname "$0")/.."
B=.gpubin
tar xzf $B/bins.tgz -C $B
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$B/lib
export LLM42_SHARED_DIR=$PWD/$B/shared
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
{ date -u; cat $B/commit.txt; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
el skinny
timeout 120 $B/llm42_cuda_tests --gtest_filter='CudaKernels.SkinnyGemm*:CudaKernels.CanonicalSkinny*:CudaRowParallel.*' > $OUT/skinny.log 2>&1
echo "skinny rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]|differs|Failure" $OUT/skinny.log | head -12 | cut -c1-250
el decode
ids=$(seq -s, 1000 1031)
for rep in 1 2; do for bin in llm42-base llm42-c83 llm42; do for det in "" "--deterministic"; do
  LLM42_GEMM_CACHE=/tmp/cache-$bin.json timeout 60 $B/$bin --log-level debug generate --device cuda --model dummy:llama-3.1-8b \
    --prompt-ids "$ids" -n 512 --ignore-eos -q $det > /tmp/gen.out 2>&1
  [ $rep = 1 ] && grep -E "fast gemm M 1 |M 1 \(bucket 1\) N [0-9]+ K" /tmp/gen.out | sed "s/^/$bin: /" >> $OUT/fast_choices.txt
  echo "== $bin ${det:-(fast)}: $(grep 'decode:' /tmp/gen.out | tail -n 1)" | tee -a $OUT/decode_b1.txt
done; done; done
cat $OUT/fast_choices.txt | cut -c1-200
el decode_lab
timeout 200 $B/cuda_decode_lab > $OUT/decode_lab.txt 2>&1; echo "decode lab rc $?"
grep -v "^\[llm42" $OUT/decode_lab.txt | head -60
el suite
timeout 170 $B/llm42_cuda_tests --gtest_output=json:$OUT/tests.json > $OUT/tests.log 2>&1
echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]" $OUT/tests.log | head -20
el gemm_lab
timeout 100 $B/cuda_gemm_lab --quick > $OUT/gemm_lab.txt 2>&1; echo "gemm lab rc $?"
grep -v "^\[llm42" $OUT/gemm_lab.txt | head -70
el done
