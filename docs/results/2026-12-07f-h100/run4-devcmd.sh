#!/usr/bin/env bash
# 22nd session, call 4 (call 3's command, slimmed to the device time left): the whole CUDA suite,
# b1 decode main / new in both lanes, the attention lab (--quick).
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
el suite
timeout 130 $B/llm42_cuda_tests --gtest_output=json:$OUT/tests.json > $OUT/tests.log 2>&1
echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED|SKIPPED) |FAILED  \]|differ" $OUT/tests.log | head -20 | cut -c1-250
el decode
ids=$(seq -s, 1000 1031)
for bin in llm42-main llm42; do for det in "" "--deterministic"; do
  LLM42_GEMM_CACHE=/tmp/cache-$bin.json timeout 40 $B/$bin --log-level warn generate --device cuda \
    --model dummy:llama-3.1-8b --prompt-ids "$ids" -n 512 --ignore-eos -q $det > /tmp/gen.out 2>&1
  echo "== $bin ${det:-(fast)}: $(grep 'decode:' /tmp/gen.out | tail -n 1)" | tee -a $OUT/decode_b1.txt
done; done
el attention_lab
timeout 40 $B/cuda_attention_lab --quick > $OUT/attention_lab.txt 2>&1; echo "attention lab rc $?"
grep -v "^\[llm42" $OUT/attention_lab.txt | sed -n '8,22p'
el done
