#!/usr/bin/env bash
# 22nd session, call 2: (a) the RoPE + KV-write kernel with one round trip after its wait;
# (b) decode-row attention pieces in the narrow kernel (combines there), four K/V stages in
# passes of fewer row tiles than SMs, graphs holding the narrow kernel alone. Attention and
# RoPE tests, b1 decode main / rope / narrow / both in both lanes (twice, the whole CUDA suite
# between), the decode lab and the attention lab (--quick) of both.
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
el focused
timeout 90 $B/llm42_cuda_tests --gtest_filter='CudaKernels.QkNormRopeKvWriteSwiglu:CudaKernels.Attention*:AttentionPlan.*:*AttentionInvariance*' > $OUT/focused.log 2>&1
echo "focused rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]|Failure|differ" $OUT/focused.log | head -12 | cut -c1-250
el decode
ids=$(seq -s, 1000 1031)
dec() { for bin in llm42-main llm42-rope llm42-narrow llm42; do for det in "" "--deterministic"; do
  LLM42_GEMM_CACHE=/tmp/cache-$bin.json timeout 40 $B/$bin --log-level warn generate --device cuda \
    --model dummy:llama-3.1-8b --prompt-ids "$ids" -n 512 --ignore-eos -q $det > /tmp/gen.out 2>&1
  echo "== $bin ${det:-(fast)}: $(grep 'decode:' /tmp/gen.out | tail -n 1)" | tee -a $OUT/decode_b1.txt
done; done; }
dec
el suite
timeout 150 $B/llm42_cuda_tests --gtest_output=json:$OUT/tests.json > $OUT/tests.log 2>&1
echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED|SKIPPED) |FAILED  \]" $OUT/tests.log | head -20
el decode2
dec
el decode_lab
timeout 110 $B/cuda_decode_lab > $OUT/decode_lab.txt 2>&1; echo "decode lab rc $?"
grep -v "^\[llm42" $OUT/decode_lab.txt | head -18
grep -E "^(fast|canonical) +1 " $OUT/decode_lab.txt
el attention_lab
timeout 70 $B/cuda_attention_lab --quick > $OUT/attention_lab.txt 2>&1; echo "attention lab rc $?"
grep -v "^\[llm42" $OUT/attention_lab.txt | head -40
el done
