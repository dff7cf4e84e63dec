#!/usr/bin/env python3
"""Two `llm42 bench` runs' pass time by kind of pass, side by side.

    python3 bench/pass_profile.py A.json[:RUN] B.json[:RUN]

RUN is the index in the file's "runs" (default 0). Rows are (graph replay or eager, tokens per
pass rounded up to a power of two), summed over both lanes; on the same workload two modes run
the same passes, so the difference column says where one mode's extra time goes.
"""
import json
import sys


def run_of(spec):
    """The run a FILE.json[:RUN] spec names (RUN: the index in the file's "runs", default 0)."""
    path, _, idx = spec.partition(":")
    with open(path) as f:
        runs = json.load(f)["runs"]
    if not (idx or "0").isdigit() or int(idx or 0) >= len(runs):
        sys.exit(f"{spec}: no run {idx} (the file has runs 0 to {len(runs) - 1})")
    return runs[int(idx or 0)]


def load(spec):
    run = run_of(spec)
    if "pass_profile" not in run:
        sys.exit(f"{spec}: no pass_profile (a bench JSON from before it was written)")
    return run


def by_kind(run):
    kinds = {}
    for r in run["pass_profile"]:
        e = kinds.setdefault((r["graph"], r["tokens_up_to"]), [0, 0, 0.0])
        e[0] += r["passes"]
        e[1] += r["tokens"]
        e[2] += r["seconds"]
    return kinds


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    ka, kb = by_kind(a), by_kind(b)
    print(f"A = {a['mode']} at {a['deterministic_ratio']} ({sys.argv[1]})")
    print(f"B = {b['mode']} at {b['deterministic_ratio']} ({sys.argv[2]})")
    print(f"{'pass':>5} {'tok<=':>6} {'passes A':>9} {'passes B':>9} {'tokens A':>9} "
          f"{'tokens B':>9} {'s A':>8} {'s B':>8} {'B-A s':>7} {'B/A':>6}")
    for k in sorted(set(ka) | set(kb)):
        x, y = ka.get(k, [0, 0, 0.0]), kb.get(k, [0, 0, 0.0])
        ratio = f"{y[2] / x[2]:.3f}" if x[2] else "-"
        print(f"{'graph' if k[0] else 'eager':>5} {k[1]:>6} {x[0]:>9} {y[0]:>9} {x[1]:>9} "
              f"{y[1]:>9} {x[2]:>8.2f} {y[2]:>8.2f} {y[2] - x[2]:>7.2f} {ratio:>6}")
    sa, sb = sum(v[2] for v in ka.values()), sum(v[2] for v in kb.values())
    if sa == 0 or a["total_tokens_per_s"] == 0:
        sys.exit("run A ran no passes")
    print(f"pass time: A {sa:.2f} s, B {sb:.2f} s (B/A {sb / sa:.4f}); total tok/s: "
          f"A {a['total_tokens_per_s']:.0f}, B {b['total_tokens_per_s']:.0f} "
          f"(B/A {b['total_tokens_per_s'] / a['total_tokens_per_s']:.4f})")


if __name__ == "__main__":
    main()
