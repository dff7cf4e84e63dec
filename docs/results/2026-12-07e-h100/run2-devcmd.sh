#!/usr/bin/env bash
# 21st session, call: decode-size fused tree (variants 11, 12): bits, lab at M 1-16, b1 decode
# base vs new in both lanes, the decode lab's step breakdown, then the whole CUDA suite.
set -u
cd "$(dirname "$0")/.."
B=.gpubin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$B/lib
export LLM42_SHARED_DIR=$PWD/$B/shared
export NCCL_NVLS_ENABLE=0
tar xzf $B/bins.tgz -C $B
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
{ date -u; cat $B/commit.txt; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $OUT/env.txt 2>&1
cat $OUT/env.txt
el rowparallel
timeout 150 $B/llm42_cuda_tests --gtest_filter='CudaRowParallel.*' > $OUT/rowparallel.log 2>&1
echo "rowparallel rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]|differs" $OUT/rowparallel.log | head -12 | cut -c1-250
grep "fused tree N" $OUT/rowparallel.log | grep -E " M (1|5|16) " | head -30
el tp_lab
timeout 120 $B/cuda_tp_lab --ms 1,4,8,16 --json $OUT/tp_lab.json > /tmp/tp_lab.log 2>&1; echo "lab rc $?"
python3 - "$OUT/tp_lab.json" <<'PY' || true
import json,sys
d=json.load(open(sys.argv[1]))
for r in d['rows']:
    f=r['fused_kernel_us']
    print(r['shape'],r['m'],'plain %.1f leaves %.1f fused=%s unfused %.1f'%(r['plain_us'],r['leaves_us'],r['leaves_fused'],r['unfused_us']),' v11 %s v12 %s'%(f[11],f[12]))
PY
el decode
ids=$(seq -s, 1000 1031)
for rep in 1 2; do for bin in llm42-base llm42; do for det in "" "--deterministic"; do
  r=$(timeout 60 $B/$bin --log-level warn generate --device cuda --model dummy:llama-3.1-8b \
    --prompt-ids "$ids" -n 512 --ignore-eos -q $det 2>&1 | tail -n 1)
  echo "== $bin ${det:-(fast)}: $r" | tee -a $OUT/decode_b1.txt
done; done; done
el decode_lab
timeout 200 $B/cuda_decode_lab > $OUT/decode_lab.txt 2>&1; echo "decode lab rc $?"
grep -v "^\[llm42" $OUT/decode_lab.txt | head -36
el suite
timeout 150 $B/llm42_cuda_tests --gtest_output=json:$OUT/tests.json > $OUT/tests.log 2>&1
echo "tests rc $?"; grep -E "^\[  (FAILED|PASSED) |FAILED  \]" $OUT/tests.log | head -20
el done
