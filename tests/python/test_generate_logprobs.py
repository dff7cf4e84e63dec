"""`llm42 generate --logprobs`: the summary line ends with a hash of every output token's logprob
bits (`logprob hash`), which is how the GPU scripts compare logprobs, not only ids, across
tensor-parallel sizes (scripts/gpu-tp.sh). On stories260K with CPU ranks: a deterministic request
gives the same ids and the same logprob bits at TP 1, 2 and 4; without --logprobs the line has no
logprob hash; with it the hash covers the logprobs (not the hash of nothing, and not the same
at TP 2 in the fast lane, whose sums across ranks round differently).

Needs LLM42_BIN and stories260K from the shared folder (skips with a message without it).
"""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import llm42_bin, stories_model  # noqa: E402

STORIES = stories_model()  # exits 77 (skipped) without the shared data

# XXH64 of no bytes with seed 0: what an empty logprob list would hash to.
EMPTY_XXH64 = "ef46db3751d8e999"
LINE = re.compile(r"output hash ([0-9a-f]{16})(?: \| logprob hash ([0-9a-f]{16}))?$")


def summary(*args):
    r = subprocess.run([llm42_bin(), "--log-level", "warn", "generate", "--threads", "2",
                        "--model", STORIES, "--prompt-ids", "1,400,500", "-n", "40",
                        "-q", *args], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"generate {args} failed ({r.returncode}): {r.stderr}")
    last = r.stderr.strip().splitlines()[-1]
    m = LINE.search(last)
    if m is None:
        raise AssertionError(f"no output hash at the end of the summary line: {last!r}")
    return m.group(1), m.group(2)


class GenerateLogprobs(unittest.TestCase):
    def test_deterministic_logprobs_are_the_same_bits_at_every_tp_size(self):
        ids1, lp1 = summary("--deterministic", "--logprobs")
        self.assertIsNotNone(lp1)
        self.assertNotEqual(lp1, EMPTY_XXH64, "no logprob was hashed")
        for tp in ("2", "4"):
            ids, lp = summary("--deterministic", "--logprobs", "--tensor-parallel-size", tp)
            self.assertEqual(ids, ids1, f"ids at TP {tp}")
            self.assertEqual(lp, lp1, f"logprobs at TP {tp}")
        # The hash sees the logprobs' bits: the fast lane at TP 2 (a plain sum across ranks, not
        # the tree) rounds them differently, so a hash of unfilled (zero) logprobs, which would
        # match at every size, fails here.
        _, lp_off = summary("--logprobs", "--tensor-parallel-size", "2")
        self.assertNotEqual(lp_off, lp1, "the fast lane's logprobs hash like the canonical ones")

    def test_no_logprob_hash_without_the_flag(self):
        ids, lp = summary("--deterministic")
        self.assertIsNone(lp)
        self.assertEqual(ids, summary("--deterministic", "--logprobs")[0])


if __name__ == "__main__":
    unittest.main()
