#!/usr/bin/env bash
# Session 10 run 1: CUDA tests (and the GEMM tuning cache); (1K,256) 2,048 prompts off / dvr 10 %
# with the 0.9 KV default and auto admission reserve; ArXiv-like 512 prompts off (auto).
N=1; source .gpubin/common.sh
LABS=none OUT=$R/tests TEST_TIMEOUT=150 scripts/gpu-validate.sh > $R/validate.txt 2>&1
grep -E "tests|FAILED|PASSED" $R/validate.txt | tail -n 5 >> $S
echo "tests done at $(( $(date +%s) - t0 )) s" >> $S; pack
run k1-256 250 --workload fixed:1024,256 --num-prompts 2048 --modes off,dvr
run arxiv 200 --workload arxiv --num-prompts 512 --modes off
echo "all done at $(( $(date +%s) - t0 )) s" >> $S; pack; cat $S
