#!/usr/bin/env bash
# Nineteenth session, device call 2: the skinny tree with its leaves side by side (test, lab,
# batch-1 decode against the base, alternating), then ArXiv-like off with tall attention tiles
# auto against mixed (256 prompts).
set -u
cd "$(dirname "$0")/.."
B=.gpubin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$B/lib
export LLM42_SHARED_DIR=$PWD/$B/shared
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
{ date -u; cat $B/commit.txt; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } > $OUT/env.txt 2>&1
timeout 60 $B/llm42_cuda_tests --gtest_filter='CudaRowParallel.*' > $OUT/tests.log 2>&1
echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED) |OK \]|FAILED  \]" $OUT/tests.log | head
el lab
timeout 90 $B/cuda_tp_lab --ms 1,8,16 --json $OUT/tp_lab.json > /dev/null 2>&1; echo "lab rc $?"
ids=$(seq -s, 1000 1031)
for i in 1 2; do for bin in llm42 llm42-base; do for det in "--deterministic" ""; do
  r=$(timeout 60 $B/$bin --log-level warn generate --device cuda --model dummy:llama-3.1-8b \
    --prompt-ids "$ids" -n 512 --ignore-eos -q $det 2>&1 | tail -n 1)
  echo "== $i $bin ${det:-(fast)}: ${r#*decode: }" | cut -c1-150 | tee -a $OUT/decode_b1.txt
done; done; done
el arxiv
for tall in auto mixed; do
  timeout 200 $B/llm42 --log-level warn bench --device cuda --model dummy:llama-3.1-8b --workload arxiv \
    --num-prompts ${PROMPTS:-256} --modes off --cuda-attention-tall $tall --no-progress \
    --json $OUT/arxiv_tall_$tall.json > $OUT/arxiv_$tall.txt 2>&1
  echo "tall $tall rc $?"; tail -n 4 $OUT/arxiv_$tall.txt
  el "tall $tall"
done
