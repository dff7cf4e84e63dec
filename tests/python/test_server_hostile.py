"""Hostile clients against a real server (issue 21): slowly trickling heads and bodies, clients
that never read their answers, too many connections, early authentication, half-closes, short
bodies, HEAD, percent-encoded paths, SIGHUP/SIGQUIT and the access log. The deadlines are made
small with their flags so that the whole file runs in seconds.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

C = "/v1/completions"
MODEL = "meta-llama/Llama-3.2-1B-Instruct"


def post_bytes(body, extra=b""):
    data = json.dumps(body).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(data)) + data


def read_all(s):
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return out
        if not chunk:
            return out
        out += chunk


def trickle(s, data, gap, results, key):
    """Sends `data` on socket `s` a byte per `gap` seconds until the server answers or closes;
    stores what it received under results[key]."""
    s.setblocking(False)
    got = b""
    try:
        for b in data:
            try:
                s.send(bytes([b]))
            except OSError:
                break
            time.sleep(gap)
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            except BlockingIOError:
                pass
            except OSError:
                break
        s.setblocking(True)
        s.settimeout(5)
        got += read_all(s)
    finally:
        s.close()
        results[key] = got


def access_lines(srv):
    """The access log lines of a server run with --log-format json, as dicts."""
    lines = []
    for line in srv.output().splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("event") == "access":
            lines.append(j)
    return lines


class HostileRunTest(unittest.TestCase):
    """One server with small deadlines and a JSON log, shared by the tests below."""

    @classmethod
    def setUpClass(cls):
        server_util.raise_fd_limit()
        cls.srv = server_util.Server(
            "--timeout-request-head", "1", "--timeout-request-body", "1",
            "--timeout-write", "0.5", "--max-connections", "300", "--log-format", "json",
            "--served-model-name", MODEL).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        if code != 0:
            sys.stderr.write(cls.srv.output())
        os.unlink(cls.srv.log.name)

    def test_hostile_run_leaves_normal_requests_answered_within_a_second(self):
        srv = self.srv
        results = {}
        threads = []
        # 50 trickling heads (a byte every 0.1 s: never idle, never complete), 10 slow bodies.
        head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n"
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            threads.append(threading.Thread(target=trickle,
                                            args=(s, head, 0.1, results, f"head{i}")))
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 4}).encode()
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % (len(body) + 100))
            threads.append(threading.Thread(target=trickle, args=(
                s, body + b" " * 100, 0.1, results, f"body{i}")))
        # Clients that ask for a lot and never read it (n and logprobs blow a short request up).
        hogs = []
        for _ in range(3):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(post_bytes({"prompt": "Once upon a time", "max_tokens": 400, "n": 16,
                                  "logprobs": 20, "ignore_eos": True, "stream": True}))
            hogs.append(s)
        # And clients that send what must be refused: a max_tokens that would overflow a sum,
        # prompts of megabytes, a prompt past the context in tokens, over and over.
        refusals = []
        t_end = time.time() + 3.0

        def flood():
            bad = [{"prompt": "Hi", "max_tokens": 2**31 - 1},
                   {"prompt": "Once upon a time " * 250_000, "max_tokens": 4},
                   {"prompt": "Hello world " * 300, "max_tokens": 4}]
            while time.time() < t_end:
                for req in bad:
                    status, resp = srv.post_json(C, req)
                    refusals.append((status, resp.get("error", {}).get("code")))

        threads.append(threading.Thread(target=flood))
        for t in threads:
            t.start()
        latencies = []
        while time.time() < t_end:
            t0 = time.time()
            status, _ = srv.post_json(C, {"prompt": "Hi", "max_tokens": 4})
            latencies.append(time.time() - t0)
            self.assertEqual(status, 200)
            time.sleep(0.05)
        for t in threads:
            t.join(15)
        self.assertLess(max(latencies), 1.0, latencies)
        self.assertGreater(len(latencies), 10)
        self.assertGreater(len(refusals), 3)
        self.assertEqual(set(refusals), {(400, "context_length_exceeded")}, refusals[:6])
        for i in range(50):
            self.assertTrue(results[f"head{i}"].startswith(b"HTTP/1.1 408"), results[f"head{i}"])
            self.assertIn(b"--timeout-request-head", results[f"head{i}"])
        for i in range(10):
            self.assertTrue(results[f"body{i}"].startswith(b"HTTP/1.1 408"), results[f"body{i}"])
        # The clients that do not read were dropped (their ~6 MB answers exceed every socket
        # buffer), and nothing of theirs is left in the engine.
        srv.wait_for(lambda m: m["llm42_num_requests_running"] == 0 and
                     m["llm42_num_requests_waiting"] == 0 and
                     m["llm42_kv_cache_blocks_used"] == 0 and
                     m["llm42_http_connections"] <= 1,
                     timeout=10, what="the non-reading clients to be dropped")
        self.assertGreaterEqual(srv.output().count("(--timeout-write)"), len(hogs))
        for s in hogs:
            s.close()

    def test_half_close_gets_its_answer(self):
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
        s.sendall(post_bytes({"prompt": "Once upon a time", "max_tokens": 8}))
        s.shutdown(socket.SHUT_WR)
        raw = read_all(s)
        s.close()
        line, headers, body = server_util.split_response(raw)
        self.assertEqual(line, "HTTP/1.1 200 OK", raw)
        self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 8)

    def test_short_body_is_answered(self):
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                b'{"prompt": ')
        # The client waits: the body deadline answers 408.
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
        s.sendall(head)
        t0 = time.time()
        raw = read_all(s)
        s.close()
        self.assertTrue(raw.startswith(b"HTTP/1.1 408"), raw)
        self.assertLess(time.time() - t0, 2.0)
        # The client half-closes: 400, naming what was missing.
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
        s.sendall(head)
        s.shutdown(socket.SHUT_WR)
        raw = read_all(s)
        s.close()
        self.assertTrue(raw.startswith(b"HTTP/1.1 400"), raw)
        self.assertIn(b"after 11 of the 100 body bytes", raw)

    def test_head_and_percent_encoded_paths(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
        try:
            conn.request("HEAD", "/v1/models")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertGreater(int(r.getheader("Content-Length")), 0)
            self.assertEqual(r.read(), b"")
            # The same connection is still in step.
            conn.request("GET", "/v1/models/meta-llama%2FLlama-3.2-1B-Instruct")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read())["id"], MODEL)
            conn.request("HEAD", "/v1/completions")
            r = conn.getresponse()
            self.assertEqual(r.status, 405)
            self.assertEqual(r.read(), b"")
            conn.request("GET", "/health")
            self.assertEqual(conn.getresponse().read(), b'{"status":"ok"}')
        finally:
            conn.close()
        status, _, body = self.srv.request("GET", "/v1/models/bad%zzescape")
        self.assertEqual(status, 400)
        self.assertIn(b"percent-encoding", body)

    def test_access_log(self):
        status, _ = self.srv.post_json(C, {"prompt": "Once upon a time", "max_tokens": 5,
                                           "deterministic": True})
        self.assertEqual(status, 200)
        self.srv.request("GET", "/v1/models?x=1")
        deadline = time.time() + 5
        while time.time() < deadline:
            lines = access_lines(self.srv)
            posts = [j for j in lines if j["method"] == "POST" and j["completion_tokens"] == 5]
            gets = [j for j in lines if j["path"] == "/v1/models"]
            if posts and gets:
                break
            time.sleep(0.05)
        self.assertTrue(posts and gets, self.srv.output()[-2000:])
        j = posts[-1]
        self.assertEqual(j["path"], C)
        self.assertEqual(j["status"], 200)
        self.assertGreater(j["prompt_tokens"], 0)
        self.assertIs(j["deterministic"], True)
        self.assertIn("rollbacks", j)
        self.assertGreaterEqual(j["duration_ms"], 0)
        self.assertRegex(j["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(gets[-1]["status"], 200)
        # Every other line is JSON too.
        for line in self.srv.output().splitlines():
            if line.startswith("{"):
                self.assertIn("level", json.loads(line))


class LimitsTest(unittest.TestCase):
    def test_connections_over_the_limit_get_503(self):
        with server_util.Server("--max-connections", "4", "--log-format", "text") as srv:
            # An idle keep-alive connection is closed to make room for a new one...
            idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            idle.request("GET", "/health")
            self.assertEqual(idle.getresponse().read(), b'{"status":"ok"}')
            # ... connections mid-request are not.
            held = []
            for _ in range(4):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.sendall(b"GET /health HTTP/1.1\r\n")
                held.append(s)
                time.sleep(0.05)  # read by the server: no longer idle
            time.sleep(0.2)
            raw = server_util.raw_request(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(raw.startswith(b"HTTP/1.1 503"), raw)
            self.assertIn(b"--max-connections 4", raw)
            held.pop().close()
            deadline = time.time() + 5
            while True:
                try:
                    if srv.request("GET", "/health")[0] == 200:
                        break
                except OSError:
                    pass
                self.assertLess(time.time(), deadline)
                time.sleep(0.05)
            for s in held:
                s.close()
            idle.close()
            # The text access log.
            self.assertRegex(srv.output(),
                             r"\[llm42 \d{4}-\d\d-\d\dT[\d:.]+Z info\] access method=GET "
                             r"path=/health status=200 ")

    def test_a_client_that_does_not_read_has_its_request_aborted(self):
        # One sequence at a time: the 64 choices of 500 tokens take seconds (2 s here), and the
        # answer outgrows the socket buffers within the first choice, so the write deadline
        # drops the client with most choices still to run.
        with server_util.Server("--timeout-write", "0.1", "--max-num-seqs", "1") as srv:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(post_bytes({"prompt": ["Once upon a time"] * 4, "max_tokens": 500,
                                  "n": 16, "logprobs": 20, "ignore_eos": True,
                                  "stream": True}))
            m = srv.wait_for(lambda m: m["llm42_engine_requests_aborted_total"] > 0 and
                             m["llm42_num_requests_running"] == 0 and
                             m["llm42_num_requests_waiting"] == 0 and
                             m["llm42_kv_cache_blocks_used"] == 0,
                             timeout=10, what="the request to be aborted")
            self.assertLessEqual(m["llm42_engine_requests_aborted_total"], 64)
            self.assertEqual(srv.output().count("(--timeout-write)"), 1)
            s.close()
            self.assertEqual(srv.post_json(C, {"prompt": "Hi", "max_tokens": 2})[0], 200)

    def test_a_budget_smaller_than_one_request_is_refused_at_start(self):
        r = subprocess.run([server_util.llm42_bin(), "serve", "--model",
                            server_util.stories_model(), "--max-body-bytes", "1000000",
                            "--max-buffered-request-bytes", "1000"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--max-buffered-request-bytes 1000 is less than one largest request",
                      r.stderr)


class ApiKeyTest(unittest.TestCase):
    def check_key(self, srv, key):
        status, headers, _ = srv.request("GET", "/v1/models")
        self.assertEqual(status, 401)
        self.assertEqual(headers["www-authenticate"], "Bearer")
        status, headers, _ = srv.request("GET", "/v1/models",
                                         headers={"Authorization": "Bearer wrong"})
        self.assertEqual(status, 401)
        self.assertTrue(headers["www-authenticate"].startswith("Bearer"))
        status, _, _ = srv.request("GET", "/v1/models",
                                   headers={"Authorization": f"Bearer {key}"})
        self.assertEqual(status, 200)
        # Two Authorization fields, the first one right: refused, naming the field.
        raw = server_util.raw_request(
            srv.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\nAuthorization: Bearer x\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400"), raw)
        self.assertIn(b"Authorization", raw)
        # The key is checked from the head: the 401 comes without the body being sent.
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        raw = read_all(s)
        s.close()
        self.assertTrue(raw.startswith(b"HTTP/1.1 401"), raw)

    def test_key_from_the_environment(self):
        with server_util.Server(env=dict(os.environ, LLM42_API_KEY="env-secret")) as srv:
            self.check_key(srv, "env-secret")

    def test_key_from_a_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".key", delete=False) as f:
            f.write("file-secret\n")
        try:
            with server_util.Server("--api-key-file", f.name) as srv:
                self.check_key(srv, "file-secret")
            missing = subprocess.run(
                [server_util.llm42_bin(), "serve", "--model", server_util.stories_model(),
                 "--api-key-file", f.name + ".missing"], capture_output=True, text=True,
                timeout=30)
            self.assertEqual(missing.returncode, 1)
            self.assertIn("--api-key-file " + f.name + ".missing", missing.stderr)
        finally:
            os.unlink(f.name)


class SignalTest(unittest.TestCase):
    def test_sighup_is_ignored_and_sigquit_drains(self):
        srv = server_util.Server("--drain-timeout", "60").start()
        try:
            srv.proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            self.assertIsNone(srv.proc.poll())
            self.assertEqual(srv.request("GET", "/health")[0], 200)
            self.assertIn("SIGHUP ignored", srv.output())
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.sendall(post_bytes({"prompt": "Once upon a time", "max_tokens": 300,
                                  "ignore_eos": True, "stream": True}))
            first = s.recv(65536)
            srv.proc.send_signal(signal.SIGQUIT)
            raw = first + read_all(s)
            s.close()
            self.assertTrue(raw.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), raw[-80:])
            self.assertIn(b'"finish_reason":"length"', raw)
            self.assertEqual(srv.proc.wait(30), 0)
            self.assertIn("shutting down", srv.output())
        finally:
            srv.stop(signal.SIGKILL)
            os.unlink(srv.log.name)


if __name__ == "__main__":
    server_util.run_tests()
