"""Server-sent events checked byte for byte on a raw socket: chunked framing with one event per
chunk, `data: {json}\\n\\n` events on one line each, the chat role chunk first, finish_reason on
the last content chunk, the usage chunk with empty choices, `data: [DONE]`, the terminating
chunk, keep-alive after a stream, and close-delimited streams for HTTP/1.0 clients.
"""

import json
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()


def post(path, body, version="1.1", extra=""):
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/{version}\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{extra}\r\n").encode() + data


class SseFramingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--chat-template", "chatml").start()

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def stream_events(self, raw):
        status, headers, body = server_util.split_response(raw)
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(headers["content-type"], "text/event-stream; charset=utf-8")
        self.assertEqual(headers["transfer-encoding"], "chunked")
        self.assertNotIn("content-length", headers)
        self.assertEqual(headers["cache-control"], "no-cache")
        self.assertTrue(body.endswith(b"\r\n0\r\n\r\n"), body[-40:])
        payload, pieces = server_util.dechunk(body)
        for p in pieces:
            # One complete event per chunk: a client that reads chunk by chunk never sees half.
            self.assertTrue(p.startswith(b"data: "), p)
            self.assertTrue(p.endswith(b"\n\n"), p)
        events = payload.split(b"\n\n")
        self.assertEqual(events[-1], b"")
        events = events[:-1]
        for e in events:
            self.assertTrue(e.startswith(b"data: "), e)
            self.assertNotIn(b"\n", e)
            self.assertNotIn(b"\r", e)
        self.assertEqual(events[-1], b"data: [DONE]")
        return [json.loads(e[6:]) for e in events[:-1]]

    def test_completion_stream_bytes(self):
        body = {"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        raw = server_util.raw_request(self.server.port,
                                      post("/v1/completions", body, extra="Connection: close\r\n"))
        events = self.stream_events(raw)
        content = events[:-1]
        usage = events[-1]
        self.assertEqual(usage["choices"], [])
        self.assertEqual(usage["usage"]["completion_tokens"], 6)
        self.assertEqual(usage["object"], "text_completion")
        for e in content:
            self.assertEqual(e["object"], "text_completion")
            self.assertIn("usage", e)
            self.assertIsNone(e["usage"])
            self.assertEqual(e["id"], usage["id"])
            self.assertEqual(len(e["choices"]), 1)
        self.assertTrue(all(e["choices"][0]["finish_reason"] is None for e in content[:-1]))
        self.assertEqual(content[-1]["choices"][0]["finish_reason"], "length")
        _, full = self.server.post_json("/v1/completions",
                                        {k: v for k, v in body.items()
                                         if k not in ("stream", "stream_options")})
        self.assertEqual("".join(e["choices"][0]["text"] for e in content),
                         full["choices"][0]["text"])

    def test_chat_stream_bytes(self):
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5,
                "temperature": 0, "stream": True}
        raw = server_util.raw_request(
            self.server.port, post("/v1/chat/completions", body, extra="Connection: close\r\n"))
        events = self.stream_events(raw)
        self.assertEqual(events[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertIsNone(events[0]["choices"][0]["finish_reason"])
        self.assertEqual(events[0]["object"], "chat.completion.chunk")
        for e in events[1:]:
            self.assertNotIn("role", e["choices"][0]["delta"])
            self.assertNotIn("usage", e)  # only with stream_options.include_usage
        self.assertIsNotNone(events[-1]["choices"][0]["finish_reason"])
        self.assertTrue(all(e["choices"][0]["finish_reason"] is None for e in events[:-1]))

    def test_keep_alive_after_stream(self):
        body = {"prompt": "Hi", "max_tokens": 3, "stream": True}
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as s:
            for _ in range(2):
                s.sendall(post("/v1/completions", body))
                got = b""
                while not got.endswith(b"\r\n0\r\n\r\n"):
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, "connection closed after a stream")
                    got += chunk
                self.assertIn(b"data: [DONE]\n\n", got)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            rest = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            self.assertTrue(rest.startswith(b"HTTP/1.1 200"), rest)

    def test_http10_stream_is_close_delimited(self):
        body = {"prompt": "Hi", "max_tokens": 3, "stream": True}
        raw = server_util.raw_request(self.server.port, post("/v1/completions", body, "1.0"))
        status, headers, payload = server_util.split_response(raw)
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertNotIn("transfer-encoding", headers)
        self.assertEqual(headers.get("connection"), "close")
        self.assertTrue(payload.startswith(b"data: {"))
        self.assertTrue(payload.endswith(b"data: [DONE]\n\n"))

    def test_error_inside_a_stream_request_is_plain_json(self):
        # Validation happens before the stream starts: a 400 with a JSON body, not an event.
        raw = server_util.raw_request(
            self.server.port,
            post("/v1/completions", {"prompt": "x", "stream": True, "n": 99},
                 extra="Connection: close\r\n"))
        status, headers, payload = server_util.split_response(raw)
        self.assertTrue(status.startswith("HTTP/1.1 400"))
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(payload)["error"]["param"], "n")


if __name__ == "__main__":
    server_util.run_tests()
