"""Running `llm42 tokenize` over many strings at once, for the tokenizer tests."""

import json
import os
import subprocess
import tempfile

BIN = os.environ.get("LLM42_BIN", "")


def run_llm42(path, requests, *flags):
    """One llm42 tokenize process over JSON lines; returns one parsed answer per request."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for r in requests:
            f.write(json.dumps(r) + "\n")
        name = f.name
    try:
        p = subprocess.run([BIN, "--log-level", "warn", "tokenize", "--tokenizer", path,
                            "--input", name, "--json", *flags], capture_output=True, timeout=600)
    finally:
        os.unlink(name)
    if p.returncode != 0:
        raise AssertionError(f"llm42 tokenize failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    # Not splitlines(): decoded text may hold U+2028 and other characters it splits on.
    lines = p.stdout.decode("utf-8").split("\n")[:-1]
    if len(lines) != len(requests):
        raise AssertionError(f"{len(requests)} requests but {len(lines)} answers")
    return [json.loads(x) for x in lines]
