"""Engine guards and operability against a real server: /metrics carries vLLM's names with a
model_name label (queue, prefill and decode times, prompt and generation lengths, aborted
requests) and the process_* metrics; the periodic engine stats line with a readable timestamp;
the watchdog fails a stalled request with an error to its client; flags under which a
verification window could never run are refused at start-up; `serve --help` is grouped.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

C = "/v1/completions"
NAME = "org/stories-260K"
LABEL = 'model_name="org/stories-260K"'


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--served-model-name", NAME, "--log-stats-interval", "0.2")
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def test_vllm_names_and_histograms(self):
        m0 = self.server.metrics()
        status, body = self.server.post_json(C, {"model": NAME, "prompt": "Once upon a time",
                                                 "max_tokens": 8, "ignore_eos": True})
        self.assertEqual(status, 200, body)
        m = self.server.metrics()

        def delta(key):
            self.assertIn(key, m)
            return m[key] - m0.get(key, 0)

        self.assertEqual(delta(f"vllm:request_queue_time_seconds_count{{{LABEL}}}"), 1)
        self.assertEqual(delta(f"vllm:request_prefill_time_seconds_count{{{LABEL}}}"), 1)
        self.assertEqual(delta(f"vllm:request_decode_time_seconds_count{{{LABEL}}}"), 1)
        self.assertEqual(delta(f"vllm:request_inference_time_seconds_count{{{LABEL}}}"), 1)
        self.assertEqual(delta(f"vllm:request_generation_tokens_sum{{{LABEL}}}"), 8)
        self.assertEqual(delta(f"vllm:request_prompt_tokens_sum{{{LABEL}}}"),
                         body["usage"]["prompt_tokens"])
        self.assertEqual(
            delta(f'vllm:request_success_total{{{LABEL},finished_reason="length"}}'), 1)
        # The engine's counters (published after the step that answered) as the llm42_ ones.
        self.assertGreaterEqual(m[f"vllm:generation_tokens_total{{{LABEL}}}"], 8)
        self.assertEqual(m[f"vllm:generation_tokens_total{{{LABEL}}}"],
                         m["llm42_generation_tokens_total"])
        self.assertIn(f"vllm:kv_cache_usage_perc{{{LABEL}}}", m)
        self.assertGreaterEqual(m[f"vllm:time_to_first_token_seconds_count{{{LABEL}}}"], 1)
        # Queue time is a part of the end-to-end latency.
        self.assertLessEqual(m[f"vllm:request_queue_time_seconds_sum{{{LABEL}}}"],
                             m[f"vllm:e2e_request_latency_seconds_sum{{{LABEL}}}"])

    def test_aborted_requests_are_counted(self):
        key = f'vllm:request_success_total{{{LABEL},finished_reason="abort"}}'
        before = self.server.metrics()[key]
        body = json.dumps({"model": NAME, "prompt": "Once", "max_tokens": 400, "stream": True,
                           "ignore_eos": True}).encode()
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body)
            got = b""
            while b"data: {" not in got:
                got += s.recv(65536)
        # The client left mid-stream: its engine request is aborted and counted.
        self.server.wait_for(lambda m: m[key] >= before + 1, what="the abort counted")

    def test_process_metrics(self):
        m = self.server.metrics()
        self.assertGreater(m["process_resident_memory_bytes"], 1 << 20)
        self.assertGreaterEqual(m["process_virtual_memory_bytes"],
                                m["process_resident_memory_bytes"])
        self.assertGreater(m["process_open_fds"], 3)
        self.assertGreater(m["process_max_fds"], m["process_open_fds"])
        self.assertGreaterEqual(m["process_cpu_seconds_total"], 0)
        self.assertLess(abs(m["process_start_time_seconds"] - time.time()), 600)

    def test_stats_line_in_the_log(self):
        self.server.post_json(C, {"model": NAME, "prompt": "Once", "max_tokens": 4})
        pattern = re.compile(r"\[llm42 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info\] engine: "
                             r"prompt [\d.]+ tok/s, generation [\d.]+ tok/s, running \d+, "
                             r"waiting \d+, KV cache [\d.]+% used")
        deadline = time.time() + 10
        while not pattern.search(self.server.output()) and time.time() < deadline:
            time.sleep(0.1)
        self.assertRegex(self.server.output(), pattern)


class Guards(unittest.TestCase):
    def test_budget_below_the_window_is_refused_at_start(self):
        proc = subprocess.run([server_util.llm42_bin(), "serve", "--model",
                               server_util.stories_model(), "--port", "0", "--window", "64",
                               "--max-num-batched-tokens", "40", "--max-num-seqs", "3"],
                              capture_output=True, text=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("--window 64", proc.stderr)
        self.assertIn("--max-num-batched-tokens 40", proc.stderr)

    def test_watchdog_answers_a_stalled_request_with_an_error(self):
        # A budget of one window and a watchdog of one step: while one of the two choices'
        # windows is verified, the other gets no token that step and is failed (a contrived
        # limit, to make a stall happen). The client gets an error, not a hang.
        with server_util.Server("--window", "8", "--group", "2", "--max-num-batched-tokens", "8",
                                "--max-num-seqs", "2", "--max-stalled-steps", "1") as srv:
            status, body = srv.post_json(C, {"prompt": ["Once", "The dog"], "max_tokens": 100,
                                             "ignore_eos": True, "deterministic": True})
            self.assertEqual(status, 500, body)
            self.assertIn("no progress", body["error"]["message"])
            self.assertIn("--max-stalled-steps", body["error"]["message"])
            srv.wait_for(lambda m: m['llm42_engine_requests_failed_total{reason="stalled"}'] >= 1,
                         what="the stall counted")
            # The server still answers.
            status, _ = srv.post_json(C, {"prompt": "Once", "max_tokens": 4})
            self.assertEqual(status, 200)


class Help(unittest.TestCase):
    def test_serve_help_is_grouped_and_clean(self):
        out = subprocess.run([server_util.llm42_bin(), "serve", "--help"], capture_output=True,
                             text=True, timeout=30).stdout
        for group in ("Model", "Engine", "Determinism", "CUDA", "HTTP",
                      "Fault injection and self-checks"):
            self.assertRegex(out, rf"(?m)^{re.escape(group)}:$", f"no {group} section")
        self.assertNotRegex(out, r"(?m)^Other:$", "a flag without a section")
        # Parser artefacts: CLI11's type names, flag defaults and validator names.
        self.assertNotRegex(out, r"\b(TEXT|INT|UINT|FLOAT|NUMBER|NONNEGATIVE|POSITIVE)\b")
        for artefact in ("{false}", "{true}", "Excludes", "Needs", " in ["):
            self.assertNotIn(artefact, out)
        # Every flag has a description on its line.
        flags = [line for line in out.splitlines() if line.lstrip().startswith("-")]
        self.assertGreater(len(flags), 40)
        for line in flags:
            self.assertRegex(line, r"^\s+(-\w, )?--[\w-]+( [A-Z_]+)?(\s+\[[^\]]*\])?\s{2,}\S",
                             f"no description: {line!r}")


if __name__ == "__main__":
    unittest.main()
