"""Each folder of src/ is a layer and includes only the layers below it (docs/architecture.md,
"Layers"). This reads every `#include "folder/..."` in src/ and fails naming the file, the line
and the two layers for any include that runs sideways or upward. Standard library only."""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"

# What each layer may include directly (besides itself). Keep in step with the table of
# docs/architecture.md.
ALLOWED = {
    "util": set(),
    "core": {"util"},
    "tokenizer": {"util", "core"},
    "chat": {"util", "core"},
    "backend": {"core", "util"},
    "model": {"backend", "tokenizer", "core", "util"},
    "parallel": {"model", "backend", "core", "util"},
    "engine": {"parallel", "model", "backend", "tokenizer", "core", "util"},
    "client": {"core", "util"},
    "server": {"engine", "parallel", "model", "backend", "chat", "tokenizer", "core", "util"},
    "bench": {"client", "engine", "model", "backend", "tokenizer", "core", "util"},
    "cli": None,  # the top: anything
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/')


def main() -> int:
    if not SRC.is_dir():
        print(f"skip: {SRC} not found")
        return 77
    layers = sorted(p.name for p in SRC.iterdir() if p.is_dir())
    unknown = [l for l in layers if l not in ALLOWED]
    problems = [f"src/{l}/ is not a known layer: add it to ALLOWED and docs/architecture.md"
                for l in unknown]
    checked = 0
    for layer in layers:
        allowed = ALLOWED.get(layer)
        for path in sorted((SRC / layer).rglob("*")):
            if path.suffix not in {".h", ".cpp", ".cu", ".cuh", ".inc"}:
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                checked += 1
                target = m.group(1)
                if target == layer or allowed is None:
                    continue
                if target in ALLOWED and target not in allowed:
                    problems.append(f"{path.relative_to(SRC.parent)}:{n}: {layer}/ includes "
                                    f"{target}/ ({line.strip()}), which is not below it")
    for p in problems:
        print(p)
    print(f"{checked} includes checked in {len(layers)} layers, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
