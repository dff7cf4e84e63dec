"""`llm42 check` against a real server on stories260K: every deterministic scenario passes and
the table and the JSON report say so; an unreachable server is an error, not a pass.
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


if __name__ == "__main__":
    server_util.run_tests()
