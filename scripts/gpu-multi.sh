#!/usr/bin/env bash
# The runs on several GPUs of one host (issue 25; docs/tensor-parallel.md), from the repository
# root on the device machine with the binaries that scripts/gpu-pack.sh packed into .gpubin/
# (pack with TOKENIZERS=llama3 for PART=check). Everything lands in $OUT; each part is one device
# call (under 10 minutes on 8 H100s). NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
#   PART=validate    the CUDA suite on GPU 0 with every GPU visible (so the NCCL tests run at
#                    N = 2, 4, 8), and at the same time the kernel tests on each other GPU alone;
#                    copy bandwidth and GEMM rate of every GPU (bench/gpu_roofline.py, one GPU at a
#                    time); cuda_nccl_lab: all-reduce and all-gather at the sizes a decode step and
#                    a prefill pass exchange, and the bus bandwidth of 1 GiB, at every N
#   PART=invariance  deterministic requests (dvr, global) bitwise identical in ids and logprobs at
#                    TP 1, 2, 4, 8 with NCCL ranks, eager and as CUDA graphs, and `off` shown to
#                    differ (scripts/gpu-tp.sh PART=invariance): the Llama-3.1-8B shape (TP 1 on
#                    one GPU is the reference)
#   PART=invariance70b  the same for the Llama-3.3-70B shape at TP 4 and 8 (it fits no fewer
#                    GPUs), dvr and off
#   PART=check       two servers of the Llama-3.1-8B shape, TP 1 on GPU 0 and TP 4 on GPUs 4-7
#                    (NCCL), and `llm42 check --compare-url`: the same deterministic answers
#   PART=bench8b     offline total tok/s of the Llama-3.1-8B shape at TP 1, 2 and 4 at once on
#                    disjoint GPUs (TP 1 on GPU 0, TP 2 on GPUs 2-3, TP 4 on GPUs 4-7) on (1K,256)
#                    and ShareGPT-like (WORKLOADS, PROMPTS), off / global / dvr at 10 % and 100 %
#   PART=bench70b    the Llama-3.3-70B shape at TP 4, then 8, on ShareGPT-like (PROMPTS), the
#                    same modes; batch-1 decode at TP 8 in both lanes (weights read per GPU)
# Then, here, one plot per model: `llm42 bench plot --against tp --out tp-8b.svg
# $OUT/bench_llama-3.1-8b_*.json`, and the same over $OUT/bench_llama-3.3-70b_*.json.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.gpubin}
OUT=${OUT:-$PWD/gpu-out}
PART=${PART:-validate}
PROMPTS=${PROMPTS:-512}
mkdir -p "$OUT"
. scripts/gpu-common.sh  # the GEMM table kept between calls, a copy in $OUT
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}:$PWD/$BIN/lib
export NCCL_NVLS_ENABLE=0
export LLM42_SHARED_DIR=$PWD/$BIN/shared
L42="$BIN/llm42 --log-level warn"
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  echo "commit $(cat "$BIN/commit.txt" 2>/dev/null)"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
  nvidia-smi topo -m
} >"$OUT/env.txt" 2>&1
gpus=$(nvidia-smi -L | wc -l)
echo "$gpus GPUs" >&2

