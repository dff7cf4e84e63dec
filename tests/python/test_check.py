"""`llm42 check` against a real server on stories260K: every deterministic scenario passes and
the table and the JSON report say so; an unreachable server is an error, not a pass. Also the
benchmarks' outputs: `bench serve` against the server, the in-process `bench` sweep, and
`bench plot` over saved results.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
LLM42 = server_util.llm42_bin()


def run_check(srv, *args):
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
    out.close()
    p = subprocess.run([LLM42, "check", "--url", f"http://127.0.0.1:{srv.port}", "--json",
                        out.name, *args], capture_output=True, text=True, timeout=300)
    print(p.stdout)
    print(p.stderr, file=sys.stderr)
    with open(out.name) as f:
        report = json.load(f) if os.path.getsize(out.name) else None
    os.unlink(out.name)
    return p, report


class CheckTest(unittest.TestCase):
    def test_check_passes_on_dvr(self):
        with server_util.Server() as srv:
            p, report = run_check(srv, "--prompts", "12", "--max-tokens", "48",
                                  "--concurrency", "6", "--background", "8", "--seed", "3")
            self.assertEqual(p.returncode, 0, p.stdout)
            self.assertIn("PASS: every deterministic request was bitwise identical", p.stdout)
            self.assertTrue(report["passed"])
            det = [s for s in report["scenarios"] if s["deterministic"]]
            self.assertEqual(len(det), 4)
            for s in det:
                self.assertEqual((s["mismatched"], s["failed"]), (0, 0), s)
                self.assertEqual(s["requests"], 12)
            self.assertEqual(len(report["system_fingerprints"]), 1)

    def test_check_compares_servers_of_different_tensor_parallel_sizes(self):
        # stories260K at TP 1 and TP 4 (in-process CPU ranks): the same deterministic answers
        # and the same fingerprint; the fast lane is reported, not judged.
        with server_util.Server() as one, server_util.Server("--tensor-parallel-size", "4",
                                                             "--threads", "4") as four:
            p, report = run_check(one, "--prompts", "8", "--max-tokens", "32", "--concurrency",
                                  "4", "--background", "2", "--seed", "5", "--compare-url",
                                  f"http://127.0.0.1:{four.port}")
            self.assertEqual(p.returncode, 0, p.stdout)
            self.assertTrue(report["passed"])
            other = [s for s in report["scenarios"] if f":{four.port}" in s["name"]]
            self.assertEqual(len(other), 3, report["scenarios"])
            for s in other:
                if s["deterministic"]:
                    self.assertEqual((s["mismatched"], s["failed"]), (0, 0), s)
            self.assertIn(f"system_fingerprint of http://127.0.0.1:{four.port}", p.stdout)
            self.assertIn("(the same)", p.stdout)

    def test_check_reports_unreachable_server(self):
        port = server_util.free_port()
        p = subprocess.run([LLM42, "check", "--url", f"http://127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cannot connect", p.stderr)


class BenchServeTest(unittest.TestCase):
    def test_bench_serve_writes_json_and_plot(self):
        # `bench serve` is a subcommand of `bench`: it must run without bench's --model.
        with server_util.Server() as srv, tempfile.TemporaryDirectory() as d:
            p = subprocess.run([LLM42, "bench", "serve", "--url", f"http://127.0.0.1:{srv.port}",
                                "--qps", "8,inf", "--num-prompts", "12", "--workload",
                                "fixed:16,16", "--deterministic-ratio", "0.5",
                                "--json", os.path.join(d, "r.json"),
                                "--plot", os.path.join(d, "r.svg")],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(d, "r.json")) as f:
                report = json.load(f)
            self.assertEqual(len(report["results"]), 2)
            for r in report["results"]:
                self.assertEqual((r["completed"], r["failed"]), (12, 0), r)
                self.assertLessEqual(r["e2e_ms"]["p50"], r["e2e_ms"]["p99"])
            with open(os.path.join(d, "r.svg")) as f:
                self.assertIn("<svg", f.read())


class BenchPlotTest(unittest.TestCase):
    def bench_runs(self, d, *args):
        """`llm42 bench` on stories260K with ARGS, offline, writing D/r.json; it must succeed.
        Returns (process, JSON path, runs)."""
        res = os.path.join(d, "r.json")
        p = subprocess.run([LLM42, "bench", "--model", server_util.stories_model(), "--no-progress",
                            *args, "--json", res], capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(res) as f:
            return p, res, json.load(f)["runs"]

    def test_bench_sweep_plot_and_bench_plot(self):
        # The in-process sweep writes JSON and its SVG; `bench plot` redraws the JSON (no
        # --model needed) and names a broken file's problem.
        with tempfile.TemporaryDirectory() as d:
            svg = os.path.join(d, "r.svg")
            p, res, runs = self.bench_runs(d, "--workload", "fixed:8,6", "--num-prompts", "6",
                                           "--modes", "off,global,dvr",
                                           "--deterministic-ratio", "0.5,1", "--plot", svg)
            self.assertEqual([r["mode"] for r in runs], ["off", "global", "dvr", "dvr"])
            with open(svg) as f:
                self.assertIn("Throughput relative to off", f.read())
            again = os.path.join(d, "again.svg")
            p = subprocess.run([LLM42, "bench", "plot", "--out", again, "--title", "T <1>", res],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("plotted 4 runs from 1 files", p.stdout)
            with open(again) as f:
                self.assertIn("T &lt;1&gt;", f.read())
            bad = os.path.join(d, "bad.json")
            with open(bad, "w") as f:
                json.dump({"runs": [{"mode": "dvr", "workload": "w"}]}, f)
            p = subprocess.run([LLM42, "bench", "plot", "--out", again, bad],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 1)
            self.assertIn("bad.json: run 1: no 'deterministic_ratio'", p.stderr)

    def test_bench_pass_profile(self):
        # The pass profile accounts for every pass and all of the pass time, each pass in the
        # row of its lane and size; bench/pass_profile.py sets two runs side by side.
        with tempfile.TemporaryDirectory() as d:
            _, res, runs = self.bench_runs(d, "--workload", "fixed:24,12", "--num-prompts", "6",
                                           "--modes", "off,global,dvr",
                                           "--deterministic-ratio", "0.5")
            for r in runs:
                rows = r["pass_profile"]
                self.assertEqual(sum(x["passes"] for x in rows),
                                 r["fast_passes"] + r["canonical_passes"])
                self.assertAlmostEqual(sum(x["seconds"] for x in rows), r["step_pass_s"],
                                       delta=1e-6 + 1e-9 * r["step_pass_s"])
                self.assertEqual(sum(x["passes"] for x in rows if x["schedule"] == "canonical"),
                                 r["canonical_passes"])
                for x in rows:
                    n = x["tokens_up_to"]
                    self.assertEqual(n & (n - 1), 0, x)
                    self.assertLessEqual(x["tokens"], n * x["passes"], x)
                    self.assertGreater(x["tokens"], n // 2 * x["passes"] if n > 1 else 0, x)
            self.assertEqual({x["schedule"] for x in runs[0]["pass_profile"]}, {"fast"})
            self.assertEqual({x["schedule"] for x in runs[1]["pass_profile"]}, {"canonical"})
            script = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "pass_profile.py")
            p = subprocess.run([sys.executable, script, res + ":0", res + ":1"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("A = off at ", p.stdout)
            self.assertIn("B = global at ", p.stdout)
            self.assertRegex(p.stdout, r"pass time: A [0-9.]+ s, B [0-9.]+ s")
            p = subprocess.run([sys.executable, script, res + ":0", res + ":7"],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("no run 7", p.stderr)

    def test_bench_work_and_roofline_budget(self):
        # Each run's JSON holds the work its workload asks of the model (counted from the
        # requests' lengths), which bench/roofline_budget.py divides by a device's ceilings.
        with tempfile.TemporaryDirectory() as d:
            _, res, runs = self.bench_runs(d, "--workload", "fixed:24,12,fixed:24,2",
                                           "--num-prompts", "6", "--modes", "off")
            long, short = runs[0]["work"], runs[1]["work"]
            self.assertEqual(long["tokens_run"], 6 * (24 + 11))
            self.assertEqual(short["tokens_run"], 6 * (24 + 1))
            self.assertEqual(long["decode_steps"], 66)
            # Decode queries reach 25..35 keys against 25 alone: 330 / 25 of the KV bytes.
            self.assertAlmostEqual(long["decode_kv_bytes"] / short["decode_kv_bytes"], 330 / 25)
            self.assertEqual(long["prefill_attention_flop"], short["prefill_attention_flop"])
            self.assertGreater(long["linear_flop"], short["linear_flop"])
            self.assertGreater(long["weight_bytes_per_step"], 0)
            roof = os.path.join(d, "roof.json")
            with open(roof, "w") as f:
                json.dump({"copy_bandwidth_gbs": 100.0, "prefill_4k_gemm_tflops": 2.0}, f)
            script = os.path.join(os.path.dirname(__file__), "..", "..", "bench",
                                  "roofline_budget.py")
            out = os.path.join(d, "budget.json")
            p = subprocess.run([sys.executable, script, res + ":0", roof, "--json", out],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("linear layers", p.stdout)
            self.assertIn("passes, measured", p.stdout)
            with open(out) as f:
                b = json.load(f)
            parts = {x["part"]: x["seconds"] for x in b["parts"]}
            self.assertAlmostEqual(parts["linear layers"], long["linear_flop"] / 2e12)
            self.assertAlmostEqual(parts["decode attention"], long["decode_kv_bytes"] / 100e9)
            self.assertAlmostEqual(parts["weights"],
                                   runs[0]["engine_steps"] * long["weight_bytes_per_step"] / 100e9)
            compute = parts["linear layers"] + parts["prefill attention"]
            memory = parts["decode attention"] + parts["weights"]
            self.assertAlmostEqual(b["serial_s"],
                                   max(parts["linear layers"], parts["weights"]) +
                                   parts["prefill attention"] + parts["decode attention"])
            self.assertAlmostEqual(b["bound_s"], max(compute, memory))
            # `llm42 bench work` counts the same work without running anything (CPU KV: fp32).
            wj = os.path.join(d, "work.json")
            p = subprocess.run([LLM42, "bench", "work", "--model", server_util.stories_model(),
                                "--workload", "fixed:24,12", "--num-prompts", "6",
                                "--element-bytes", "4", "--json", wj],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("linear layers", p.stdout)
            with open(wj) as f:
                counted = json.load(f)
            self.assertEqual(counted["prompt_tokens"], runs[0]["prompt_tokens"])
            self.assertEqual(counted["output_tokens"], runs[0]["output_tokens"])
            for key in ("linear_flop", "prefill_attention_flop", "decode_attention_flop",
                        "decode_kv_bytes", "tokens_run", "decode_steps"):
                self.assertAlmostEqual(counted["work"][key], long[key], msg=key)
            for bad, flag in ((["--element-bytes", "3"], "--element-bytes 3"),
                              (["--workload", "nope"], "--workload 'nope'"),
                              (["--num-prompts", "0"], "--num-prompts 0")):
                p = subprocess.run([LLM42, "bench", "work", "--model", server_util.stories_model(),
                                    *bad], capture_output=True, text=True, timeout=60)
                self.assertNotEqual(p.returncode, 0, bad)
                self.assertIn(flag, p.stderr)
            del runs[0]["work"]
            old = os.path.join(d, "old.json")
            with open(old, "w") as f:
                json.dump({"runs": runs}, f)
            p = subprocess.run([sys.executable, script, old, roof],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("no \"work\"", p.stderr)
            # The work of another workload is refused; the same workload's is taken.
            p = subprocess.run([sys.executable, script, old, roof, "--work", wj],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            runs[0]["prompt_tokens"] += 1
            with open(old, "w") as f:
                json.dump({"runs": runs}, f)
            p = subprocess.run([sys.executable, script, old, roof, "--work", wj],
                               capture_output=True, text=True, timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("not the same workload", p.stderr)

    def test_bench_reports_preemptions(self):
        # A KV pool too small for the running sequences' outputs (no output reserve at
        # admission) preempts them: the table's last column and the JSON count the
        # preemptions, and the engine warns, naming the flag that sizes this pool.
        with tempfile.TemporaryDirectory() as d:
            p, _, (run,) = self.bench_runs(d, "--workload", "fixed:20,40", "--num-prompts", "8",
                                           "--modes", "off", "--num-blocks", "8",
                                           "--block-size", "16", "--admission-reserve", "0")
            preemptions = run["preemptions"]
            self.assertGreater(preemptions, 0)
            self.assertEqual(run["kv_cache_tokens"], 8 * 16)
            self.assertEqual(run["admission_reserve"], 0)
            header, row = [line.split() for line in p.stdout.splitlines()
                           if line.startswith(("mode ", "off "))]
            self.assertEqual(header[-1], "preempt")
            self.assertEqual(int(row[-1]), preemptions)
            self.assertIn("KV cache full", p.stderr)
            self.assertIn("A larger pool (--num-blocks)", p.stderr)  # the flag this run set


if __name__ == "__main__":
    server_util.run_tests()
