"""Echo, prompt logprobs and the default determinism of a server, as evaluation harnesses use
them, against a real `llm42 serve` (stories260K) with the official openai client:
- `echo` puts the prompt in front of the completion, text and legacy logprobs (the first prompt
  token's logprob null); `max_tokens` 0 with echo returns the prompt alone;
- a deterministic prompt token's logprob equals, bit for bit, the logprob the same token got
  when a deterministic request generated it, and does not move with concurrent traffic, a warm
  prefix cache or streaming;
- vLLM's `prompt_logprobs` ({id: {logprob, rank, decoded_token}}) on completions (per choice)
  and chat (top level);
- `--default-deterministic` makes requests without the field deterministic;
- bad values are refused naming the field.
"""

import json
import os
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

import openai  # noqa: E402

PROMPT = "Once upon a time, there was a little girl named Lily. She"


def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def echo_logprobs(c, prompt, **kw):
    r = c.completions.create(model="stories260K.bin", prompt=prompt, echo=True, logprobs=2,
                             temperature=0, **kw)
    return r.choices[0], r


class EchoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--determinism", "dvr", "--default-deterministic",
                                        "--prefill-chunk", "16",
                                        "--max-prompt-logprobs-rows", "24").start()
        cls.c = client(cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_echo_puts_the_prompt_in_front_and_scores_it_as_it_was_generated(self):
        gen = self.c.completions.create(model="stories260K.bin", prompt=PROMPT, max_tokens=12,
                                        logprobs=2, temperature=0,
                                        extra_body={"return_token_ids": True})
        g = gen.choices[0]
        self.assertTrue(gen.usage.model_extra["verification"]["deterministic"])
        # Score prompt + generated tokens, as ids (text would tokenize differently at the seam;
        # max_tokens 0: nothing more is generated).
        full = g.model_extra["prompt_token_ids"] + g.model_extra["token_ids"]
        e, r = echo_logprobs(self.c, full, max_tokens=0)
        self.assertEqual(e.text, PROMPT + g.text)
        self.assertEqual(r.usage.completion_tokens, 0)
        lp = e.logprobs
        self.assertEqual(len(lp.tokens), r.usage.prompt_tokens)
        self.assertIsNone(lp.token_logprobs[0])
        self.assertIsNone(lp.top_logprobs[0])
        self.assertTrue(all(x is not None and x <= 0 for x in lp.token_logprobs[1:]))
        self.assertEqual(lp.text_offset[0], 0)
        self.assertEqual(lp.text_offset, sorted(lp.text_offset))
        # The tail of the echoed prompt is the generated text: same tokens, same logprobs.
        n = len(g.logprobs.tokens)
        self.assertEqual(lp.tokens[-n:], g.logprobs.tokens)
        self.assertEqual(lp.token_logprobs[-n:], g.logprobs.token_logprobs)
        for mine, theirs in zip(lp.top_logprobs[-n:], g.logprobs.top_logprobs):
            for tok, v in theirs.items():  # the alternatives, plus the token itself in echo
                self.assertEqual(mine[tok], v)

    def test_echo_with_a_completion_continues_the_offsets(self):
        e, r = echo_logprobs(self.c, PROMPT, max_tokens=5)
        plain = self.c.completions.create(model="stories260K.bin", prompt=PROMPT, max_tokens=5,
                                          logprobs=2, temperature=0).choices[0]
        self.assertEqual(e.text, PROMPT + plain.text)
        self.assertEqual(len(e.logprobs.tokens), r.usage.prompt_tokens + 5)
        self.assertEqual(e.logprobs.token_logprobs[-5:], plain.logprobs.token_logprobs)
        self.assertEqual(e.logprobs.tokens[-5:], plain.logprobs.tokens)

    def test_the_same_under_load_with_a_warm_cache_and_streamed(self):
        prompts = [PROMPT + " liked to play" * k for k in range(1, 4)]
        alone = [echo_logprobs(self.c, p, max_tokens=3)[0] for p in prompts]
        # Warm the prefix cache with the same prompts, then score them amid other traffic.
        for p in prompts:
            self.c.completions.create(model="stories260K.bin", prompt=p, max_tokens=2)
        stop = threading.Event()
        errors = []

        def background(i):
            bc = client(self.server)
            while not stop.is_set():
                try:
                    bc.completions.create(model="stories260K.bin", prompt=f"{i} The dog", max_tokens=20,
                                          temperature=1.0, extra_body={"deterministic": i % 2 == 0})
                except Exception as ex:  # noqa: BLE001
                    errors.append(ex)
                    return

        threads = [threading.Thread(target=background, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            busy = [echo_logprobs(self.c, p, max_tokens=3)[0] for p in prompts]
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        for a, b in zip(alone, busy):
            self.assertEqual(a.text, b.text)
            self.assertEqual(a.logprobs.token_logprobs, b.logprobs.token_logprobs)
            self.assertEqual(a.logprobs.top_logprobs, b.logprobs.top_logprobs)
        # Streamed: the prompt comes in the first chunk; the whole is the same.
        stream = self.c.completions.create(model="stories260K.bin", prompt=prompts[0], max_tokens=3,
                                           echo=True, logprobs=2, temperature=0, stream=True)
        chunks = list(stream)
        self.assertTrue(chunks[0].choices[0].text.startswith(prompts[0]))
        self.assertEqual("".join(ch.choices[0].text for ch in chunks), alone[0].text)
        streamed = [x for ch in chunks if ch.choices[0].logprobs
                    for x in ch.choices[0].logprobs.token_logprobs]
        self.assertEqual(streamed, alone[0].logprobs.token_logprobs)

    def test_vllm_prompt_logprobs_on_completions_and_chat(self):
        status, body = self.server.post_json("/v1/completions", {
            "prompt": PROMPT, "max_tokens": 2, "prompt_logprobs": 3, "temperature": 0,
            "return_token_ids": True})
        self.assertEqual(status, 200, body)
        choice = body["choices"][0]
        pl = choice["prompt_logprobs"]
        ids = choice["prompt_token_ids"]
        self.assertEqual(len(pl), len(ids))
        self.assertIsNone(pl[0])
        for i, entry in enumerate(pl[1:], start=1):
            self.assertIn(str(ids[i]), entry)
            mine = entry[str(ids[i])]
            self.assertGreaterEqual(mine["rank"], 1)
            ranks = sorted(v["rank"] for k, v in entry.items() if k != str(ids[i]) or mine["rank"] <= 3)
            self.assertEqual(ranks[:3], [1, 2, 3][:len(ranks[:3])])
            best = min(entry.values(), key=lambda v: v["rank"])
            self.assertEqual(best["rank"], 1)
            self.assertGreaterEqual(best["logprob"], mine["logprob"])
            self.assertIsInstance(mine["decoded_token"], str)
        # No prompt_logprobs key unless asked.
        status, plain = self.server.post_json("/v1/completions", {"prompt": PROMPT, "max_tokens": 2})
        self.assertNotIn("prompt_logprobs", plain["choices"][0])

    def test_default_deterministic_and_an_explicit_false(self):
        for body, expect in (({}, True), ({"deterministic": False}, False),
                             ({"is_deterministic": True}, True)):
            status, r = self.server.post_json("/v1/completions",
                                              {"prompt": PROMPT, "max_tokens": 2, **body})
            self.assertEqual(status, 200, r)
            self.assertEqual(r["usage"]["verification"]["deterministic"], expect, body)

    def test_bad_values_are_refused_naming_the_field(self):
        cases = [
            ("/v1/completions", {"prompt": PROMPT, "max_tokens": 0}, "max_tokens"),
            ("/v1/completions", {"prompt": PROMPT, "prompt_logprobs": 21}, "prompt_logprobs"),
            ("/v1/completions", {"prompt": PROMPT, "prompt_logprobs": -1}, "prompt_logprobs"),
            ("/v1/completions", {"prompt": PROMPT, "prompt_logprobs": "3"}, "prompt_logprobs"),
            ("/v1/completions", {"prompt": PROMPT, "echo": "yes"}, "echo"),
            ("/v1/completions", {"prompt": PROMPT, "max_tokens": -1, "echo": True}, "max_tokens"),
        ]
        for path, body, param in cases:
            status, r = self.server.post_json(path, body)
            self.assertEqual(status, 400, (body, r))
            self.assertEqual(r["error"]["param"], param, (body, r))
        self.assertEqual(self.server.request("GET", "/health")[0], 200)


class ChatPromptLogprobsTest(unittest.TestCase):
    def test_chat_prompt_logprobs_at_the_top_level_and_echo_refused(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False) as f:
            f.write("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
        self.addCleanup(os.unlink, f.name)
        with server_util.Server("--chat-template", f.name) as s:
            status, r = s.post_json("/v1/chat/completions", {
                "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2,
                "prompt_logprobs": 0, "deterministic": True})
            self.assertEqual(status, 200, r)
            pl = r["prompt_logprobs"]
            self.assertEqual(len(pl), r["usage"]["prompt_tokens"])
            self.assertIsNone(pl[0])
            self.assertTrue(all(len(e) == 1 for e in pl[1:]), pl[:3])
            status, r = s.post_json("/v1/chat/completions", {
                "messages": [{"role": "user", "content": PROMPT}], "echo": True})
            self.assertEqual(status, 400, r)
            self.assertEqual(r["error"]["param"], "echo")


if __name__ == "__main__":
    server_util.run_tests()
