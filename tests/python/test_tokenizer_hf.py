"""llm42's tokenizers against Hugging Face `tokenizers` on the real Llama 3, Qwen3 and Llama 2
tokenizer.json files: ids and decoded text must be identical on thousands of generated strings
(tokenizer_corpus.py), with and without special tokens, with special-token text parsed or
literal, on invalid UTF-8, and on decoding random id sequences that cut characters apart.

Each batch goes through one `llm42 tokenize --input FILE --json` process (JSON lines in and out).
Needs LLM42_BIN and LLM42_SHARED_DIR; exits 77 (skipped) without them.
"""

import os
import random
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenize_util import run_llm42  # noqa: E402
from tokenizer_corpus import invalid_utf8, texts  # noqa: E402

BIN = os.environ.get("LLM42_BIN", "")
SHARED = os.environ.get("LLM42_SHARED_DIR", "")
N_TEXTS = 2500
N_INVALID = 400
N_RANDOM_ID_SEQS = 1500
SHOW = 3  # mismatches printed in full


def skip(why):
    print(f"skipped: {why}")
    sys.exit(77)


if not BIN or not os.path.exists(BIN):
    skip("LLM42_BIN does not name the llm42 binary")
if not SHARED or not os.path.isdir(os.path.join(SHARED, "tokenizers")):
    skip("LLM42_SHARED_DIR does not hold tokenizers/")
try:
    from tokenizers import Tokenizer
except ImportError:
    skip("the Python package `tokenizers` is not installed")


def as_request(t):
    return t if isinstance(t, str) else {"bytes_hex": t.hex()}


class HfComparison:
    """Mixed into one TestCase per tokenizer; the subclass sets NAME and SEED."""

    NAME = ""
    SEED = 0

    @classmethod
    def setUpClass(cls):
        cls.path = os.path.join(SHARED, "tokenizers", cls.NAME, "tokenizer.json")
        cls.hf = Tokenizer.from_file(cls.path)
        added = cls.hf.get_added_tokens_decoder()
        cls.specials = sorted(t.content for t in added.values())
        cls.special_ids = sorted(i for i, t in added.items() if t.special)
        cls.corpus = texts(cls.SEED, N_TEXTS, cls.specials)

    def check(self, what, inputs, ours, theirs):
        bad = [(i, o, t) for i, (o, t) in enumerate(zip(ours, theirs)) if o != t]
        print(f"{self.NAME}: {what}: {len(inputs)} compared, {len(bad)} mismatches")
        for i, o, t in bad[:SHOW]:
            print(f"  input  {inputs[i]!r:.300}\n  llm42  {o!r:.300}\n  HF     {t!r:.300}")
            if isinstance(o, list) and isinstance(t, list):
                k = next((j for j in range(min(len(o), len(t))) if o[j] != t[j]),
                         min(len(o), len(t)))
                tok = self.hf.id_to_token
                print(f"  first difference at {k}: llm42 {o[k:k + 4]} "
                      f"{[tok(x) for x in o[k:k + 4]]} vs HF {t[k:k + 4]} "
                      f"{[tok(x) for x in t[k:k + 4]]}")
        self.assertEqual(len(bad), 0, f"{self.NAME}: {what}: {len(bad)} mismatches")

    def hf_encode(self, batch, add_special):
        return [e.ids for e in self.hf.encode_batch(batch, add_special_tokens=add_special)]

    def test_encode_with_special_tokens(self):
        ours = run_llm42(self.path, self.corpus)
        self.check("encode(add_special_tokens=True)", self.corpus, ours,
                   self.hf_encode(self.corpus, True))

    def test_encode_without_special_tokens(self):
        ours = run_llm42(self.path, self.corpus, "--no-special")
        self.check("encode(add_special_tokens=False)", self.corpus, ours,
                   self.hf_encode(self.corpus, False))

    def test_encode_special_text_literally(self):
        ours = run_llm42(self.path, self.corpus, "--literal-special")
        self.hf.encode_special_tokens = True
        try:
            theirs = self.hf_encode(self.corpus, True)
        finally:
            self.hf.encode_special_tokens = False
        self.check("encode with special-token text as text (encode_special_tokens=True)",
                   self.corpus, ours, theirs)

    def test_invalid_utf8(self):
        # Invalid bytes are replaced by U+FFFD per maximal subpart, as Python's 'replace' does.
        raw = invalid_utf8(self.SEED + 1, N_INVALID)
        ours = run_llm42(self.path, [as_request(b) for b in raw], "--no-special")
        replaced = [b.decode("utf-8", "replace") for b in raw]
        self.check("encode(invalid UTF-8) vs HF on bytes.decode('utf-8', 'replace')", raw, ours,
                   self.hf_encode(replaced, False))

    def decode_cases(self):
        rng = random.Random(self.SEED + 2)
        vocab = self.hf.get_vocab_size(with_added_tokens=True)
        # Tokens of one byte with the high bit set, or byte-fallback tokens: sequences of them
        # cut characters apart and make invalid UTF-8.
        partial = [i for i in range(vocab)
                   if (t := self.hf.id_to_token(i)) is not None
                   and ((len(t) == 6 and t.startswith("<0x")) or
                        (len(t) == 1 and ord(t) >= 0x80 and not t.isascii()))]
        seqs = [e for e in self.hf_encode(self.corpus[:800], True)]
        for _ in range(N_RANDOM_ID_SEQS):
            n = rng.randrange(1, 24)
            pools = [lambda: rng.randrange(vocab), lambda: rng.choice(partial),
                     lambda: rng.choice(partial), lambda: rng.choice(self.special_ids)]
            seqs.append([rng.choice(pools)() for _ in range(n)])
        # Whole characters from byte tokens, then broken ones.
        for s in ["é", "日本", "😀👍🏽", "a€b"]:
            ids = self.hf.encode(s, add_special_tokens=False).ids
            seqs += [ids, ids[:-1], ids[1:], ids + ids[:1]]
        return seqs

    def test_decode(self):
        seqs = self.decode_cases()
        for skip_special in (True, False):
            flags = ["--decode"] + (["--no-special"] if skip_special else [])
            ours = run_llm42(self.path, seqs, *flags)
            theirs = [self.hf.decode(s, skip_special_tokens=skip_special) for s in seqs]
            self.check(f"decode(skip_special_tokens={skip_special})", seqs, ours, theirs)


    def test_every_code_point(self):
        # All of Unicode in context, 96 code points per string: letters, numbers and spaces of
        # every version up to Oniguruma's must split as HF splits them.
        cps = [c for c in range(0x20, 0x110000) if not 0xD800 <= c <= 0xDFFF]
        batch = ["".join(f"{chr(c)}a {chr(c)}1'{chr(c)}s\n{chr(c)} " for c in cps[i:i + 96])
                 for i in range(0, len(cps), 96)]
        ours = run_llm42(self.path, batch, "--no-special")
        self.check("encode(every code point)", [b[:12] for b in batch], ours,
                   self.hf_encode(batch, False))

    def test_long_runs(self):
        runs = [" " * 20000, "a" * 20000, "的" * 7000, "7" * 20000, "\n" * 20000,
                " \t\n" * 7000, "😀" * 5000, " a" * 10000, "a" + "\u0301" * 5000,
                ("word " * 4000).strip(), "x" + "\r\n" * 5000]
        ours = run_llm42(self.path, runs)
        self.check("encode(long runs)", [r[:12] for r in runs], ours, self.hf_encode(runs, True))


