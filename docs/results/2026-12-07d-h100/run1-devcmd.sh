#!/usr/bin/env bash
# Twentieth session, device call (short form): the fused tree bit test (variants 0-10),
# cuda_tp_lab, (1K,256) off/global with variants 5, 7-10 as the runner's candidates, then the
# whole CUDA suite with what time is left.
set -u
cd "$(dirname "$0")/.."
B=.gpubin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$B/lib
export LLM42_SHARED_DIR=$PWD/$B/shared
export NCCL_NVLS_ENABLE=0
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
left() { echo $(( ${BUDGET:-400} - ($(date +%s) - t0) )); }
{ date -u; cat $B/commit.txt; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
timeout 90 $B/llm42_cuda_tests --gtest_filter='CudaRowParallel.*' --gtest_output=json:$OUT/rowparallel.json > $OUT/rowparallel.log 2>&1
echo "rowparallel rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]" $OUT/rowparallel.log | head; grep -E "differs" $OUT/rowparallel.log | head -5 | cut -c1-200
el lab
timeout 120 $B/cuda_tp_lab --ms 1,16,64,256,1024,2048 --json $OUT/tp_lab.json > /tmp/tp_lab.log 2>&1; echo "lab rc $?"
python3 - "$OUT/tp_lab.json" <<'PY' || true
import json,sys
d=json.load(open(sys.argv[1]))
print(d.get('variants'))
for r in d['rows']:
    print(r['shape'],r['m'],'plain %.1f unfused %.1f fused'%(r['plain_us'],r['unfused_us']),' '.join('%.1f'%x for x in r['fused_kernel_us']))
PY
el bench
if [ "$(left)" -gt 170 ]; then
  timeout $(( $(left) - 20 )) $B/llm42 --log-level info bench --device cuda --model dummy:llama-3.1-8b \
    --workload fixed:1024,256 --num-prompts 256 --modes off,global --no-progress \
    --json $OUT/fixed_1024_256.json > /tmp/fixed.txt 2>&1
  echo "bench rc $?"; grep -E "^(off|global)" /tmp/fixed.txt | cut -c1-70
  grep "fused tree GEMM" /tmp/fixed.txt > $OUT/fused-tree-autotune.txt
  grep -o "tma [a-z0-9 ]* serves the bucket" $OUT/fused-tree-autotune.txt | sort | uniq -c
  grep "serves the bucket" $OUT/fused-tree-autotune.txt | cut -c1-330 | sed -n '1p;8p;16p;24p;32p;40p'
fi
el suite
if [ "$(left)" -gt 130 ]; then
  timeout $(( $(left) - 5 )) $B/llm42_cuda_tests --gtest_output=json:$OUT/tests.json > $OUT/tests.log 2>&1
  echo "suite rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]" $OUT/tests.log | head -20
fi
el done
