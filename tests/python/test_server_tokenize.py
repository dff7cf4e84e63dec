"""vLLM's tokenizer endpoints of `llm42 serve` (POST /tokenize, POST /detokenize,
GET /tokenizer_info), as lm-evaluation-harness's RemoteTokenizer uses them:

- stories260K (SentencePiece, chatml): the ids equal those /v1/completions and
  /v1/chat/completions feed the model (prompt_token_ids, usage.prompt_tokens), round trips,
  continue_final_message, the EOS text encoding to the EOS id, every error, the API key, and a
  model without a tokenizer;
- Llama 3's tokenizer.json (a dummy-weights model with its vocabulary): ids and decoded text
  identical to Hugging Face `tokenizers` on generated strings;
- SmolLM2 (GGUF): ids identical to llama.cpp's (tests/goldens/smollm2/tokenize.json), and its
  own chat template's prompt.

Exits 77 (skipped) without LLM42_BIN or the shared models; the Llama 3 and SmolLM2 classes skip
without their tokenizer, the `tokenizers` package or SmolLM2.
"""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_util  # noqa: E402
from tokenizer_corpus import texts as corpus_texts  # noqa: E402

server_util.stories_model()
server_util.llm42_bin()

MODEL = "stories260K"
KEY = "tok-test-key"
CHAT = [{"role": "system", "content": "You tell stories."},
        {"role": "user", "content": "Tell me about a cat."}]
VARIED = ["Once upon a time", "", " ", "  two leading spaces", "trailing space ", "tabs\tand\nnew\nlines\n",
          "Lily and Tom went to the park. They saw a big dog!", "numbers 12345 and 3.14159",
          "héllo wörld ça va", "日本語のテキスト", "emoji 🙂🚀", "mixed: ü 中 🙂 a\r\nb",
          "punctuation?!... (quoted) \"x\" 'y' {z}", "a" * 300]


def error_of(test, resp, status, param):
    got_status, body = resp
    test.assertEqual(got_status, status, body)
    err = body["error"]
    test.assertEqual(err["param"], param, err)
    test.assertEqual(err["type"], "invalid_request_error", err)
    test.assertTrue(err["message"], err)
    return err["message"]


