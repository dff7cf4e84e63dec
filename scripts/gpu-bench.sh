#!/usr/bin/env bash
# The GPU benchmarks of docs/benchmarks.md, run on the device machine from the repository root
# with the llm42 binary packed by scripts/gpu-pack.sh into .gpubin/. Everything lands in $OUT
# (tables as .txt, results as .json). Parts, so that each fits one device call:
#   PART=ceilings  the device's bandwidth and GEMM rate, batch-1 decode (with and without CUDA
#                  graphs), the transformers peer (eager)
#   PART=peer      the device's bandwidth and GEMM rate, then the transformers peer as a user after
#                  speed would run it (static KV cache + torch.compile) and llm42 at the same
#                  batch sizes (PEER_BATCHES): off, and every request deterministic in global
#                  and dvr
#   PART=offline   offline throughput of off / global / dvr at several deterministic ratios
#                  (WORKLOADS, PROMPTS)
#   PART=prefill   4K-token prompts, off and global (PROMPTS)
#   PART=online    Poisson arrivals (QPS list) of the ShareGPT-like workload: latency percentiles
#                  of off, global and dvr at RATIOS
#   PART=micro     the paper's decode microbenchmark: batch 8 and 9 with one deterministic
#                  request, fast decode + verification (W 64) against off
#   PART=studies   recompute rate against W with injected mismatches, the W x G grid
#   PART=arxiv     where an ArXiv-like pass spends its time: the attention lab's and the decode
#                  lab's --arxiv sections, then the workload (PROMPTS, default 512) off with the
#                  tall attention tiles by load and beside decode rows (--cuda-attention-tall
#                  auto, mixed)
# EXTRA adds engine flags to every llm42 bench run (e.g. --kv-cache-memory-fraction 0.5, the
# default before the ninth session, or --cuda-canonical-m-step 64).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.gpubin}
OUT=${OUT:-$PWD/gpu-out}
PART=${PART:-ceilings}
MODEL=${MODEL:-dummy:llama-3.1-8b}
mkdir -p "$OUT"
. scripts/gpu-common.sh  # the GEMM table kept between calls, a copy in $OUT
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$PWD/$BIN/lib
L42="$BIN/llm42 --log-level warn"
PY=${PY:-python3}
PEER_BATCHES=${PEER_BATCHES:-1,8,32}  # PEER_BATCHES=none: no transformers peer
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
  >"$OUT/env.txt"
cat "$BIN/commit.txt" >>"$OUT/env.txt" 2>/dev/null

case "$PART" in
ceilings)
  timeout 120 $PY bench/gpu_roofline.py --json "$OUT/roofline.json" | tee "$OUT/roofline.txt"
  ids=$(seq -s, 1000 1031)  # a 32-token prompt
  # Batch-1 decode: not deterministic and deterministic, with CUDA graphs and without.
  for graphs in 256 0; do
    for det in "" "--deterministic"; do
      echo "== cuda-graph-max-batch $graphs ${det:-(not deterministic)}" >>"$OUT/decode_b1.txt"
      timeout 120 $L42 generate --device cuda --model "$MODEL" --prompt-ids "$ids" -n 512 \
        --ignore-eos -q --cuda-graph-max-batch $graphs $det 2>&1 | tee -a "$OUT/decode_b1.txt"
    done
  done
  [ "$PEER_BATCHES" = none ] && exit 0
  timeout 240 $PY bench/hf_peer.py --batches "$PEER_BATCHES" --in-len 128 --out-len 128 \
    --json "$OUT/hf_peer.json" 2>&1 | grep -v Warning | tee "$OUT/hf_peer.txt"
  for b in ${PEER_BATCHES//,/ }; do
    timeout 120 $L42 bench --device cuda --model "$MODEL" --workload fixed:128,128 \
      --num-prompts "$b" --max-num-seqs "$b" --modes off --no-progress \
      --json "$OUT/llm42_peer_b$b.json" 2>&1 | tee -a "$OUT/llm42_peer.txt"
  done
  ;;
peer)
  timeout 120 $PY bench/gpu_roofline.py --json "$OUT/roofline.json" | tee "$OUT/roofline.txt"
  export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/llm42-inductor}
  timeout "${PEER_TIMEOUT:-420}" $PY bench/hf_peer.py --batches "$PEER_BATCHES" --in-len 128 \
    --out-len 128 --compile --json "$OUT/hf_peer_compiled.json" 2>&1 | grep -v Warning |
    tee "$OUT/hf_peer_compiled.txt"
  for b in ${PEER_BATCHES//,/ }; do
    timeout 150 $L42 bench --device cuda --model "$MODEL" --workload fixed:128,128 \
      --num-prompts "$b" --max-num-seqs "$b" --modes off,global,dvr --deterministic-ratio 1 \
      --no-progress --json "$OUT/llm42_peer_b$b.json" 2>&1 | tee -a "$OUT/llm42_peer.txt"
  done
  ;;
offline)
  for w in ${WORKLOADS:-fixed:1024,256 sharegpt}; do
    name=${w//[:,]/_}
    timeout "${SWEEP_TIMEOUT:-280}" $L42 bench --device cuda --model "$MODEL" --workload "$w" \
      --num-prompts "${PROMPTS:-256}" --modes "${MODES:-off,global,dvr}" \
      --deterministic-ratio "${RATIOS:-0.02,0.1,0.5,1}" --no-progress ${EXTRA:-} \
      --json "$OUT/offline_$name.json" --plot "$OUT/offline_$name.svg" 2>&1 | \
      tee -a "$OUT/offline.txt"
  done
  ;;
prefill)
  timeout "${SWEEP_TIMEOUT:-200}" $L42 bench --device cuda --model "$MODEL" \
    --workload fixed:4096,1 --num-prompts "${PROMPTS:-64}" --modes off,global --no-progress \
    ${EXTRA:-} --json "$OUT/prefill4k.json" 2>&1 | tee -a "$OUT/prefill.txt"
  ;;
