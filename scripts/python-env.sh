#!/usr/bin/env bash
# Creates .venv with the Python packages the tests use as references and clients:
# Hugging Face tokenizers, jinja2, the official openai client, numpy and gguf (all from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import tokenizers, jinja2, openai, numpy, gguf, lm_eval" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r scripts/requirements-test.txt
fi