# Offline runs of MODEL on each workload in WORKLOADS, for each placement "TP:FIRST_GPU" in
# PLACES; the placements of one call run at the same time (their GPUs must be disjoint).
bench_tp() {
  for place in $PLACES; do
    tp=${place%%:*} first=${place##*:}
    [ $((first + tp)) -gt "$gpus" ] && { echo "TP $tp from GPU $first: not enough GPUs" >&2; continue; }
    (
      for w in $WORKLOADS; do
        name=${w//[:,]/_}
        timeout "${BENCH_TIMEOUT:-270}" $L42 bench --device "cuda:$first" --model "$MODEL" \
          --workload "$w" --num-prompts "$PROMPTS" --modes off,global,dvr \
          --deterministic-ratio 0.1,1 --tensor-parallel-size "$tp" --no-progress \
          --json "$OUT/bench_${MODEL##*:}_tp${tp}_$name.json" >"$OUT/bench_tp${tp}_$name.txt" 2>&1
      done
    ) &
  done
  wait
  for place in $PLACES; do
    for w in $WORKLOADS; do
      f=$OUT/bench_tp${place%%:*}_${w//[:,]/_}.txt
      [ -f "$f" ] || continue
      echo "== ${MODEL##*:} TP ${place%%:*} $w"
      grep -E '^(mode|off|global|dvr) ' "$f"
    done
  done | tee -a "$OUT/bench.txt"
}

case "$PART" in
validate)
  # GPU 0 sees every GPU (the NCCL tests' N = 2, 4, 8); the others run the kernel tests alone,
  # all at once.
  for g in $(seq 1 $((gpus - 1))); do
    CUDA_VISIBLE_DEVICES=$g timeout 400 "$BIN/llm42_cuda_tests" \
      --gtest_filter='CudaKernels.*:CudaRowParallel.*' --gtest_output="json:$OUT/tests-gpu$g.json" \
      >"$OUT/tests-gpu$g.log" 2>&1 &
  done
  timeout 420 "$BIN/llm42_cuda_tests" --gtest_output="json:$OUT/tests-gpu0.json" \
    >"$OUT/tests-gpu0.log" 2>&1
  wait
  for g in $(seq 0 $((gpus - 1))); do
    echo "GPU $g: $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/tests-gpu$g.log" | tr '\n' ' ')"
  done | tee "$OUT/tests-summary.txt"
  grep -h '^\[nccl\]' "$OUT/tests-gpu0.log" | tee -a "$OUT/tests-summary.txt"
  for g in $(seq 0 $((gpus - 1))); do
    CUDA_VISIBLE_DEVICES=$g timeout 60 python3 bench/gpu_roofline.py \
      --json "$OUT/roofline-gpu$g.json" >"$OUT/roofline-gpu$g.txt" 2>&1
    echo "GPU $g: $(tail -n 3 "$OUT/roofline-gpu$g.txt" | tr '\n' ' ')"
  done
  timeout 150 "$BIN/cuda_nccl_lab" --json "$OUT/nccl_lab.json" | tee "$OUT/nccl_lab.txt"
  ;;
invariance)
  # TP 1 on one GPU (the reference), then 2, 4, 8 with NCCL ranks, eager and as graphs.
  MODEL=dummy:llama-3.1-8b COMMS=in-process TPS=1 OUT=$OUT/8b PART=invariance \
    timeout 150 scripts/gpu-tp.sh
  MODEL=dummy:llama-3.1-8b COMMS="nccl nccl+graphs" TPS="2 4 8" OUT=$OUT/8b PART=invariance \
    timeout 420 scripts/gpu-tp.sh
  sort "$OUT/8b/invariance.txt" | tee "$OUT/invariance-8b.txt"
  ;;
invariance70b)
  MODEL=dummy:llama-3.3-70b COMMS="nccl nccl+graphs" TPS="4 8" MODES="dvr off" OUT=$OUT/70b \
    PART=invariance timeout 540 scripts/gpu-tp.sh
  sort "$OUT/70b/invariance.txt" | tee "$OUT/invariance-70b.txt"
  ;;
check)
  tok=$BIN/shared/tokenizers/llama3
  [ -d "$tok" ] || { echo "pack with TOKENIZERS=llama3 (scripts/gpu-pack.sh)" >&2; exit 2; }
  $L42 serve --device cuda:0 --model dummy:llama-3.1-8b --tokenizer "$tok" --port 8101 \
    >"$OUT/serve-tp1.log" 2>&1 &
  a=$!
  $L42 serve --device cuda:4 --tensor-parallel-size 4 --model dummy:llama-3.1-8b \
    --tokenizer "$tok" --port 8104 >"$OUT/serve-tp4.log" 2>&1 &
  b=$!
  for port in 8101 8104; do
    for _ in $(seq 1 120); do
      curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
      sleep 2
    done
  done
  timeout 400 $L42 check --url http://127.0.0.1:8101 --compare-url http://127.0.0.1:8104 \
    --json "$OUT/check.json" 2>&1 | tee "$OUT/check.txt"
  kill $a $b
  wait
  ;;
bench8b)
  MODEL=dummy:llama-3.1-8b PLACES="1:0 2:2 4:4" WORKLOADS=${WORKLOADS:-fixed:1024,256 sharegpt}
  bench_tp
  ;;
bench70b)
  MODEL=dummy:llama-3.3-70b WORKLOADS=${WORKLOADS:-sharegpt} BENCH_TIMEOUT=200
  PLACES=4:0 bench_tp
  PLACES=8:0 bench_tp
  ids=$(seq -s, 1000 1031)
  for det in "" "--deterministic"; do
    echo "== TP 8 ${det:-(not deterministic)}" >>"$OUT/decode_b1_70b.txt"
    timeout 150 $L42 generate --device cuda --model dummy:llama-3.3-70b --tensor-parallel-size 8 \
      --prompt-ids "$ids" -n 256 --ignore-eos -q $det 2>&1 | tail -n 1 |
      tee -a "$OUT/decode_b1_70b.txt"
  done
  ;;
*)
  echo "PART must be validate, invariance, invariance70b, check, bench8b or bench70b" >&2
  exit 2
  ;;
esac
