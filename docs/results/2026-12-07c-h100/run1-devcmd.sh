#!/usr/bin/env bash
# Nineteenth session, device call 1: CUDA tests, batch-1 decode (this commit vs the base: the
# skinny leaves and their tree in one launch), cuda_tp_lab, ncu of the fused variants.
set -u
cd "$(dirname "$0")/.."
B=.gpubin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$B/lib
export LLM42_SHARED_DIR=$PWD/$B/shared
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
{ date -u; cat $B/commit.txt; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
el tests
timeout 220 $B/llm42_cuda_tests --gtest_output=json:$OUT/tests.json > $OUT/tests.log 2>&1
echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]" $OUT/tests.log | head -20
grep -E "SkinnyLeaves|FusedTree" $OUT/tests.log | grep -E "OK|FAILED" | head
ids=$(seq -s, 1000 1031)
for bin in llm42 llm42-base; do
  for det in "" "--deterministic"; do
    el "decode $bin $det"
    r=$(timeout 100 $B/$bin --log-level warn generate --device cuda --model dummy:llama-3.1-8b \
      --prompt-ids "$ids" -n 512 --ignore-eos -q $det 2>&1 | tail -n 1)
    echo "== $bin ${det:-(not deterministic)}: $r" | tee -a $OUT/decode_b1.txt
  done
done
# once more, the new binary, both lanes (run-to-run spread)
for det in "" "--deterministic"; do
  r=$(timeout 60 $B/llm42 --log-level warn generate --device cuda --model dummy:llama-3.1-8b \
    --prompt-ids "$ids" -n 512 --ignore-eos -q $det 2>&1 | tail -n 1)
  echo "== llm42 again ${det:-(not deterministic)}: $r" | tee -a $OUT/decode_b1.txt
done
el lab
timeout 120 $B/cuda_tp_lab --ms 1,8,16,256,2048 --json $OUT/tp_lab.json > $OUT/tp_lab.txt 2>&1
echo "lab rc $?"; head -14 $OUT/tp_lab.txt | cut -c1-110
el profile
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
for what in 2 3 unfused; do
  left=$(( 560 - ($(date +%s) - t0) ))
  [ $left -lt 40 ] && { echo "no time for ncu $what"; break; }
  timeout $left "$ncu" --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section Occupancy --section LaunchStats \
    $B/cuda_tp_lab --profile "$what" --ms 1,256,2048 > $OUT/ncu_$what.txt 2>&1
  echo "== ncu $what rc $?"
  grep -E "cuda_tp_lab|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|L2 Cache Throughput|Achieved Occupancy|Warp Cycles Per Issued" $OUT/ncu_$what.txt | head -40
done
el done
