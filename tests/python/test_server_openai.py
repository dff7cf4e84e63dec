"""The official `openai` Python client against `llm42 serve` (stories260K, chatml template):
completions and chat, streamed and not, seeds, logprobs, stop, n, models, usage with the
verification counters, and deterministic requests repeated under concurrent background load.
"""

import concurrent.futures
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()
import openai  # noqa: E402

MODEL = "stories260K"


class OpenAIClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--served-model-name", MODEL, "--chat-template", "chatml")
        cls.server.start()
        cls.client = openai.OpenAI(base_url=cls.server.base_url, api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            print(cls.server.output())
        assert code == 0, code

    def test_models(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])
        self.assertEqual(models.data[0].owned_by, "llm42")

    def test_completion(self):
        r = self.client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12,
                                           temperature=0)
        self.assertEqual(r.object, "text_completion")
        self.assertTrue(r.id.startswith("cmpl-"))
        self.assertEqual(len(r.choices), 1)
        self.assertIn(r.choices[0].finish_reason, ("length", "stop"))
        self.assertGreater(len(r.choices[0].text), 0)
        self.assertEqual(r.usage.completion_tokens, 12)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 12)
        self.assertTrue(r.system_fingerprint.startswith("llm42-"))
        again = self.client.completions.create(model=MODEL, prompt="Once upon a time",
                                               max_tokens=12, temperature=0)
        self.assertEqual(again.choices[0].text, r.choices[0].text)

    def test_completion_stream_matches_non_stream(self):
        kwargs = dict(model=MODEL, prompt="The little dog", max_tokens=20, temperature=0.8,
                      seed=7)
        whole = self.client.completions.create(**kwargs)
        chunks = list(self.client.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].text)
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, whole.usage.completion_tokens)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        self.assertEqual(finishes[-1], whole.choices[0].finish_reason)
        self.assertTrue(all(f is None for f in finishes[:-1]))

    def test_seed_reproducible_and_distinct(self):
        a = self.client.completions.create(model=MODEL, prompt="Tom", max_tokens=24, seed=1,
                                           temperature=1.0)
        b = self.client.completions.create(model=MODEL, prompt="Tom", max_tokens=24, seed=1,
                                           temperature=1.0)
        c = self.client.completions.create(model=MODEL, prompt="Tom", max_tokens=24, seed=2,
                                           temperature=1.0)
        self.assertEqual(a.choices[0].text, b.choices[0].text)
        self.assertNotEqual(a.choices[0].text, c.choices[0].text)

    def test_n_and_prompt_lists(self):
        r = self.client.completions.create(model=MODEL, prompt=["Lily", "Sam"], n=3,
                                           max_tokens=8, seed=5, temperature=1.0)
        self.assertEqual([c.index for c in r.choices], list(range(6)))
        texts = [c.text for c in r.choices]
        self.assertEqual(len(set(texts[:3])), 3, texts)  # seed + i per choice
        # Choice i of each prompt uses seed + i: the same prompt and seed reproduce it.
        one = self.client.completions.create(model=MODEL, prompt="Sam", max_tokens=8, seed=6,
                                             temperature=1.0)
        self.assertEqual(one.choices[0].text, texts[4])
        self.assertEqual(r.usage.completion_tokens, 48)

    def test_token_id_prompts(self):
        r = self.client.completions.create(model=MODEL, prompt=[1, 403, 407], max_tokens=5,
                                           temperature=0, extra_body={"return_token_ids": True})
        ids = r.choices[0].model_extra["token_ids"]
        self.assertEqual(len(ids), 5)
        self.assertEqual(r.choices[0].model_extra["prompt_token_ids"], [1, 403, 407])
        self.assertEqual(r.usage.prompt_tokens, 3)

    def test_completion_logprobs(self):
        r = self.client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6,
                                           temperature=0, logprobs=3)
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), 6)
        self.assertEqual(len(lp.token_logprobs), 6)
        self.assertEqual(len(lp.top_logprobs), 6)
        self.assertEqual(len(lp.text_offset), 6)
        for tok, l, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            self.assertLessEqual(l, 0.0)
            self.assertEqual(len(top), 3)
            # Greedy: the chosen token is the most likely one.
            self.assertAlmostEqual(max(top.values()), l, places=5)
        self.assertEqual("".join(lp.tokens).strip(), r.choices[0].text.strip())

    def test_chat(self):
        r = self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "system", "content": "Tell a story."},
                                   {"role": "user", "content": "Once upon a time"}],
            max_tokens=10, temperature=0)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertIsInstance(r.choices[0].message.content, str)
        self.assertEqual(r.usage.completion_tokens, 10)
        self.assertTrue(r.id.startswith("chatcmpl-"))

    def test_chat_stream(self):
        kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Hello"}],
                      max_tokens=15, temperature=0)
        whole = self.client.chat.completions.create(**kwargs)
        chunks = list(self.client.chat.completions.create(stream=True, **kwargs))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(chunks[0].choices[0].delta.content, "")
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        self.assertEqual(text, whole.choices[0].message.content)
        self.assertEqual(chunks[-1].choices[0].finish_reason, whole.choices[0].finish_reason)
        self.assertTrue(all(c.object == "chat.completion.chunk" for c in chunks))

    def test_chat_logprobs(self):
        r = self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
            temperature=0, logprobs=True, top_logprobs=2)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), 5)
        for entry in content:
            self.assertEqual(len(entry.top_logprobs), 2)
            if not entry.token.startswith("bytes:"):
                self.assertEqual(bytes(entry.bytes).decode("utf-8"), entry.token)

    def test_stop(self):
        base = self.client.completions.create(model=MODEL, prompt="Once upon a time",
                                              max_tokens=40, temperature=0)
        text = base.choices[0].text
        word = text.split()[3]
        r = self.client.completions.create(model=MODEL, prompt="Once upon a time",
                                           max_tokens=40, temperature=0, stop=[word])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].text, text[:text.index(word)])
        self.assertNotIn(word, r.choices[0].text)

    def test_admission_reserve_learns_from_early_stops(self):
        # Auto admission reserve: a request that stops far before max_tokens lowers the share
        # of max_tokens admission keeps KV for (a moving average; one such request moves it).
        ratio = "llm42_admission_reserve_ratio"
        base = self.client.completions.create(model=MODEL, prompt="Once upon a time",
                                              max_tokens=8, temperature=0)
        word = base.choices[0].text.split()[1]
        # The engine publishes its stats after the step that sent the answer: wait for it.
        before = self.server.wait_for(
            lambda m: m["llm42_num_requests_running"] == 0, timeout=5, what="an idle engine")[ratio]
        r = self.client.completions.create(model=MODEL, prompt="Once upon a time",
                                           max_tokens=400, temperature=0, stop=[word])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        used = r.usage.completion_tokens / 400
        self.assertLess(used, 0.05)
        self.assertGreater(before, used)
        self.assertLessEqual(before, 1.0)
        self.server.wait_for(lambda m: m[ratio] < before, timeout=5,
                             what=f"{ratio} below {before}")

    def test_usage_verification(self):
        def pass_seconds(lane):
            m = self.server.metrics()
            return sum(m[f'llm42_engine_pass_seconds_total{{lane="{lane}",graph="{g}"}}']
                       for g in ("true", "false"))

        canonical_before, fast_before = pass_seconds("canonical"), pass_seconds("fast")
        r = self.client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=80,
                                           temperature=0, extra_body={"deterministic": True,
                                                                      "ignore_eos": True})
        v = r.usage.model_extra["verification"]
        self.assertTrue(v["deterministic"])
        self.assertGreaterEqual(v["windows_verified"], 1)
        self.assertGreaterEqual(v["verify_passes"], 1)
        self.assertIn("recompute_rate", v)
        self.assertIn("cached_tokens", r.usage.prompt_tokens_details.model_dump())
        plain = self.client.completions.create(model=MODEL, prompt="Once", max_tokens=4)
        self.assertFalse(plain.usage.model_extra["verification"]["deterministic"])
        # Both requests' passes are timed, each in its lane (the deterministic one verified
        # its windows in canonical passes; the other decoded in fast ones).
        self.assertGreater(pass_seconds("canonical"), canonical_before)
        self.assertGreater(pass_seconds("fast"), fast_before)

    def test_errors_surface_as_openai_exceptions(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model=MODEL, prompt="x", max_tokens=5, top_p=1.5)
        self.assertEqual(e.exception.body["param"], "top_p")
        with self.assertRaises(openai.NotFoundError) as e:
            self.client.completions.create(model="gpt-9", prompt="x", max_tokens=5)
        self.assertEqual(e.exception.body["code"], "model_not_found")

    def test_deterministic_under_background_load(self):
        prompts = ["Once upon a time", "The little dog", "Lily and Ben", "A big red ball"]

        def det(p, i):
            r = self.client.completions.create(
                model=MODEL, prompt=p, max_tokens=48, logprobs=1,
                temperature=0 if i % 2 == 0 else 0.9, seed=100 + i,
                extra_body={"deterministic": True, "return_token_ids": True})
            c = r.choices[0]
            return c.model_extra["token_ids"], c.logprobs.token_logprobs

        reference = [det(p, i) for i, p in enumerate(prompts)]

        def background(i):
            return self.client.completions.create(model=MODEL, prompt=prompts[i % 4] + " and",
                                                  max_tokens=40 + i % 30, temperature=1.0,
                                                  extra_body={"ignore_eos": True})

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            noise = [pool.submit(background, i) for i in range(40)]
            loaded = [pool.submit(det, p, i) for i, p in enumerate(prompts)]
            more = [pool.submit(background, i) for i in range(40, 60)]
            results = [f.result() for f in loaded]
            for f in noise + more:
                f.result()
        for (ids, lps), (ref_ids, ref_lps) in zip(results, reference):
            self.assertEqual(ids, ref_ids)
            self.assertEqual(lps, ref_lps)  # floats compared exactly


if __name__ == "__main__":
    server_util.run_tests()
