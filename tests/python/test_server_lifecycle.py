"""Lifecycle: a client that disconnects mid-stream has its engine request aborted (running and
KV blocks back to 0), a tiny admission queue answers 429, and SIGTERM drains: new connections
are refused, streams in flight finish (or, past the drain timeout, end with an error event and
[DONE]), and the process exits 0.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

C = "/v1/completions"


def stream_request(body):
    data = json.dumps({**body, "stream": True}).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(data)) + data


def open_stream(port, body):
    """A socket with a streaming request sent and its first event received."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(stream_request(body))
    got = b""
    while b"data: {" not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"stream closed early: {got!r}")
        got += chunk
    return s, got


def read_all(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def engine_idle(m):
    return (m["llm42_num_requests_running"] == 0 and m["llm42_num_requests_waiting"] == 0 and
            m["llm42_kv_cache_blocks_used"] == 0)


class DisconnectTest(unittest.TestCase):
    def test_disconnect_aborts_engine_request(self):
        # Long generations, so the requests are surely still in the engine when their clients
        # leave.
        with server_util.Server() as srv:
            long = {"prompt": "Once upon a time", "max_tokens": 480, "ignore_eos": True}
            streams = [open_stream(srv.port, long)[0] for _ in range(3)]
            m = srv.metrics()
            self.assertGreater(m["llm42_num_requests_running"] + m["llm42_num_requests_waiting"],
                               0)
            self.assertGreater(m["llm42_kv_cache_blocks_used"], 0)
            for s in streams:
                s.close()
            m = srv.wait_for(engine_idle, timeout=5, what="running and KV blocks back to 0")
            self.assertGreaterEqual(m["llm42_engine_requests_aborted_total"], 1)

            # A non-streaming client that gives up is aborted the same way.
            s = socket.create_connection(("127.0.0.1", srv.port))
            body = json.dumps(long).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body)
            srv.wait_for(lambda m: m["llm42_num_requests_running"] > 0, what="it to run")
            s.close()
            srv.wait_for(engine_idle, timeout=5, what="the non-streaming request to be aborted")
            # The server is still fine.
            status, r = srv.post_json(C, {"prompt": "Hi", "max_tokens": 3})
            self.assertEqual(status, 200)


class OverloadTest(unittest.TestCase):
    def test_tiny_queue_answers_429(self):
        with server_util.Server("--max-queue", "2", "--max-num-seqs", "1") as srv:
            results = []
            lock = threading.Lock()

            def one():
                status, headers, body = srv.request(
                    "POST", C, {"prompt": "Once", "max_tokens": 200, "ignore_eos": True})
                with lock:
                    results.append((status, headers, body))

            threads = [threading.Thread(target=one) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = sorted(r[0] for r in results)
            self.assertIn(429, statuses)
            self.assertIn(200, statuses)
            self.assertEqual(set(statuses), {200, 429})
            for status, headers, body in results:
                if status == 429:
                    err = json.loads(body)["error"]
                    self.assertEqual(err["type"], "rate_limit_error")
                    self.assertEqual(err["code"], "queue_full")
                    self.assertEqual(headers["retry-after"], "1")
                else:
                    self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 200)
            m = srv.metrics()
            self.assertEqual(m['llm42_requests_rejected_total{reason="queue_full"}'],
                             statuses.count(429))


class ShutdownTest(unittest.TestCase):
    def test_sigterm_drains_streams_and_exits_0(self):
        srv = server_util.Server("--drain-timeout", "60").start()
        try:
            body = {"prompt": "Once upon a time", "max_tokens": 150, "ignore_eos": True}
            streams = [open_stream(srv.port, body) for _ in range(4)]
            srv.proc.send_signal(signal.SIGTERM)
            # New connections are refused once the listening socket is closed.
            deadline = time.time() + 5
            refused = False
            while time.time() < deadline and not refused:
                try:
                    socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
                    time.sleep(0.02)
                except (ConnectionRefusedError, ConnectionResetError):
                    # Reset: the connect reached the backlog as the listening socket closed, and
                    # the kernel dropped it unaccepted (seen once in a fresh clone's test run).
                    refused = True
            self.assertTrue(refused, "new connections still accepted after SIGTERM")
            for s, first in streams:
                raw = first + read_all(s)
                s.close()
                self.assertTrue(raw.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), raw[-80:])
                self.assertIn(b'"finish_reason":"length"', raw)
            self.assertEqual(srv.proc.wait(30), 0)
        finally:
            srv.stop(signal.SIGKILL)
        self.assertIn("shutting down", srv.output())

    def test_drain_timeout_aborts_cleanly(self):
        srv = server_util.Server("--drain-timeout", "0.2", "--max-num-seqs", "1").start()
        try:
            body = {"prompt": "Once upon a time", "max_tokens": 480, "ignore_eos": True}
            streams = [open_stream(srv.port, body)]
            # More wait behind the first (one running sequence at a time): eight, so that the
            # queue takes longer than the 0.2 s drain even where a 480-token stories260K request
            # takes only ~70 ms (with two, all three sometimes finished inside the drain).
            waiting = []
            for _ in range(8):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
                s.sendall(stream_request(body))
                waiting.append((s, b""))
            srv.wait_for(lambda m: m["llm42_num_requests_waiting"] >= 1, what="a queue")
            srv.proc.send_signal(signal.SIGINT)
            ended = 0
            for s, first in streams + waiting:
                raw = first + read_all(s)
                s.close()
                self.assertTrue(raw.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), raw[-120:])
                if b'"error"' in raw:
                    ended += 1
                    self.assertIn(b"shutting down", raw)
            self.assertGreaterEqual(ended, 1)
            self.assertEqual(srv.proc.wait(30), 0)
        finally:
            srv.stop(signal.SIGKILL)


if __name__ == "__main__":
    server_util.run_tests()
