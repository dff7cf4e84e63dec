"""llm42's GGUF dequantizers (src/model/gguf_quant.cpp) against the `gguf` package's
(gguf.quants.dequantize, the reference), bit for bit, for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to
Q6_K on:
  - real tensors: SmolLM2-135M-Instruct's own Q4_1 and Q8_0 tensors, and some of its tensors
    requantized by `gguf` to Q4_0, Q5_0, Q5_1 (the K-quants have no Python quantizer);
  - synthetic blocks: random bytes with ordinary f16 scales, and every scale field set to each
    extreme f16 value (+-0, smallest and largest subnormal, smallest normal, 65504, +-inf, quiet
    and signalling NaN with payloads) with all-zero, all-0xFF and random quants.
NaN payloads are compared too: IEEE leaves them to the hardware, but both sides run on the same
CPU and propagate the one NaN operand of each product, so they agree.

Each case goes through the dequantize_blocks tool (LLM42_DEQUANTIZE). Without the tool it exits
77 (skipped); without SmolLM2 (no PyPI) the real-tensor test is skipped with a message.
"""

import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import SKIP, find_smollm2  # noqa: E402

TOOL = os.environ.get("LLM42_DEQUANTIZE", "")
TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]

# Byte offsets of each format's f16 scale fields inside a block.
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
EXTREME_F16 = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
               0x7E00, 0xFE01, 0x7C01, 0x7D55, 0x3C00]


def run_tool(qtype, blocks):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in"), os.path.join(d, "out")
        blocks.tofile(src)
        subprocess.run([TOOL, str(int(qtype)), src, dst], check=True)
        return np.fromfile(dst, dtype=np.float32)


def reference(qtype, blocks):
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 and inf - inf are the point
        return dequantize(blocks, qtype).reshape(-1).astype(np.float32)


class Dequantize(unittest.TestCase):
    def check(self, qtype, blocks, what):
        blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
        want = reference(qtype, blocks).view(np.uint32)
        got = run_tool(qtype, blocks).view(np.uint32)
        self.assertEqual(got.shape, want.shape, f"{qtype.name} {what}")
        bad = np.nonzero(got != want)[0]
        if bad.size:
            block_size = GGML_QUANT_SIZES[qtype][0]
            i = bad[0]
            self.fail(f"{qtype.name} {what}: {bad.size} values differ; first at value {i} "
                      f"(block {i // block_size}): llm42 {got[i]:#010x} gguf {want[i]:#010x}")

    def test_random_blocks(self):
        rng = np.random.default_rng(42)
        for qtype in TYPES:
            _, size = GGML_QUANT_SIZES[qtype]
            blocks = rng.integers(0, 256, size=(512, size), dtype=np.uint8)
            for at in SCALE_FIELDS[qtype]:  # ordinary scales: |x| in [2^-14, 2)
                scales = (rng.standard_normal(512) * 0.05).astype(np.float16)
                blocks[:, at:at + 2] = scales.view(np.uint8).reshape(512, 2)
            self.check(qtype, blocks, "random blocks")

    def test_extreme_scales(self):
        rng = np.random.default_rng(7)
        for qtype in TYPES:
            _, size = GGML_QUANT_SIZES[qtype]
            rows = []
            for fill in ("zero", "ones", "random"):
                for scale in EXTREME_F16:
                    for field in range(len(SCALE_FIELDS[qtype]) + 1):  # one field, or all
                        if fill == "zero":
                            b = np.zeros(size, dtype=np.uint8)
                        elif fill == "ones":
                            b = np.full(size, 0xFF, dtype=np.uint8)
                        else:
                            b = rng.integers(0, 256, size=size, dtype=np.uint8)
                        fields = SCALE_FIELDS[qtype]
                        for at in (fields if field == len(fields) else [fields[field]]):
                            b[at:at + 2] = np.array([scale], dtype=np.uint16).view(np.uint8)
                        rows.append(b)
            self.check(qtype, np.stack(rows), "extreme scales")

    def test_real_tensors(self):
        path, why = find_smollm2()
        if path is None:
            self.skipTest(why)
        reader = GGUFReader(path)
        seen = set()
        for t in reader.tensors:
            if t.tensor_type in (T.Q4_1, T.Q8_0) and (t.tensor_type not in seen
                                                      or t.name.startswith("blk.29.")):
                seen.add(t.tensor_type)
                self.check(t.tensor_type, np.asarray(t.data).reshape(-1, GGML_QUANT_SIZES[
                    t.tensor_type][1]), t.name)
        self.assertEqual(seen, {T.Q4_1, T.Q8_0})
        # Real weights requantized into the formats that have a Python quantizer.
        weights = {t.name: t for t in reader.tensors}
        w = dequantize(np.asarray(weights["blk.3.attn_q.weight"].data), T.Q4_1)
        for qtype in (T.Q4_0, T.Q5_0, T.Q5_1, T.Q8_0):
            q = quantize(w, qtype)
            self.check(qtype, q.reshape(-1, GGML_QUANT_SIZES[qtype][1]),
                       "blk.3.attn_q.weight requantized")


if __name__ == "__main__":
    if not TOOL or not os.path.exists(TOOL):
        print("skipped: LLM42_DEQUANTIZE does not name the dequantize_blocks tool")
        sys.exit(SKIP)
    unittest.main()