online)
  for qps in ${QPS:-4 8 16}; do
    timeout "${SWEEP_TIMEOUT:-200}" $L42 bench --device cuda --model "$MODEL" \
      --workload "${WORKLOADS:-sharegpt}" --num-prompts "${PROMPTS:-128}" --request-rate "$qps" \
      --modes "${MODES:-off,global,dvr}" --deterministic-ratio "${RATIOS:-0.1,1}" --no-progress \
      ${EXTRA:-} --json "$OUT/online_qps$qps.json" 2>&1 | sed "s/^/qps=$qps /" | \
      tee -a "$OUT/online.txt"
  done
  ;;
micro)
  # Batch 8 and 9, one deterministic request (ratios 1/8 and 1/9), verified in windows of 64.
  for b in 8 9; do
    ratio=$(awk "BEGIN {printf \"%.6f\", 1 / $b + 1e-6}")  # exactly one of b
    timeout 120 $L42 bench --device cuda --model "$MODEL" --workload fixed:1024,256 \
      --num-prompts "$b" --max-num-seqs "$b" --modes off,dvr --deterministic-ratio "$ratio" \
      --canonical-decode-threshold 1.01 --window 64 --no-progress ${EXTRA:-} \
      --json "$OUT/micro_b$b.json" 2>&1 | sed "s/^/batch=$b /" | tee -a "$OUT/micro.txt"
  done
  ;;
studies)
  # Recompute rate and throughput against W at 100 % deterministic traffic, natural and with an
  # injected mismatch in 10 % of windows; then the W x G grid.
  for inj in 0 0.1; do
    for win in 16 32 64 128 256; do
      timeout 100 $L42 bench --device cuda --model "$MODEL" --workload fixed:1024,256 \
        --num-prompts "${PROMPTS:-128}" --modes dvr --deterministic-ratio 1 --window "$win" \
        --inject-mismatch-rate "$inj" --no-progress \
        --json "$OUT/study_w${win}_inj${inj}.json" 2>&1 | grep -E '^dvr' | \
        sed "s/^/W=$win inject=$inj /" | tee -a "$OUT/studies.txt"
    done
  done
  for win in 32 64 128; do
    for g in 4 8 16; do
      timeout 100 $L42 bench --device cuda --model "$MODEL" --workload fixed:1024,256 \
        --num-prompts "${PROMPTS:-128}" --modes dvr --deterministic-ratio 1 --window "$win" \
        --group "$g" --no-progress --json "$OUT/grid_w${win}_g${g}.json" 2>&1 | grep -E '^dvr' | \
        sed "s/^/W=$win G=$g /" | tee -a "$OUT/studies.txt"
    done
  done
  ;;
arxiv)
  timeout 120 "$BIN/cuda_attention_lab" --arxiv 2>&1 | tee "$OUT/arxiv_attention_lab.txt"
  timeout 150 "$BIN/cuda_decode_lab" --arxiv 2>&1 | tee "$OUT/arxiv_decode_lab.txt"
  for tall in auto mixed; do
    timeout "${SWEEP_TIMEOUT:-200}" $L42 bench --device cuda --model "$MODEL" --workload arxiv \
      --num-prompts "${PROMPTS:-512}" --modes off --cuda-attention-tall $tall --no-progress \
      ${EXTRA:-} --json "$OUT/arxiv_tall_$tall.json" 2>&1 | sed "s/^/tall=$tall /" | \
      tee -a "$OUT/arxiv.txt"
  done
  ;;
*)
  echo "PART must be ceilings, offline, prefill, online, micro, studies or arxiv" >&2
  exit 2
  ;;
esac
