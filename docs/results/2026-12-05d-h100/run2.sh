#!/usr/bin/env bash
# Session 10 run 2 (same machine): ArXiv-like 512 prompts: off with prompts-only reserve (0),
# dvr 10 % with auto; off with a step budget of 8192 and chunks of 2048.
N=2; source .gpubin/common.sh
run arxiv-4k 190 --workload arxiv --num-prompts 512 --modes off --max-num-batched-tokens 4096 --prefill-chunk 1024
run arxiv-dvr 190 --workload arxiv --num-prompts 512 --modes dvr
run arxiv-8k 190 --workload arxiv --num-prompts 512 --modes off --max-num-batched-tokens 8192 --prefill-chunk 2048
echo "all done at $(( $(date +%s) - t0 )) s" >> $S; pack; cat $S
