"""Writes the SmolLM2 goldens from llama.cpp (llama-cpp-python); run by make-smollm2-goldens.sh.

tokenize.json: the ids llama.cpp gives N_TEXTS strings of tokenizer_corpus.texts() with the real
  vocabulary under each pre-tokenizer of PRES (other than smollm through a vocab-only copy with
  tokenizer.ggml.pre replaced, gguf_copy.vocab_copy), special-token text parsed and BOS/EOS rules
  applied; for smollm also with special-token text taken literally. For qwen2 llama.cpp is given
  the NFC form of each string (llm42, like Qwen's own tokenizer, normalizes first; llama.cpp
  does not normalize). To keep the file small, the other pre-tokenizers list only the strings
  whose ids differ from smollm's with special-token text parsed ({"index": ids}), and so does
  smollm with it literal.
greedy.json: for each prompt (plain text, and chat messages rendered with the model's own chat
  template), its ids and N_STEPS greedy ids with llama.cpp's top-2 logit gap at each step and the
  text, on the F32 copy and on the Q4_1 file. The KV cache is F32 so that only the matmuls'
  arithmetic differs from llm42's.
"""

import argparse
import json
import os
import sys
import tempfile
import unicodedata

import jinja2.sandbox
import numpy as np
from gguf import GGUFReader
import llama_cpp
from llama_cpp import Llama
from llama_cpp._internals import LlamaModel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from gguf_copy import vocab_copy  # noqa: E402
from tokenizer_corpus import texts  # noqa: E402

SEED = 2222
N_TEXTS = 300
MAX_CHARS = 1100
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
PRES = ["smollm", "tekken", "llama-bpe", "qwen2", "gpt-2"]
NFC = {"qwen2"}
N_STEPS = 32
GGML_TYPE_F32 = 0
PLAIN = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village,",
    "1, 2, 3, 4, 5,",
]
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": "Name three primary colors."}],
]


def tokenize_goldens(q4):
    # The corpus's few very long mixtures would make the file large: at most MAX_CHARS each.
    corpus = [t for t in texts(SEED, 2 * N_TEXTS, SPECIALS) if len(t) <= MAX_CHARS][:N_TEXTS]
    out = {"seed": SEED, "texts": corpus, "pres": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRES:
            path = q4
            if pre != "smollm":
                path = os.path.join(tmp, f"vocab-{pre}.gguf")
                vocab_copy(q4, path, pre)
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            llm = LlamaModel(path_model=path, params=params, verbose=False)
            # llm42 NFC-normalizes first for qwen2, as Qwen's tokenizer.json says and llama.cpp
            # does not: llama.cpp gets the NFC text, so that its regex is what is compared.
            given = [unicodedata.normalize("NFC", t) for t in corpus] if pre in NFC else corpus
            entry = {"special": [llm.tokenize(t.encode(), True, True) for t in given],
                     "nfc_first": pre in NFC}
            if pre == "smollm":
                literal = [llm.tokenize(t.encode(), True, False) for t in corpus]
                entry["literal"] = {str(i): ids for i, ids in enumerate(literal)
                                    if ids != entry["special"][i]}
            if pre != "smollm":  # kept small: only the strings whose ids differ from smollm's
                base = out["pres"]["smollm"]["special"]
                entry["special"] = {str(i): ids for i, ids in enumerate(entry["special"])
                                    if ids != base[i]}
            out["pres"][pre] = entry
            llm.close()
    return out


def render_chat(template, messages):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def greedy(llm, prompt_ids):
    llm.reset()
    llm.eval(prompt_ids)
    ids, gaps = [], []
    for _ in range(N_STEPS):
        # The last token's logits, the only row llama.cpp computes without logits_all.
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()
        top2 = np.argsort(logits, kind="stable")[-2:]
        ids.append(int(top2[1]))
        gaps.append(float(logits[top2[1]] - logits[top2[0]]))
        llm.eval([ids[-1]])
    return ids, gaps


def text(llm, ids):
    return llm.detokenize(ids).decode("utf-8", errors="replace")


def greedy_goldens(q4, f32):
    models = {name: Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=2, seed=0,
                          type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False)
              for name, path in (("f32", f32), ("q4_1", q4))}
    template = GGUFReader(q4).fields["tokenizer.chat_template"].contents()
    prompts = [{"kind": "plain", "prompt": p} for p in PLAIN]
    prompts += [{"kind": "chat", "messages": m, "prompt": render_chat(template, m)} for m in CHATS]
    for p in prompts:
        p["prompt_ids"] = models["f32"].tokenize(p["prompt"].encode(), add_bos=True, special=True)
        for name, llm in models.items():
            ids, gaps = greedy(llm, p["prompt_ids"])
            eos = llm.token_eos()
            # What a chat answer shows: the text up to the end-of-turn token.
            answer = ids[:ids.index(eos)] if eos in ids else ids
            p[name] = {"ids": ids, "top2_gaps": [round(g, 5) for g in gaps],
                       "text": text(llm, ids), "answer": text(llm, answer)}
        print(f"{p['kind']}: {p['prompt']!r} -> {p['f32']['text']!r}", file=sys.stderr)
    return {"n_steps": N_STEPS, "kv_cache": "f32", "prompts": prompts}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--q4", required=True)
    ap.add_argument("--f32", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", choices=["tokenize", "greedy"], help="write only this golden")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    about = {"oracle": f"llama-cpp-python {llama_cpp.__version__}",
             "model": os.path.basename(a.q4)}
    makers = {"tokenize": lambda: tokenize_goldens(a.q4),
              "greedy": lambda: greedy_goldens(a.q4, a.f32)}
    for what, make in makers.items():
        if a.only and a.only != what:
            continue
        name, data = f"{what}.json", make()
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            json.dump(dict(about, **data), f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {os.path.join(a.out, name)}", file=sys.stderr)


if __name__ == "__main__":
    main()
