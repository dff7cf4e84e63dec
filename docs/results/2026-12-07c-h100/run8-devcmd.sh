#!/usr/bin/env bash
# Nineteenth session, device call 7: (1K,256), 256 prompts, global with and without the fused
# tree GEMM (--cuda-fused-tree; variant 7 admitted for o), off as the reference, one machine.
set -u
cd "$(dirname "$0")/.."
B=.gpubin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$B/lib
export LLM42_SHARED_DIR=$PWD/$B/shared
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for run in "off,global" "global --cuda-fused-tree" "off,global --cuda-fused-tree"; do
  modes=${run%% *}; extra=${run#$modes}
  n=$(echo "$run" | tr -c 'a-z0-9\n' '_')
  timeout 150 $B/llm42 --log-level warn bench --device cuda --model dummy:llama-3.1-8b $extra \
    --workload fixed:1024,256 --num-prompts 256 --modes $modes --no-progress --json $OUT/f_$n.json > /tmp/b.txt 2>&1
  echo "== $run rc $?"; grep -E "^(off|global)" /tmp/b.txt | cut -c1-60
done
