#!/usr/bin/env bash
# Session 10 run 3 (same machine): (1K,1K) 2,048 prompts off; batch-1 decode with the roofline.
N=3; source .gpubin/common.sh
timeout 90 python3 bench/gpu_roofline.py --json $R/roofline.json > $R/roofline.txt 2>&1; tail -6 $R/roofline.txt >> $S; pack
ids=$(seq -s, 1000 1031)
for det in "" "--deterministic"; do
  timeout 60 $B/llm42 --log-level warn generate --device cuda --model dummy:llama-3.1-8b --prompt-ids "$ids" -n 512 --ignore-eos -q $det >> $R/gen.txt 2>&1
done
tail -4 $R/gen.txt >> $S; pack
run k1-1k 400 --workload fixed:1024,1024 --num-prompts 2048 --modes off
echo "all done at $(( $(date +%s) - t0 )) s" >> $S; pack; cat $S