class StoriesTokenize(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = server_util.Server("--served-model-name", MODEL, "--chat-template", "chatml",
                                        "--max-body-bytes", "65536")
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def post(self, path, body):
        return self.server.post_json(path, body)

    def tokenize(self, body, path="/tokenize"):
        status, out = self.post(path, body)
        self.assertEqual(status, 200, out)
        return out

    def test_completion_form_is_what_completions_feed_the_model(self):
        for add_special in (True, False):
            out = self.tokenize({"prompt": "Once upon a time", "add_special_tokens": add_special})
            status, c = self.post("/v1/completions", {
                "prompt": "Once upon a time", "max_tokens": 1, "temperature": 0,
                "return_token_ids": True, "add_special_tokens": add_special})
            self.assertEqual(status, 200, c)
            self.assertEqual(out["tokens"], c["choices"][0]["prompt_token_ids"])
            self.assertEqual(out["count"], len(out["tokens"]))
            self.assertEqual(out["count"], c["usage"]["prompt_tokens"])
            self.assertEqual(out["max_model_len"], 512)
            self.assertIsNone(out["token_strs"])
            self.assertEqual(out["tokens"][0] == 1, add_special)  # BOS by default
        self.assertEqual(self.tokenize({"prompt": "x"})["tokens"][0], 1)

    def test_v1_aliases(self):
        body = {"prompt": "Once upon a time"}
        self.assertEqual(self.tokenize(body, "/v1/tokenize"), self.tokenize(body))
        status, out = self.post("/v1/detokenize", {"tokens": [403, 407]})
        self.assertEqual((status, out), (200, {"prompt": "Once upon"}))

    def test_token_strs(self):
        out = self.tokenize({"prompt": "Once upon a time", "return_token_strs": True})
        self.assertEqual(out["token_strs"], ["<s>", " Once", " upon", " a", " time"])
        self.assertEqual(len(out["token_strs"]), out["count"])

    def test_round_trip(self):
        for text in VARIED:
            with self.subTest(text=text):
                ids = self.tokenize({"prompt": text, "add_special_tokens": False})["tokens"]
                status, out = self.post("/detokenize", {"tokens": ids, "model": MODEL})
                self.assertEqual(status, 200, out)
                self.assertEqual(out["prompt"], text)

    def test_chat_form_is_what_chat_completions_feed_the_model(self):
        for extra in ({}, {"add_generation_prompt": False}, {"add_special_tokens": True}):
            with self.subTest(extra=extra):
                out = self.tokenize({"messages": CHAT, "model": MODEL, **extra})
                status, c = self.post("/v1/chat/completions", {
                    "messages": CHAT, "max_tokens": 1, "temperature": 0,
                    "return_token_ids": True, **extra})
                self.assertEqual(status, 200, c)
                self.assertEqual(out["count"], c["usage"]["prompt_tokens"])
                self.assertEqual(out["tokens"], c["prompt_token_ids"])
        # The default adds the generation prompt, as chat completions do.
        self.assertEqual(self.tokenize({"messages": CHAT}),
                         self.tokenize({"messages": CHAT, "add_generation_prompt": True}))

    def test_continue_final_message(self):
        msgs = CHAT + [{"role": "assistant", "content": "Once upon a"}]
        cont = self.tokenize({"messages": msgs, "continue_final_message": True,
                              "return_token_strs": True})
        closed = self.tokenize({"messages": msgs, "add_generation_prompt": False})
        text = "".join(cont["token_strs"])
        self.assertTrue(text.endswith("<|im_start|>assistant\nOnce upon a"), text)
        self.assertLess(cont["count"], closed["count"])
        self.assertEqual(cont["tokens"], closed["tokens"][:cont["count"]])
        # A chat completion with continue_final_message feeds the model that same prompt, so its
        # answer continues the assistant's message: the tokens greedy decoding of it gives.
        gen = {"max_tokens": 8, "temperature": 0, "deterministic": True, "return_token_ids": True}
        status, c = self.post("/v1/chat/completions",
                              {"messages": msgs, "continue_final_message": True, **gen})
        self.assertEqual(status, 200, c)
        self.assertEqual(c["prompt_token_ids"], cont["tokens"])
        self.assertEqual(c["usage"]["prompt_tokens"], cont["count"])
        status, ref = self.post("/v1/completions", {"prompt": cont["tokens"], **gen})
        self.assertEqual(status, 200, ref)
        self.assertEqual(c["choices"][0]["token_ids"], ref["choices"][0]["token_ids"])
        self.assertEqual(c["choices"][0]["message"]["content"], ref["choices"][0]["text"])
        for path in ("/tokenize", "/v1/chat/completions"):
            error_of(self, self.post(path, {"messages": msgs, "continue_final_message": True,
                                            "add_generation_prompt": True}),
                     400, "continue_final_message")

    def test_tokenizer_info_and_eos(self):
        status, _, data = self.server.request("GET", "/tokenizer_info")
        self.assertEqual(status, 200)
        info = json.loads(data)
        self.assertEqual(info["eos_token"], "</s>")
        self.assertEqual(info["bos_token"], "<s>")
        self.assertIsNone(info["pad_token"])
        self.assertIn("<|im_start|>", info["chat_template"])
        self.assertEqual(info["model_max_length"], 512)
        self.assertEqual(info["vocab_size"], 512)
        self.assertEqual(info["tokenizer_class"], "sentencepiece-bpe")
        self.assertIs(info["add_bos_token"], True)
        # lm-eval's eos_token_id: the EOS text without special tokens added, first id.
        for text, want in ((info["eos_token"], 2), (info["bos_token"], 1)):
            out = self.tokenize({"prompt": text, "add_special_tokens": False})
            self.assertEqual(out["tokens"], [want])
        self.assertEqual(self.server.request("HEAD", "/tokenizer_info")[0], 200)

    def test_long_prompt_is_tokenized_in_full(self):
        text = "Once upon a time there was a cat. " * 200
        out = self.tokenize({"prompt": text})
        self.assertGreater(out["count"], out["max_model_len"])
        self.assertEqual(out["count"], len(out["tokens"]))

    def test_errors(self):
        p = self.post
        cases = [
            (p("/tokenize", {}), 400, "prompt"),
            (p("/tokenize", {"prompt": ["a", "b"]}), 400, "prompt"),
            (p("/tokenize", {"prompt": [1, 2]}), 400, "prompt"),
            (p("/tokenize", {"prompt": "a", "add_special_tokens": "yes"}), 400, "add_special_tokens"),
            (p("/tokenize", {"prompt": "a", "return_token_strs": 1}), 400, "return_token_strs"),
            (p("/tokenize", {"prompt": "a", "model": 7}), 400, "model"),
            (p("/tokenize", {"prompt": "a", "model": "other"}), 404, "model"),
            (p("/tokenize", {"messages": "hi"}), 400, "messages"),
            (p("/tokenize", {"messages": []}), 400, "messages"),
            (p("/tokenize", {"messages": [{"role": "x", "content": "a"}]}), 400, "messages[0].role"),
            (p("/tokenize", {"messages": [{"role": "user"}]}), 400, "messages[0].content"),
            (p("/tokenize", {"messages": CHAT, "add_generation_prompt": 1}), 400,
             "add_generation_prompt"),
            (p("/tokenize", {"messages": CHAT, "continue_final_message": "no"}), 400,
             "continue_final_message"),
            (p("/tokenize", {"messages": CHAT, "chat_template_kwargs": []}), 400,
             "chat_template_kwargs"),
            (p("/detokenize", {}), 400, "tokens"),
            (p("/detokenize", {"tokens": 5}), 400, "tokens"),
            (p("/detokenize", {"tokens": ["a"]}), 400, "tokens[0]"),
            (p("/detokenize", {"tokens": [1, 2.5]}), 400, "tokens[1]"),
            (p("/detokenize", {"tokens": [1], "model": "other"}), 404, "model"),
        ]
        for resp, status, param in cases:
            error_of(self, resp, status, param)
        msg = error_of(self, p("/detokenize", {"tokens": [1, 512]}), 400, "tokens")
        self.assertIn("512", msg)
        self.assertIn("vocabulary has 512 tokens", msg)
        msg = error_of(self, p("/detokenize", {"tokens": [-1]}), 400, "tokens")
        self.assertIn("-1", msg)
        for path in ("/tokenize", "/detokenize"):
            for raw in (b"", b"{", b"[]", b"\xff"):
                status, _, data = self.server.request("POST", path, raw)
                self.assertEqual(status, 400, (path, raw, data))
                self.assertIsNone(json.loads(data)["error"]["param"])
            status, hdrs, _ = self.server.request("GET", path)
            self.assertEqual((status, hdrs["allow"]), (405, "POST"))
        status, hdrs, _ = self.server.request("POST", "/tokenizer_info", b"{}")
        self.assertEqual((status, hdrs["allow"]), (405, "GET, HEAD"))
        status, _, _ = self.server.request("POST", "/tokenize", "x" * 70000)
        self.assertEqual(status, 413)


class Guarded(unittest.TestCase):
    """An API key guards the tokenizer routes like every other; a model without a tokenizer
    answers them with a 400 that says so, as /v1/completions answers a text prompt."""

    def test_api_key(self):
        env = dict(os.environ, LLM42_API_KEY=KEY)
        with server_util.Server(env=env) as s:
            for method, path, body in (("POST", "/tokenize", {"prompt": "a"}),
                                       ("POST", "/detokenize", {"tokens": [1]}),
                                       ("GET", "/tokenizer_info", None)):
                self.assertEqual(s.request(method, path, body)[0], 401, path)
                status, _, data = s.request(method, path, body,
                                            {"Authorization": f"Bearer {KEY}"})
                self.assertEqual(status, 200, data)

    def test_no_tokenizer(self):
        model = os.path.join(server_util.shared_dir(), "models", "stories260K-hf")
        if not os.path.isdir(model):
            self.skipTest(f"{model} not found")
        with server_util.Server(model=model) as s:
            msg = error_of(self, s.post_json("/tokenize", {"prompt": "a"}), 400, "prompt")
            self.assertIn("no tokenizer", msg)
            msg = error_of(self, s.post_json("/detokenize", {"tokens": [1]}), 400, "tokens")
            self.assertIn("no tokenizer", msg)
            status, _, data = s.request("GET", "/tokenizer_info")
            self.assertEqual(status, 400, data)
            self.assertIn("no tokenizer", json.loads(data)["error"]["message"])
            msg = error_of(self, s.post_json("/v1/completions", {"prompt": "a"}), 400, "prompt")
            self.assertIn("no tokenizer", msg)


def hf_tokenizer(name):
    """(Tokenizer, folder) of shared/tokenizers/NAME, or skips the class."""
    folder = os.path.join(server_util.shared_dir(), "tokenizers", name)
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        raise unittest.SkipTest(f"{folder}/tokenizer.json not found")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise unittest.SkipTest("the Python package `tokenizers` is not installed")
    return Tokenizer.from_file(os.path.join(folder, "tokenizer.json")), folder


class Llama3AgainstHuggingFace(unittest.TestCase):
    """A dummy-weights model with Llama 3's vocabulary, served with its tokenizer.json."""

    @classmethod
    def setUpClass(cls):
        cls.hf, folder = hf_tokenizer("llama3")
        cls.tmp = tempfile.mkdtemp(prefix="llm42-tok-")
        with open(os.path.join(server_util.shared_dir(), "models", "tiny-llama3",
                               "config.json")) as f:
            config = json.load(f)
        config.update(vocab_size=cls.hf.get_vocab_size(), bos_token_id=128000,
                      eos_token_id=128001, tie_word_embeddings=True)
        with open(os.path.join(cls.tmp, "config.json"), "w") as f:
            json.dump(config, f)
        cls.server = server_util.Server("--dummy-weights", "--tokenizer", folder,
                                        "--chat-template",
                                        os.path.join(folder, "tokenizer_config.json"),
                                        model=cls.tmp)
        cls.server.start()
        added = cls.hf.get_added_tokens_decoder()
        cls.corpus = corpus_texts(42, 150, sorted(t.content for t in added.values()))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp)

    def test_ids_and_text_equal_hugging_face(self):
        bad = []
        for text in self.corpus + VARIED:
            for add_special in (True, False):
                status, out = self.server.post_json(
                    "/tokenize", {"prompt": text, "add_special_tokens": add_special})
                self.assertEqual(status, 200, out)
                want = self.hf.encode(text, add_special_tokens=add_special).ids
                if out["tokens"] != want:
                    bad.append((text, add_special, out["tokens"], want))
            status, out = self.server.post_json("/detokenize", {"tokens": want})
            if out["prompt"] != self.hf.decode(want, skip_special_tokens=False):
                bad.append((text, "decode", out["prompt"]))
        self.assertEqual(bad[:3], [], f"{len(bad)} mismatches")

    def test_special_tokens(self):
        status, _, data = self.server.request("GET", "/tokenizer_info")
        info = json.loads(data)
        self.assertEqual((info["bos_token"], info["eos_token"]),
                         ("<|begin_of_text|>", "<|end_of_text|>"))
        self.assertEqual(info["tokenizer_class"], "byte-level-bpe")
        # This tokenizer.json's post-processor adds no BOS, so add_special_tokens adds nothing.
        self.assertIs(info["add_bos_token"], self.hf.encode("a").ids[0] == 128000)
        self.assertEqual(info["vocab_size"], self.hf.get_vocab_size())
        for text in (info["eos_token"], "<|eot_id|>", "<|start_header_id|>"):
            status, out = self.server.post_json("/tokenize", {"prompt": text,
                                                             "add_special_tokens": False})
            self.assertEqual(out["tokens"], [self.hf.token_to_id(text)], text)


