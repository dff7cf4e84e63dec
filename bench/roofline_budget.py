#!/usr/bin/env python3
"""A `llm42 bench` run's time against the device's ceilings, part by part.

    python3 bench/roofline_budget.py RESULT.json[:RUN] ROOFLINE.json [--work WORK.json]
                                     [--json OUT.json]

RESULT is a bench JSON (RUN: the index in its "runs", default 0) with the "work" the workload
asks of the model (src/bench/workload_cost.h: what serving it once costs, counted from the
requests' lengths; for a run recorded before "work" existed, `llm42 bench work --json WORK.json`
with the same model, workload, prompts and seed gives it, checked against the run's token
totals); ROOFLINE is bench/gpu_roofline.py's JSON from the same device (its bf16 GEMM
rate on the 4K-prefill GEMM mix and its copy bandwidth). Each part of the work is divided by the
ceiling of the unit that does it:

    linear layers       linear_flop / GEMM rate
    weights             engine steps x weight bytes a step / bandwidth (this run's steps: the
                        GEMMs stream every weight once a pass)
    prefill attention   prefill_attention_flop / GEMM rate (a tensor-core ceiling)
    decode attention    decode_kv_bytes / bandwidth (a decode query reads its whole context)

"serial" is the GEMMs (the larger of their two lines: a pass's GEMMs are compute- or
weight-bound) plus both attention lines, each kernel at its ceiling and none overlapping
another, as the passes run them; "bound" is the larger of the compute and the memory sums, a
lower bound for any schedule of this run's steps. Both are set against the run's pass time
(step_pass_s) and duration, with the throughput each would allow.
"""
import argparse
import json
import sys

from pass_profile import run_of


def load_run(spec, work_path=None):
    run = run_of(spec)
    if work_path:
        with open(work_path) as f:
            work = json.load(f)
        for key in ("prompt_tokens", "output_tokens"):
            if work.get(key) != run.get(key):
                sys.exit(f"{work_path}: {key} {work.get(key)} against the run's {run.get(key)}: "
                         "not the same workload")
        run = dict(run, work=work["work"])
    if "work" not in run:
        sys.exit(f"{spec}: no \"work\" (a bench JSON from before it was written: "
                 "give --work from `llm42 bench work`)")
    return run


def budget(run, roofline):
    gemm = roofline.get("prefill_4k_gemm_tflops") or roofline["bf16_gemm_tflops"]["8192^3"]
    flops = gemm * 1e12
    bw = roofline["copy_bandwidth_gbs"] * 1e9
    w = run["work"]
    steps = run["engine_steps"]
    parts = [
        ("linear layers", w["linear_flop"] / 1e15, "PFLOP", w["linear_flop"] / flops, "compute"),
        ("weights", steps * w["weight_bytes_per_step"] / 1e12, f"TB ({steps} steps)",
         steps * w["weight_bytes_per_step"] / bw, "memory"),
        ("prefill attention", w["prefill_attention_flop"] / 1e15, "PFLOP",
         w["prefill_attention_flop"] / flops, "compute"),
        ("decode attention", w["decode_kv_bytes"] / 1e12, "TB of KV", w["decode_kv_bytes"] / bw,
         "memory"),
    ]
    seconds = {p[0]: p[3] for p in parts}
    compute = sum(p[3] for p in parts if p[4] == "compute")
    memory = sum(p[3] for p in parts if p[4] == "memory")
    serial = (max(seconds["linear layers"], seconds["weights"]) + seconds["prefill attention"] +
              seconds["decode attention"])
    tokens = run["prompt_tokens"] + run["output_tokens"]
    return {
        "gemm_tflops": gemm,
        "bandwidth_gbs": roofline["copy_bandwidth_gbs"],
        "parts": [{"part": p[0], "work": p[1], "unit": p[2], "seconds": p[3], "kind": p[4]}
                  for p in parts],
        "serial_s": serial,
        "bound_s": max(compute, memory),
        "pass_s": run["step_pass_s"],
        "duration_s": run["duration_s"],
        "tokens": tokens,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("result", help="bench JSON[:RUN]")
    ap.add_argument("roofline", help="bench/gpu_roofline.py JSON")
    ap.add_argument("--work", help="`llm42 bench work` JSON, for a run without \"work\"")
    ap.add_argument("--json", help="write the table as JSON")
    a = ap.parse_args()
    run = load_run(a.result, a.work)
    with open(a.roofline) as f:
        roofline = json.load(f)
    b = budget(run, roofline)
    print(f"{run['mode']} {run['workload']}, {run['num_prompts']} prompts: ceilings "
          f"{b['gemm_tflops']:.1f} TFLOP/s (GEMM), {b['bandwidth_gbs']:.0f} GB/s (copy)")
    print(f"{'part':<20} {'work':>9} {'':<18} {'s at ceiling':>12} {'share':>6}")
    for p in b["parts"]:
        print(f"{p['part']:<20} {p['work']:9.2f} {p['unit']:<18} {p['seconds']:12.1f} "
              f"{100 * p['seconds'] / b['pass_s']:5.0f}%")
    tok = b["tokens"]
    for name, s in (("serial", b["serial_s"]), ("bound", b["bound_s"]),
                    ("passes, measured", b["pass_s"]), ("duration, measured", b["duration_s"])):
        print(f"{name:<20} {'':>9} {'':<18} {s:12.1f} {tok / s:9.0f} tok/s")
    print(f"measured passes at {100 * b['serial_s'] / b['pass_s']:.0f}% of the serial sum, "
          f"{100 * b['bound_s'] / b['pass_s']:.0f}% of the bound")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(b, f, indent=2)


if __name__ == "__main__":
    main()