class Llama3(HfComparison, unittest.TestCase):
    NAME = "llama3"
    SEED = 3

    def test_invalid_utf8_round_trip(self):
        # Llama 3 has no normalizer, so decode(encode(bytes)) shows the replacement rule itself.
        raw = invalid_utf8(self.SEED + 5, N_INVALID)
        ids = run_llm42(self.path, [as_request(b) for b in raw], "--no-special")
        ours = run_llm42(self.path, ids, "--decode")
        self.check("decode(encode(invalid UTF-8)) vs bytes.decode('utf-8', 'replace')", raw, ours,
                   [b.decode("utf-8", "replace") for b in raw])


class Qwen3(HfComparison, unittest.TestCase):
    NAME = "qwen3"
    SEED = 30


class Llama2(HfComparison, unittest.TestCase):
    NAME = "llama2"
    SEED = 200


class Cli(unittest.TestCase):
    """The other ways into `llm42 tokenize`: llama2.c and GGUF files, plain output, errors."""

    STORIES = os.path.join(SHARED, "models", "stories260K")

    def run_cli(self, *args):
        return subprocess.run([BIN, "--log-level", "warn", "tokenize", *args],
                              capture_output=True, timeout=120)

    def test_llama2c_and_gguf_give_run_c_ids(self):
        want = "[1,403,407,261,378]"
        p = self.run_cli("--tokenizer", os.path.join(self.STORIES, "tok512.bin"),
                         "--vocab-size", "512", "--text", "Once upon a time", "--json")
        self.assertEqual((p.returncode, p.stdout.decode().strip()), (0, want), p.stderr)
        p = self.run_cli("--tokenizer", os.path.join(self.STORIES, "stories260K-f32.gguf"),
                         "--text", "Once upon a time", "--json")
        self.assertEqual((p.returncode, p.stdout.decode().strip()), (0, want), p.stderr)
        p = self.run_cli("--tokenizer", os.path.join(self.STORIES, "tok512.bin"),
                         "--vocab-size", "512", "--decode", "--text", "1, 403 407")
        self.assertEqual(p.stdout.decode(), "<s> Once upon\n")  # as HF decode keeps specials
        p = self.run_cli("--tokenizer", os.path.join(self.STORIES, "tok512.bin"),
                         "--vocab-size", "512", "--decode", "--no-special",
                         "--text", "1, 403 407")
        self.assertEqual(p.stdout.decode(), "Once upon\n")

    def test_plain_output_and_directory(self):
        p = self.run_cli("--tokenizer", os.path.join(SHARED, "tokenizers", "llama3"),
                         "--text", "Hello world")
        self.assertEqual(p.stdout.decode(), "9906\t'Hello'\n1917\t' world'\n")

    def test_errors_exit_1_with_a_message(self):
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "in.jsonl")
            with open(bad, "w") as f:
                f.write('"fine"\n[1, 2\n')
            cases = [
                (["--tokenizer", os.path.join(self.STORIES, "tok512.bin"), "--text", "x"],
                 "--vocab-size"),
                (["--tokenizer", os.path.join(d, "nothing.json"), "--text", "x"], "nothing.json"),
                (["--tokenizer", d, "--text", "x"], "no tokenizer.json"),
                (["--tokenizer", os.path.join(SHARED, "tokenizers", "llama2"), "--input", bad,
                  "--json"], "in.jsonl:2"),
                (["--tokenizer", os.path.join(SHARED, "tokenizers", "llama2"), "--decode",
                  "--text", "1 x2"], "'x2' is not a token id"),
                (["--tokenizer", os.path.join(SHARED, "tokenizers", "llama2")], "--text or --input"),
            ]
            for args, needle in cases:
                p = self.run_cli(*args)
                self.assertEqual(p.returncode, 1, (args, p.stderr))
                self.assertIn(needle, p.stderr.decode(), args)


if __name__ == "__main__":
    unittest.main(verbosity=2)
