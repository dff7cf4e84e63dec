"""The bad-input table: every row gets the right HTTP status, error.type and error.param in the
OpenAI error shape, and none of them disturbs a request being served at the same time.
"""

import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

MODEL = "stories260K"
USER = [{"role": "user", "content": "Hi"}]
C, CHAT = "/v1/completions", "/v1/chat/completions"
BAD = "invalid_request_error"

# (name, path, body: dict, or bytes sent as is, status, error type, param, code)
TABLE = [
    ("invalid JSON", C, b'{"prompt": "x",', 400, BAD, None, None),
    ("trailing garbage", C, b'{"prompt": "x"} {}', 400, BAD, None, None),
    ("invalid UTF-8", C, b'{"prompt": "\xff\xfe"}', 400, BAD, None, None),
    ("body not an object", C, b"[1, 2]", 400, BAD, None, None),
    ("empty body", C, b"", 400, BAD, None, None),
    ("nested too deep", C, b"[" * 200 + b"]" * 200, 400, BAD, None, None),
    ("missing prompt", C, {"max_tokens": 3}, 400, BAD, "prompt", None),
    ("prompt of the wrong type", C, {"prompt": 5}, 400, BAD, "prompt", None),
    ("prompt list mixing types", C, {"prompt": ["a", 1]}, 400, BAD, "prompt[1]", None),
    ("token id outside the vocabulary", C, {"prompt": [1, 99999]}, 400, BAD, "prompt", None),
    ("negative token id", C, {"prompt": [1, -5]}, 400, BAD, "prompt[1]", None),
    ("prompt longer than the context", C, {"prompt": [5] * 600, "max_tokens": 4}, 400, BAD,
     "prompt", "context_length_exceeded"),
    ("prompt + max_tokens beyond the context", C, {"prompt": "Hi", "max_tokens": 100000}, 400,
     BAD, "prompt", "context_length_exceeded"),
    ("text prompt within the byte bound, past the context in tokens", C,
     {"prompt": "Hello world " * 300, "max_tokens": 4}, 400, BAD, "prompt",
     "context_length_exceeded"),
    ("temperature of the wrong type", C, {"prompt": "x", "temperature": "hot"}, 400, BAD,
     "temperature", None),
    ("temperature out of range", C, {"prompt": "x", "temperature": 3}, 400, BAD, "temperature",
     None),
    ("top_p out of range", C, {"prompt": "x", "top_p": 0}, 400, BAD, "top_p", None),
    ("top_k out of range", C, {"prompt": "x", "top_k": -5}, 400, BAD, "top_k", None),
    ("min_p out of range", C, {"prompt": "x", "min_p": 2}, 400, BAD, "min_p", None),
    ("presence_penalty out of range", C, {"prompt": "x", "presence_penalty": 5}, 400, BAD,
     "presence_penalty", None),
    ("frequency_penalty out of range", C, {"prompt": "x", "frequency_penalty": -5}, 400, BAD,
     "frequency_penalty", None),
    ("repetition_penalty out of range", C, {"prompt": "x", "repetition_penalty": 0}, 400, BAD,
     "repetition_penalty", None),
    ("max_tokens zero", C, {"prompt": "x", "max_tokens": 0}, 400, BAD, "max_tokens", None),
    ("max_tokens of the wrong type", C, {"prompt": "x", "max_tokens": "10"}, 400, BAD,
     "max_tokens", None),
    ("n zero", C, {"prompt": "x", "n": 0}, 400, BAD, "n", None),
    ("n too large", C, {"prompt": "x", "n": 17}, 400, BAD, "n", None),
    ("seed of the wrong type", C, {"prompt": "x", "seed": "x"}, 400, BAD, "seed", None),
    ("stop of the wrong type", C, {"prompt": "x", "stop": 5}, 400, BAD, "stop", None),
    ("too many stop strings", C, {"prompt": "x", "stop": [str(i) for i in range(17)]}, 400, BAD,
     "stop", None),
    ("logprobs too large", C, {"prompt": "x", "logprobs": 50}, 400, BAD, "logprobs", None),
    ("echo in chat", CHAT, {"messages": [{"role": "user", "content": "x"}], "echo": True}, 400,
     BAD, "echo", None),
    ("prompt_logprobs too large", C, {"prompt": "x", "prompt_logprobs": 21}, 400, BAD,
     "prompt_logprobs", None),
    ("best_of", C, {"prompt": "x", "best_of": 3}, 400, BAD, "best_of", None),
    ("logit_bias", C, {"prompt": "x", "logit_bias": {"5": 10}}, 400, BAD, "logit_bias", None),
    ("stream_options without stream", C, {"prompt": "x", "stream_options": {}}, 400, BAD,
     "stream_options", None),
    ("deterministic of the wrong type", C, {"prompt": "x", "deterministic": "yes"}, 400, BAD,
     "deterministic", None),
    ("unknown model", C, {"prompt": "x", "model": "gpt-9"}, 404, BAD, "model",
     "model_not_found"),
    ("missing messages", CHAT, {"model": MODEL}, 400, BAD, "messages", None),
    ("empty messages", CHAT, {"messages": []}, 400, BAD, "messages", None),
    ("message without role", CHAT, {"messages": [{"content": "x"}]}, 400, BAD,
     "messages[0].role", None),
    ("message with an unknown role", CHAT, {"messages": [{"role": "god", "content": "x"}]}, 400,
     BAD, "messages[0].role", None),
    ("user message without content", CHAT, {"messages": [{"role": "user"}]}, 400, BAD,
     "messages[0].content", None),
    ("image content part", CHAT,
     {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, 400,
     BAD, "messages[0].content[0].type", None),
    ("top_logprobs without logprobs", CHAT, {"messages": USER, "top_logprobs": 2}, 400, BAD,
     "top_logprobs", None),
    ("chat logprobs of the wrong type", CHAT, {"messages": USER, "logprobs": 2}, 400, BAD,
     "logprobs", None),
    ("response_format json", CHAT,
     {"messages": USER, "response_format": {"type": "json_object"}}, 400, BAD,
     "response_format", None),
    ("chat prompt longer than the context", CHAT,
     {"messages": [{"role": "user", "content": "hello " * 600}]}, 400, BAD, "messages",
     "context_length_exceeded"),
    ("unknown model in chat", CHAT, {"messages": USER, "model": "x"}, 404, BAD, "model",
     "model_not_found"),
]


class ErrorTableTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--served-model-name", MODEL, "--chat-template", "chatml",
                                        "--max-body-bytes", "65536").start()

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def check_error(self, status, body, want_status, want_type, want_param, want_code=None,
                    name=""):
        self.assertEqual(status, want_status, f"{name}: {body}")
        err = json.loads(body)["error"]
        self.assertEqual(set(err), {"message", "type", "param", "code"}, name)
        self.assertTrue(err["message"], name)
        self.assertEqual(err["type"], want_type, name)
        self.assertEqual(err["param"], want_param, f"{name}: {err['message']}")
        self.assertEqual(err["code"], want_code, name)

    def test_table(self):
        # A stream in flight the whole time: bad requests must not disturb it.
        result = {}

        def long_stream():
            result["status"], _, result["body"] = self.server.request(
                "POST", C, {"prompt": "Once", "max_tokens": 200, "ignore_eos": True,
                            "stream": True})

        t = threading.Thread(target=long_stream)
        t.start()
        for name, path, body, status, typ, param, code in TABLE:
            with self.subTest(name):
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                s, _, data = self.server.request("POST", path, raw,
                                                 {"Content-Type": "application/json"})
                self.check_error(s, data, status, typ, param, code, name)
        t.join()
        self.assertEqual(result["status"], 200)
        self.assertTrue(result["body"].endswith(b"data: [DONE]\n\n"))
        self.assertEqual(result["body"].count(b'"finish_reason":"length"'), 1)
        # And the server still answers.
        s, r = self.server.post_json(C, {"prompt": "Hi", "max_tokens": 2})
        self.assertEqual(s, 200)
        self.assertEqual(r["usage"]["completion_tokens"], 2)

    def test_http_level_errors(self):
        s, h, body = self.server.request("GET", "/v1/nope")
        self.check_error(s, body, 404, BAD, None, name="unknown endpoint")
        s, h, body = self.server.request("GET", C)
        self.check_error(s, body, 405, BAD, None, name="GET completions")
        self.assertEqual(h["allow"], "POST")
        s, h, body = self.server.request("POST", "/v1/models", b"{}")
        self.check_error(s, body, 405, BAD, None, name="POST models")
        self.assertEqual(h["allow"], "GET, HEAD")  # HEAD wherever GET
        s, _, body = self.server.request("GET", "/v1/models/other")
        self.check_error(s, body, 404, BAD, "model", "model_not_found", "unknown model card")

        big = json.dumps({"prompt": "x" * 70000}).encode()
        raw = server_util.raw_request(
            self.server.port,
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big)
            + big)
        status, headers, body = server_util.split_response(raw)
        self.assertTrue(status.startswith("HTTP/1.1 413"), status)
        self.assertEqual(headers["connection"], "close")
        self.check_error(413, body, 413, BAD, None, name="too large")

        for te, want in ((b"chunked", "411"), (b"gzip, chunked", "501"), (b"gzip", "400")):
            raw = server_util.raw_request(
                self.server.port,
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
                b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            status, headers, body = server_util.split_response(raw)
            self.assertTrue(status.startswith("HTTP/1.1 " + want), (te, status))
            self.assertEqual(json.loads(body)["error"]["type"], BAD)

        raw = server_util.raw_request(self.server.port, b"NOT HTTP AT ALL\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400"), raw)
        raw = server_util.raw_request(self.server.port,
                                      b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 +
                                      b"\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 431"), raw[:40])
        raw = server_util.raw_request(self.server.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 414"), raw[:40])

    def test_metrics_count_errors(self):
        before = self.server.metrics().get(
            'llm42_http_requests_total{endpoint="/v1/completions",status="400"}', 0)
        status, _, _ = self.server.request("POST", C, {"prompt": "Once", "max_tokens": -1})
        self.assertEqual(status, 400)
        m = self.server.metrics()
        self.assertGreater(m.get('llm42_http_requests_total{endpoint="/v1/completions",status="400"}',
                                 0), before)


class NoTemplateAndAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--api-key", "sekret").start()

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def test_auth(self):
        s, _, _ = self.server.request("GET", "/health")
        self.assertEqual(s, 200)  # no key needed
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
            for method, path in (("GET", "/v1/models"), ("GET", "/metrics"), ("POST", C)):
                s, _, body = self.server.request(method, path, b"{}", headers)
                self.assertEqual(s, 401, (method, path, headers))
                err = json.loads(body)["error"]
                self.assertEqual(err["code"], "invalid_api_key")
                self.assertEqual(err["type"], BAD)
        s, _, _ = self.server.request("GET", "/v1/models", headers={"Authorization": "Bearer sekret"})
        self.assertEqual(s, 200)

    def test_chat_without_template(self):
        s, r = self.server.post_json(CHAT, {"messages": USER},
                                     {"Authorization": "bearer sekret"})
        self.assertEqual(s, 400)
        self.assertEqual(r["error"]["param"], "messages")
        self.assertIn("chat template", r["error"]["message"])


if __name__ == "__main__":
    server_util.run_tests()
