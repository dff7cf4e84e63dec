#!/usr/bin/env bash
# Tensor parallelism on the device machine (docs/tensor-parallel.md), from the repository root
# with the binaries packed by scripts/gpu-pack.sh into .gpubin/ (BASE_BIN=... packs the build of
# the commit before the tree as llm42-base). Everything lands in $OUT. Parts, each one device call:
#   PART=invariance  in-process ranks on one GPU: the same deterministic requests through
#                    `llm42 generate --logprobs` (batched: continuous batching of all prompts) at
#                    TP 1, 2, 4 and 8, in dvr and global, the hashes of the ids and of the
#                    logprobs' bits compared; off mode shown to differ;
#                    with several GPUs also NCCL ranks (one GPU each), eager and with their
#                    decode passes as CUDA graphs (nccl+graphs: --tp-cuda-graphs); TPS and COMMS
#                    narrow the sizes and communicators (a 70B model: TPS="4 8" COMMS=nccl)
#   PART=lab         cuda_tp_lab: plain canonical GEMM vs the leaf tree vs subtrees, exchange bytes
#   PART=profile     ncu (Nsight Compute) of one launch each of the canonical plain GEMM, the
#                    unfused leaf tree and the fused tree variants (WHATS, default
#                    "plain unfused 3 5 7 8 9 10": the best cp.async form, then the TMA ones the
#                    runner checks) for o and down at M (MS, default 2048): speed of
#                    light, memory workload, warp stalls, occupancy; ncu_WHAT.txt each
#   PART=bench       TP 1, llm42 (with ARGS, e.g. --no-cuda-fused-tree) against a base: the binary
#                    llm42-base (BASE_BIN when packing), or else llm42 with BASE_ARGS where it is
#                    set (BASE_ARGS= : llm42 with no extra flags), in the same call:
#                    batch-1 decode in both lanes, offline (1K,256) and ShareGPT-like (PROMPTS)
#                    with off, global, dvr at 10 % and 100 %
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.gpubin}
OUT=${OUT:-$PWD/gpu-out}
PART=${PART:-invariance}
MODEL=${MODEL:-dummy:llama-3.1-8b}
PROMPTS=${PROMPTS:-512}
mkdir -p "$OUT"
. scripts/gpu-common.sh  # the GEMM table kept between calls, a copy in $OUT
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}:$PWD/$BIN/lib
export NCCL_NVLS_ENABLE=0
L42="$BIN/llm42 --log-level warn"
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  echo "commit $(cat "$BIN/commit.txt" 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} >"$OUT/env.txt" 2>&1
gpus=$(nvidia-smi -L | wc -l)

case "$PART" in
invariance)
  # 24 prompts of varied lengths, decoded together (continuous batching), 96 tokens each.
  : >"$OUT/prompts.txt"
  for i in $(seq 1 24); do
    echo "Prompt $i: $(seq -s ' ' 1 $((3 * i)))" >>"$OUT/prompts.txt"
  done
  for mode in ${MODES:-dvr global off}; do
    det="--deterministic"
    [ "$mode" = off ] && det=""
    for tp in ${TPS:-1 2 4 8}; do
      for comm in ${COMMS:-in-process nccl nccl+graphs}; do
        [ "$comm" != in-process ] && [ "$tp" -gt "$gpus" ] && continue
        [ "$comm" != in-process ] && [ "$tp" = 1 ] && continue
        graphs=""
        [ "$comm" = nccl+graphs ] && graphs="--tp-cuda-graphs"
        line=$(timeout 240 $L42 generate --device cuda --model "$MODEL" --prompts \
          "$OUT/prompts.txt" -n 96 -q --logprobs --determinism "$mode" $det --tensor-parallel-size "$tp" \
          --tp-communicator "${comm%+graphs}" $graphs --gpu-memory-fraction 0.85 2>&1 | tail -n 1)
        echo "$mode tp $tp $comm: ${line##*output hash }" | tee -a "$OUT/invariance.txt"
      done
    done
  done
  ;;
lab)
  timeout 300 "$BIN/cuda_tp_lab" --json "$OUT/tp_lab.json" | tee "$OUT/tp_lab.txt"
  ;;
profile)
  ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
  [ -n "$ncu" ] || { echo "no ncu on this machine" >&2; exit 2; }
  for what in ${WHATS:-plain unfused 3 5 7 8 9 10}; do
    # cuda_tp_lab --profile brackets the one launch with cudaProfilerStart/Stop.
    timeout 150 "$ncu" --profile-from-start off --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
      "$BIN/cuda_tp_lab" --profile "$what" --ms "${MS:-2048}" >"$OUT/ncu_$what.txt" 2>&1
    echo "== $what rc $?"
    grep -E "^  [a-zA-Z_].*\(|Duration|Throughput|Warp Cycles Per Issued|Achieved Occupancy" \
      "$OUT/ncu_$what.txt" | head -n 24
  done
  ;;
bench)
  ids=$(seq -s, 1000 1031)
  # The base: the binary llm42-base where packed, else llm42 with BASE_ARGS where set.
  runs="llm42"
  if [ -x "$BIN/llm42-base" ]; then runs="$runs llm42-base"; elif [ -n "${BASE_ARGS+set}" ]; then runs="$runs base-args"; fi
  for run in $runs; do
    bin=$run extra=""
    [ "$run" = llm42 ] && extra=${ARGS:-}
    [ "$run" = base-args ] && bin=llm42 extra=$BASE_ARGS
    for det in "" "--deterministic"; do
      echo "== $run ${det:-(not deterministic)}" >>"$OUT/decode_b1.txt"
      timeout 120 "$BIN/$bin" --log-level warn generate --device cuda --model "$MODEL" $extra \
        --prompt-ids "$ids" -n 512 --ignore-eos -q $det 2>&1 | tail -n 1 | tee -a "$OUT/decode_b1.txt"
    done
    for w in ${WORKLOADS:-fixed:1024,256 sharegpt}; do
      name=${w//[:,]/_}
      echo "== $run $w" >>"$OUT/offline.txt"
      timeout 420 "$BIN/$bin" --log-level warn bench --device cuda --model "$MODEL" $extra --workload "$w" \
        --num-prompts "$PROMPTS" --modes off,global,dvr --deterministic-ratio 0.1,1 --no-progress \
        --json "$OUT/${run}_$name.json" 2>&1 | tee -a "$OUT/offline.txt"
    done
  done
  ;;
*)
  echo "unknown PART $PART" >&2
  exit 2
  ;;
esac
