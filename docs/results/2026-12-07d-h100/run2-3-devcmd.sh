#!/usr/bin/env bash
# Twentieth session, device calls 2 and 3, on the machine call 1 left warm (the same H100), from
# .gpubin/: (1K,256) off and global twice more, global without the fused tree once, batch-1
# decode in both lanes, ShareGPT-like off and global once.
cd .gpubin; export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/lib LLM42_SHARED_DIR=$PWD/shared
# call 2
for run in "off,global" "global --no-cuda-fused-tree"; do modes=${run%% *}; extra=${run#$modes}; n=$(echo "$run" | tr -c 'a-z0-9\n' '_'); timeout 100 ./llm42 --log-level warn bench --device cuda --model dummy:llama-3.1-8b $extra --workload fixed:1024,256 --num-prompts 256 --modes $modes --no-progress --json $OUT/f_$n.json > /tmp/b.txt 2>&1; echo "== $run rc $?"; grep -E "^(off|global)" /tmp/b.txt | cut -c1-60; done
ids=$(seq -s, 1000 1031); for det in "" "--deterministic"; do r=$(timeout 40 ./llm42 --log-level warn generate --device cuda --model dummy:llama-3.1-8b --prompt-ids "$ids" -n 512 --ignore-eos -q $det 2>&1 | tail -n 1); echo "== decode ${det:-fast}: $r" | tee -a $OUT/decode_b1.txt; done
# call 3
timeout 80 ./llm42 --log-level warn bench --device cuda --model dummy:llama-3.1-8b --workload fixed:1024,256 --num-prompts 256 --modes global,off --no-progress --json $OUT/f3_global_off.json
timeout 110 ./llm42 --log-level warn bench --device cuda --model dummy:llama-3.1-8b --workload sharegpt --num-prompts 256 --modes off,global --no-progress --json $OUT/sg_off_global.json