class SmolLM2AgainstLlamaCpp(unittest.TestCase):
    """SmolLM2's GGUF tokenizer against llama.cpp's ids (the goldens the tokenizer test uses)."""

    @classmethod
    def setUpClass(cls):
        path, why = server_util.find_smollm2()
        if path is None:
            raise unittest.SkipTest(why)
        golden = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "goldens",
                              "smollm2", "tokenize.json")
        with open(golden, encoding="utf-8") as f:
            cls.golden = json.load(f)
        cls.server = server_util.Server("--max-seq-len", "2048", model=path)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_ids_equal_llama_cpp(self):
        texts = self.golden["texts"]
        want = self.golden["pres"]["smollm"]["special"]
        bad = []
        for text, ids in zip(texts, want):
            status, out = self.server.post_json("/tokenize", {"prompt": text})
            self.assertEqual(status, 200, out)
            if out["tokens"] != ids:
                bad.append((text, out["tokens"], ids))
        self.assertEqual(bad[:3], [], f"{len(bad)} of {len(texts)} differ")

    def test_eos_and_chat(self):
        status, _, data = self.server.request("GET", "/tokenizer_info")
        info = json.loads(data)
        self.assertEqual(info["eos_token"], "<|im_end|>")
        self.assertIs(info["add_bos_token"], False)
        self.assertIn("<|im_start|>", info["chat_template"])
        status, out = self.server.post_json("/tokenize", {"prompt": info["eos_token"],
                                                         "add_special_tokens": False})
        self.assertEqual(out["tokens"], [2])
        status, tok = self.server.post_json("/tokenize", {"messages": CHAT})
        status, c = self.server.post_json("/v1/chat/completions", {
            "messages": CHAT, "max_tokens": 1, "temperature": 0, "return_token_ids": True})
        self.assertEqual(status, 200, c)
        self.assertEqual(tok["tokens"], c["prompt_token_ids"])
        self.assertEqual(tok["count"], c["usage"]["prompt_tokens"])
        for text in VARIED:
            status, out = self.server.post_json("/tokenize", {"prompt": text})
            status, back = self.server.post_json("/detokenize", {"tokens": out["tokens"]})
            self.assertEqual(back["prompt"], text)


if __name__ == "__main__":
    server_util.run_tests()
