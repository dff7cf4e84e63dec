"""llm42 against llama.cpp on the CPU, side by side: prefill and decode tok/s of `llm42 generate`
and of llama.cpp (llama-cpp-python) on the same GGUF file, prompt ids, thread count and greedy
decoding, batch 1. Run by scripts/bench-cpu-llamacpp.sh, which makes the F32 SmolLM2 file.

Each repetition runs every (threads, prompt length) once per engine, interleaved (llm42,
llama.cpp, llm42, ...), and measures the memory bandwidth with the same thread count; the table
gives medians. Decode gets a roofline: the bytes one step must read (the weights, the embedding
table counted once as the tied output layer, plus the KV cache at the step's mean context) over
the measured read bandwidth (a large copy is measured too and recorded in the JSON).

How each engine is timed, so the two numbers mean the same:
  llm42      its own summary line: prompt = until the first output token (the prefill pass and
             the first sampling), decode = the remaining n-1 tokens. A fresh process per run;
             the model load is not timed.
  llama.cpp  wall clock around Llama.eval: prompt = eval of the prompt (one ubatch up to 512)
             plus the argmax of its logits; decode = n-1 single-token evals, each with its
             argmax. The model is loaded once per thread count and warmed up with one run.
Both keep the KV cache in F32.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: bandwidth() threads itself
import numpy as np  # noqa: E402
from gguf import GGUFReader  # noqa: E402
import llama_cpp  # noqa: E402
from llama_cpp import Llama  # noqa: E402

GGML_TYPE_F32 = 0
CHECK_PROMPT = 128
# Plain English, repeated until a prompt is long enough; fixed so that every run sees the same ids.
TEXT = (
    "The history of the lighthouse begins with fires lit on hilltops to guide ships home. "
    "Later, towers of stone carried oil lamps, and mirrors gathered their light into a beam. "
    "In the nineteenth century the Fresnel lens made the beam visible for many miles, and "
    "keepers lived beside the lamp, trimming wicks and winding the clockwork that turned it. "
    "Today most lights are automatic, powered by the sun, and watched from far away. "
    "Sailors still read the rhythm of each light to know which coast lies ahead. "
)
SUMMARY = re.compile(r"prompt: (\d+) tok, ([\d.]+) tok/s \| decode: (\d+) tok, ([\d.]+) tok/s")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="GGUF file both engines load")
    ap.add_argument("--llm42", default="build/bin/llm42", help="the llm42 binary")
    ap.add_argument("--threads", default=str(os.cpu_count()),
                    help="comma-separated thread counts (default: nproc)")
    ap.add_argument("--prompt-tokens", default="128,512", help="comma-separated prompt lengths")
    ap.add_argument("--decode-tokens", type=int, default=128, help="tokens generated per run")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (the table gives medians)")
    ap.add_argument("--check-tokens", type=int, default=8,
                    help="greedy tokens both engines must agree on before timing")
    ap.add_argument("--json", help="write every run and the medians here")
    return ap.parse_args()


def model_bytes(path):
    """Bytes one decode step reads (weights) and KV bytes per token of context, from the GGUF."""
    r = GGUFReader(path)
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("llama.")}
    tensors = {t.name: int(t.n_bytes) for t in r.tensors}
    weights = sum(tensors.values())
    if "output.weight" in tensors:  # untied: decode reads one row of the embedding table
        weights -= tensors["token_embd.weight"]
    n_layer, n_head, n_kv = f["llama.block_count"], f["llama.attention.head_count"], \
        f["llama.attention.head_count_kv"]
    head_dim = f["llama.embedding_length"] // n_head
    return {"weights_bytes": weights,
            "kv_bytes_per_token": n_layer * 2 * n_kv * head_dim * 4}


def bandwidth(threads, mib=256, reps=5):
    """Bytes per second of a large read (a float32 dot product of an array with itself: the
    stream decode does) and of a large copy (read plus written), each split over `threads`
    threads; numpy releases the GIL while it runs (one BLAS thread each)."""
    n = (mib << 20) // 4
    a, b = np.random.default_rng(0).random(n, np.float32), np.zeros(n, np.float32)
    spans = [(p[0], p[-1] + 1) for p in np.array_split(np.arange(n), threads)]

    def rate(work, nbytes):
        def once():
            ts = [threading.Thread(target=work, args=span) for span in spans]
            t0 = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            return time.perf_counter() - t0
        once()
        return nbytes / statistics.median(once() for _ in range(reps))

    return {"read": rate(lambda s, e: np.dot(a[s:e], a[s:e]), 4 * n),
            "copy": rate(lambda s, e: np.copyto(b[s:e], a[s:e]), 8 * n)}


def prompt_ids(llm, n):
    ids = []
    while len(ids) < n:
        ids += llm.tokenize(TEXT.encode(), add_bos=False, special=False)
    return ids[:n]


def llm42_run(args, threads, ids, n, quiet=True):
    cmd = [args.llm42, "--log-level", "warn", "generate", "--threads", str(threads),
           "--model", args.model, "--max-seq-len", str(len(ids) + n + 16),
           "--prompt-ids", ",".join(map(str, ids)), "-n", str(n), "--ignore-eos"]
    if quiet:
        cmd.append("-q")
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = SUMMARY.search(p.stderr)
    if p.returncode != 0 or not m:
        sys.exit(f"cpu_llamacpp: {' '.join(cmd[:6])} ... failed (rc {p.returncode}):\n{p.stderr}")
    return {"prefill_tok_s": float(m.group(2)), "decode_tok_s": float(m.group(4)),
            "stdout": p.stdout}


def argmax_logits(llm):
    return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))


def llama_run(llm, ids, n):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    out = [argmax_logits(llm)]
    t1 = time.perf_counter()
    for _ in range(n - 1):
        llm.eval([out[-1]])
        out.append(argmax_logits(llm))
    t2 = time.perf_counter()
    return {"prefill_tok_s": len(ids) / (t1 - t0), "decode_tok_s": (n - 1) / (t2 - t1),
            "ids": out}


def load_llama(path, threads, n_ctx):
    return Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads,
                 n_threads_batch=threads, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, seed=0,
                 verbose=False)


def greedy_agreement(args, llm, threads):
    """Tokens both engines produce alike from a CHECK_PROMPT-token prompt. llm42 prints text, so its
    output is compared with the text of llama.cpp's first k tokens, for the largest k."""
    ids = prompt_ids(llm, CHECK_PROMPT)
    n = max(args.check_tokens, 1)
    theirs = llama_run(llm, ids, n)["ids"]
    out = llm42_run(args, threads, ids, n, quiet=False)["stdout"]
    shown = llm.detokenize(ids).decode("utf-8", errors="replace")
    ours = out[len(shown):] if out.startswith(shown) else out
    agree = 0
    for k in range(1, n + 1):
        if ours.startswith(llm.detokenize(theirs[:k]).decode("utf-8", errors="replace")):
            agree = k
        else:
            break
    return agree, n, theirs


