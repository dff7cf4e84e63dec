#!/usr/bin/env bash
# Nineteenth session, device calls 4-5: the fused tree GEMM on TMA (variant 5): bits, time, ncu;
# (1K,256) with --cuda-fused-tree; ShareGPT-like tall tiles mixed against auto once more.
set -u
cd "$(dirname "$0")/.."
B=.gpubin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$B/lib
export LLM42_SHARED_DIR=$PWD/$B/shared
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
left() { echo $(( ${BUDGET:-700} - ($(date +%s) - t0) )); }
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 120 $B/llm42_cuda_tests --gtest_filter='CudaRowParallel.*' > $OUT/tests.log 2>&1
echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]|OK \]|differs|Failure" $OUT/tests.log | head -12
grep "tma cluster" $OUT/tests.log | head -3
el lab
timeout 150 $B/cuda_tp_lab --ms 1,16,256,1024,2048 --json $OUT/tp_lab.json > /tmp/tp_lab.log 2>&1; echo "lab rc $?"
python3 - "$OUT/tp_lab.json" <<'PY' || true
import json,sys
d=json.load(open(sys.argv[1]))
for r in d['rows']:
    print(r['shape'],r['m'],'plain %.1f unfused %.1f fused'%(r['plain_us'],r['unfused_us']),' '.join('%.1f'%x for x in r['fused_kernel_us']))
PY
grep "autotune.*tma" /tmp/tp_lab.log | cut -c1-200 | head -4
el ncu
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
timeout 120 "$ncu" --profile-from-start off --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section Occupancy --section LaunchStats \
  $B/cuda_tp_lab --profile 7 --ms 256,2048 > $OUT/ncu_7.txt 2>&1
echo "ncu rc $?"; grep -E "^    Duration|SM Active Cycles|Elapsed Cycles|L2 Cache Throughput|DRAM Throughput|Compute \(SM\)" $OUT/ncu_7.txt | head -24
el bench
if [ "$(left)" -gt 150 ]; then
  timeout $(left) $B/llm42 --log-level info bench --device cuda --model dummy:llama-3.1-8b --cuda-fused-tree \
    --workload fixed:1024,256 --num-prompts 256 --modes off,global --no-progress \
    --json $OUT/fixed_1024_256_fused.json > $OUT/fixed_fused.txt 2>&1
  echo "fused bench rc $?"; grep -E "^(off|global)" $OUT/fixed_fused.txt | cut -c1-70
  grep -c "tma cluster.*serves" $OUT/fixed_fused.txt; grep "serves the bucket" $OUT/fixed_fused.txt | cut -c1-160 | head -5
fi
for tall in; do
  [ "$(left)" -gt 60 ] || break
  timeout $(left) $B/llm42 --log-level warn bench --device cuda --model dummy:llama-3.1-8b --workload sharegpt \
    --num-prompts 256 --modes off --cuda-attention-tall $tall --no-progress --json $OUT/sharegpt_tall_$tall.json > $OUT/sg_$tall.txt 2>&1
  echo "sharegpt $tall: $(grep '^off' $OUT/sg_$tall.txt | cut -c1-60)"
done
el done
