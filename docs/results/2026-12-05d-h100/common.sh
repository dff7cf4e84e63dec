# sourced by runN.sh: N set
set -uo pipefail
B=$PWD/.gpubin
R=$OUT/run$N; mkdir -p $R
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:$B/lib
export LLM42_GEMM_CACHE=/tmp/llm42-gemm-cache.json
S=$R/summary.txt
pack() { cp $S $OUT/summary.txt; cp $LLM42_GEMM_CACHE $R/ 2>/dev/null; tar czf $OUT/run$N.tmp -C $OUT run$N && mv $OUT/run$N.tmp $OUT/run$N.tgz; }
t0=$(date +%s)
{ date -u; cat $B/commit.txt; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > $S 2>&1
BENCH="--log-level info bench --device cuda --model dummy:llama-3.1-8b --no-progress --deterministic-ratio 0.1"
run() {  # name timeout args...
  local name=$1 to=$2; shift 2
  timeout $to $B/llm42 $BENCH "$@" --json $R/$name.json > $R/$name.txt 2> $R/$name.err
  echo "$name rc $? at $(( $(date +%s) - t0 )) s" >> $S
  grep -E "canonical GEMMs ready|KV cache of|^(off|dvr|global) " $R/$name.txt $R/$name.err | sed 's|.*/||' >> $S
  python3 - $R/$name.json >> $S 2>&1 <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for r in d.get("runs", d if isinstance(d, list) else []):
    print(" ", r.get("mode"), "preempt", r.get("preemptions"), "reserve", r.get("admission_reserve"), "ratio", r.get("admission_reserve_ratio"), "kv", r.get("kv_cache_tokens"))
PY
  pack
}
