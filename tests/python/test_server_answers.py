"""What an answer is and what it depends on, against real servers on loopback:
- streamed text (with stop strings, in global and dvr mode) equals the non-streamed text and is
  the same in both modes: the text of a deterministic answer is a function of its token ids;
- system_fingerprint differs between servers whose answers differ (dummy weights of the Qwen3
  and the Llama-3 shape) and is stable across restarts of one configuration;
- min_tokens and include_stop_str_in_output act; max_tokens at INT_MAX is a context
  overflow, not a wrapped sum;
- a hostile chat template is refused at start-up or at render with an error, never a crash.
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

PROMPT = "Once upon a time"


def stream_text(server, path, body):
    """The concatenated text of a streamed answer's chunks, and the chunks' finish_reason."""
    status, _, raw = server.request("POST", path, {**body, "stream": True},
                                    {"Content-Type": "application/json"})
    assert status == 200, raw
    text, reason = "", None
    for event in raw.decode("utf-8").split("\n\n"):
        if not event.startswith("data: ") or event == "data: [DONE]":
            continue
        choice = json.loads(event[6:])["choices"][0]
        text += choice.get("text") or choice.get("delta", {}).get("content") or ""
        reason = choice.get("finish_reason") or reason
    return text, reason


class StreamedTextTest(unittest.TestCase):
    """Stories260K at temperature 2 writes byte-fallback tokens: multi-byte characters and
    invalid UTF-8, where byte-based holding for a stop string cut characters in two."""

    def answers(self, mode):
        out = []
        with server_util.Server("--determinism", mode) as s:
            for seed in range(8):
                for stop in (["~~~~~~~~"], ["\ufffd", "~~~~~~~~"], ["e"]):
                    body = {"prompt": PROMPT, "max_tokens": 48, "temperature": 2.0,
                            "seed": seed, "stop": stop, "deterministic": True}
                    status, whole = s.post_json("/v1/completions", body)
                    self.assertEqual(status, 200, whole)
                    text = whole["choices"][0]["text"]
                    streamed, reason = stream_text(s, "/v1/completions", body)
                    self.assertEqual(streamed, text, (mode, seed, stop))
                    self.assertEqual(reason, whole["choices"][0]["finish_reason"])
                    out.append(text)
        return out

    def test_streamed_equals_whole_in_both_modes(self):
        global_mode = self.answers("global")
        dvr = self.answers("dvr")
        self.assertEqual(global_mode, dvr)
        self.assertTrue(any(ord(c) > 127 for t in dvr for c in t), "no non-ASCII text made")


class FingerprintTest(unittest.TestCase):
    def fingerprint(self, model):
        with server_util.Server("--dummy-weights", model=model) as s:
            status, body = s.post_json("/v1/completions",
                                       {"prompt": [1, 2, 3], "max_tokens": 1, "temperature": 0})
            self.assertEqual(status, 200, body)
            return body["system_fingerprint"]

    def test_differs_with_the_model_shape(self):
        models = os.path.join(server_util.shared_dir(), "models")
        qwen3 = self.fingerprint(os.path.join(models, "tiny-qwen3"))
        llama3 = self.fingerprint(os.path.join(models, "tiny-llama3"))
        self.assertNotEqual(qwen3, llama3)
        self.assertEqual(self.fingerprint(os.path.join(models, "tiny-qwen3")), qwen3)

    def test_differs_with_the_chat_template(self):
        def fp(*args):
            with server_util.Server(*args) as s:
                status, body = s.post_json("/v1/completions", {"prompt": "a", "max_tokens": 1})
                self.assertEqual(status, 200, body)
                return body["system_fingerprint"]
        self.assertNotEqual(fp("--chat-template", "chatml"), fp("--chat-template", "llama-2"))


class FieldsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--chat-template", "chatml").start()

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0

    def complete(self, **fields):
        status, body = self.server.post_json(
            "/v1/completions", {"prompt": PROMPT, "temperature": 0, **fields})
        self.assertEqual(status, 200, body)
        return body["choices"][0], body["usage"]

    def test_min_tokens(self):
        # Stories260K never writes EOS: a stop token id stands in for it.
        free, _ = self.complete(max_tokens=40, return_token_ids=True)
        stop_id = free["token_ids"][6]
        first = free["token_ids"].index(stop_id)
        choice, usage = self.complete(max_tokens=40, stop_token_ids=[stop_id])
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertEqual(usage["completion_tokens"], first + 1)
        choice, usage = self.complete(max_tokens=40, stop_token_ids=[stop_id],
                                      min_tokens=first + 3, return_token_ids=True)
        self.assertGreaterEqual(usage["completion_tokens"], first + 3)
        self.assertEqual(choice["token_ids"], free["token_ids"][:len(choice["token_ids"])])
        # A stop string is not looked for before min_tokens either.
        first, usage = self.complete(max_tokens=300, stop=["."])
        self.assertEqual(first["finish_reason"], "stop")
        late, late_usage = self.complete(max_tokens=300, stop=["."],
                                         min_tokens=usage["completion_tokens"] + 3)
        self.assertGreater(len(late["text"]), len(first["text"]))
        self.assertTrue(late["text"].startswith(first["text"] + "."), late["text"])

    def test_include_stop_str_in_output(self):
        plain, _ = self.complete(max_tokens=100, stop=[","])
        kept, _ = self.complete(max_tokens=100, stop=[","], include_stop_str_in_output=True)
        self.assertEqual(plain["finish_reason"], "stop")
        self.assertEqual(kept["text"], plain["text"] + ",")

    def test_max_tokens_int_max_is_a_context_overflow(self):
        for path, body in (("/v1/completions", {"prompt": PROMPT}),
                           ("/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "hi"}]})):
            status, err = self.server.post_json(path, {**body, "max_tokens": 2147483647})
            self.assertEqual(status, 400, err)
            self.assertEqual(err["error"]["code"], "context_length_exceeded")

    def test_overlong_prompt_refused_by_bytes(self):
        status, err = self.server.post_json(
            "/v1/completions", {"prompt": "once upon a time " * 200000, "max_tokens": 1})
        self.assertEqual(status, 400, err)
        self.assertEqual(err["error"]["code"], "context_length_exceeded")
        self.assertIn("3400000 bytes", err["error"]["message"])


class HostileTemplateTest(unittest.TestCase):
    def template_file(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_chain_refused_at_start_up(self):
        path = self.template_file("{{ 1" + " + 1" * 100000 + " }}")
        s = server_util.Server("--chat-template", path)
        with self.assertRaises(RuntimeError) as ctx:
            s.start()
        os.unlink(s.log.name)
        self.assertEqual(s.proc.returncode, 1, str(ctx.exception))
        self.assertIn(path, str(ctx.exception))
        self.assertIn("more than 200 levels deep", str(ctx.exception))

    def test_nesting_refused_at_render(self):
        path = self.template_file(
            "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}"
            "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}")
        with server_util.Server("--chat-template", path) as s:
            status, err = s.post_json("/v1/chat/completions",
                                      {"messages": [{"role": "user", "content": "hi"}]})
            self.assertEqual(status, 400, err)
            self.assertIn(path, err["error"]["message"])
            self.assertIn("more than 256 levels deep", err["error"]["message"])
            status, _ = s.post_json("/v1/completions", {"prompt": PROMPT, "max_tokens": 1})
            self.assertEqual(status, 200)


if __name__ == "__main__":
    server_util.run_tests()
