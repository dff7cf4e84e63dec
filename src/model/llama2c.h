// llama2.c checkpoints (karpathy/llama2.c, the legacy format `run.c` reads): a header of 7 int32
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size
// means an untied classifier is stored at the end), then fp32 tensors in this order, each stacked
// over the L layers:
//   token_embedding (vocab, dim)
//   rms_att (L, dim)
//   wq (L, n_heads * head_size, dim), wk and wv (L, n_kv_heads * head_size, dim)
//   wo (L, dim, n_heads * head_size)
//   rms_ffn (L, dim)
//   w1 (L, hidden_dim, dim), w2 (L, dim, hidden_dim), w3 (L, hidden_dim, dim)
//   rms_final (dim)
//   freq_cis_real, freq_cis_imag (seq_len * head_size / 2 each; unused, RoPE is recomputed)
//   wcls (vocab, dim) when untied.
// Q and K rows are in Meta's layout: RoPE rotates adjacent pairs.
#pragma once

#include <string>

#include "model/checkpoint.h"

namespace llm42 {

// Loads a llama2.c file. Tensors get Hugging Face names (w1 -> mlp.gate_proj, w3 -> mlp.up_proj,
// w2 -> mlp.down_proj), one view per layer into the stacked arrays; config: rope_layout
// kInterleaved, rms eps 1e-5, theta 10000, BOS 1, EOS 2. The file size must be the header plus
// the tensors, with or without the RoPE tables when tied; a short file is an error naming the
// first tensor that runs past its end, with offsets.
Checkpoint load_llama2c(const std::string& path);

}  // namespace llm42
