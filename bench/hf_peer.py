#!/usr/bin/env python3
"""The peer run: Hugging Face transformers (PyTorch, bf16, KV cache) generating with a
Llama-3.1-8B-shaped model of random weights, greedy, B prompts of IN random tokens and OUT new
tokens each, timed from the call to generate() to its return (prefill included). Eager by
default; --compile is the setup a user after speed would pick: a static KV cache and the
model's forward under torch.compile (CUDA graphs: generate()'s own compilation where transformers
has it, else forward wrapped in mode reduce-overhead), warmed up at each batch size with the
timed call's exact shapes so that no compilation is timed. llm42's counterpart is
`llm42 bench --workload fixed:IN,OUT --num-prompts B --max-num-seqs B`. Prints a table and
writes JSON.

    python3 bench/hf_peer.py --batches 1,8,32 --in-len 128 --out-len 128 [--compile] --json hf.json
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--in-len", type=int, default=128)
    ap.add_argument("--out-len", type=int, default=128)
    ap.add_argument("--compile", action="store_true",
                    help="static KV cache + torch.compile(mode='reduce-overhead')")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    import transformers
    setup = "eager"
    if args.compile:
        model.generation_config.cache_implementation = "static"
        if hasattr(model.generation_config, "compile_config"):
            # Recent transformers compile the decoding forward of a static-cache generate()
            # themselves (CUDA graphs included); wrapping forward again breaks their graphs.
            setup = "static cache, generate()'s own torch.compile"
        else:
            setup = "static cache + torch.compile(reduce-overhead)"
            model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    rows = []
    for b in [int(x) for x in args.batches.split(",")]:
        ids = torch.randint(3, cfg.vocab_size, (b, args.in_len), device="cuda")
        kw = dict(max_new_tokens=args.out_len, min_new_tokens=args.out_len, do_sample=False,
                  pad_token_id=0, attention_mask=torch.ones_like(ids))
        with torch.no_grad():
            if args.compile:  # compile for this batch's shapes (prefill, decode, cache length)
                for _ in range(2):
                    model.generate(ids, **kw)
            else:
                model.generate(ids, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(ids, **kw)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        new = (out.shape[1] - args.in_len) * b
        rows.append({"batch": b, "in": args.in_len, "out": args.out_len, "seconds": dt,
                     "output_tok_s": new / dt})
        print(f"hf transformers {transformers.__version__} ({setup}) batch {b:4d}: {new} tokens "
              f"in {dt:.2f} s = {new / dt:.1f} output tok/s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peer": f"transformers {transformers.__version__}", "setup": setup,
                       "torch": torch.__version__, "runs": rows}, f, indent=2)


if __name__ == "__main__":
    main()
