"""gguf_to_f32.py SRC DST: DST is SRC with every tensor dequantized to F32 by the `gguf` package."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from gguf_copy import f32_copy  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: gguf_to_f32.py SRC DST")
    f32_copy(sys.argv[1], sys.argv[2])
