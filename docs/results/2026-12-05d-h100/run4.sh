#!/usr/bin/env bash
# Session 10 run 4 (same machine): (1K,1K) 2,048 prompts dvr 10 %.
N=4; source .gpubin/common.sh
run k1-1k-dvr 420 --workload fixed:1024,1024 --num-prompts 2048 --modes dvr
echo "all done at $(( $(date +%s) - t0 )) s" >> $S; pack; cat $S