def main():
    args = parse_args()
    threads_list = [int(t) for t in args.threads.split(",")]
    lengths = [int(p) for p in args.prompt_tokens.split(",")]
    n = args.decode_tokens
    if not os.access(args.llm42, os.X_OK):
        sys.exit(f"cpu_llamacpp: {args.llm42} is not an executable (build it: ninja -C build llm42)")
    mb = model_bytes(args.model)
    n_ctx = max(lengths + [CHECK_PROMPT]) + max(n, args.check_tokens) + 16
    llamas = {t: load_llama(args.model, t, n_ctx) for t in threads_list}
    first = llamas[threads_list[0]]
    prompts = {p: prompt_ids(first, p) for p in lengths}

    agree, checked, _ = greedy_agreement(args, first, threads_list[0])
    check = {"agree": agree, "checked": checked}
    if agree < checked:
        print(f"WARNING: llm42 and llama.cpp agree on only {agree} of the first {checked} greedy "
              "tokens: the two may not be running the same model", file=sys.stderr)
    else:
        print(f"greedy check: the first {checked} tokens agree", file=sys.stderr)
    for t, llm in llamas.items():  # warm-up: buffers allocated, weights paged in
        llama_run(llm, prompts[lengths[0]], 4)

    load = [os.getloadavg()[0]]  # the machine's 1-minute load: others' work shows here
    runs, bw_runs = [], {t: [] for t in threads_list}
    for rep in range(args.reps):
        for t in threads_list:
            bw_runs[t].append(bandwidth(t))
            for p in lengths:
                for engine in ("llm42", "llama.cpp"):
                    r = (llm42_run(args, t, prompts[p], n) if engine == "llm42"
                         else llama_run(llamas[t], prompts[p], n))
                    runs.append({"rep": rep, "engine": engine, "threads": t, "prompt_tokens": p,
                                 "decode_tokens": n, "prefill_tok_s": r["prefill_tok_s"],
                                 "decode_tok_s": r["decode_tok_s"]})
                    print(f"rep {rep} {engine:9} threads {t} prompt {p}: prefill "
                          f"{r['prefill_tok_s']:.1f} decode {r['decode_tok_s']:.2f} tok/s",
                          file=sys.stderr)

    load.append(os.getloadavg()[0])
    rows = []
    for t in threads_list:
        bw = statistics.median(b["read"] for b in bw_runs[t])
        copy = statistics.median(b["copy"] for b in bw_runs[t])
        for p in lengths:
            step_bytes = mb["weights_bytes"] + mb["kv_bytes_per_token"] * (p + (n - 1) / 2)
            roof = bw / step_bytes
            med = {}
            for engine in ("llm42", "llama.cpp"):
                sel = [r for r in runs if r["engine"] == engine and r["threads"] == t
                       and r["prompt_tokens"] == p]
                med[engine] = {k: statistics.median(r[k] for r in sel)
                               for k in ("prefill_tok_s", "decode_tok_s")}
                med[engine]["decode_spread"] = (min(r["decode_tok_s"] for r in sel),
                                                max(r["decode_tok_s"] for r in sel))
            for engine in ("llm42", "llama.cpp"):
                m = med[engine]
                rows.append({"engine": engine, "threads": t, "prompt_tokens": p,
                             "decode_tokens": n, "prefill_tok_s": m["prefill_tok_s"],
                             "decode_tok_s": m["decode_tok_s"],
                             "decode_tok_s_min_max": m["decode_spread"],
                             "read_gb_s": bw / 1e9, "copy_gb_s": copy / 1e9,
                             "decode_roofline_tok_s": roof,
                             "decode_pct_roofline": 100 * m["decode_tok_s"] / roof,
                             "prefill_ratio": m["prefill_tok_s"] / med["llama.cpp"]["prefill_tok_s"],
                             "decode_ratio": m["decode_tok_s"] / med["llama.cpp"]["decode_tok_s"]})

    print(f"\n{os.path.basename(args.model)}: {mb['weights_bytes'] / 1e6:.0f} MB read per decode "
          f"step (+ {mb['kv_bytes_per_token'] / 1e3:.1f} kB KV per token of context); "
          f"{args.reps} reps, medians; greedy check {agree}/{checked}; load average "
          f"{load[0]:.1f} before, {load[1]:.1f} after on {os.cpu_count()} CPUs")
    print("| engine | threads | prompt tok | prefill tok/s | decode tok/s (min-max) | read GB/s "
          "| decode % of roofline | llm42/llama.cpp prefill | decode |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        lo, hi = r["decode_tok_s_min_max"]
        ratio = (f"{r['prefill_ratio']:.2f} | {r['decode_ratio']:.2f}" if r["engine"] == "llm42"
                 else "|")
        print(f"| {r['engine']} | {r['threads']} | {r['prompt_tokens']} | {r['prefill_tok_s']:.1f} "
              f"| {r['decode_tok_s']:.2f} ({lo:.2f}-{hi:.2f}) | {r['read_gb_s']:.1f} "
              f"| {r['decode_pct_roofline']:.0f} % of {r['decode_roofline_tok_s']:.1f} | {ratio} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "model_bytes": mb, "greedy_check": check,
                       "load_average_before_after": load, "cpus": os.cpu_count(),
                       "llama_cpp_version": llama_cpp.__version__, "reps": args.reps,
                       "bandwidth_gb_s": {t: [{k: x / 1e9 for k, x in b.items()} for b in v]
                                          for t, v in bw_runs.items()},
                       "rows": rows, "runs": runs}, fh, indent=1)


if __name__ == "__main__":
    main()
