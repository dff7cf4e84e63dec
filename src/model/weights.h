// The model's weights on a backend, in the layout the kernels use: q/k/v projections stacked
// into one matrix and gate/up into another, so each layer runs two GEMMs fewer.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/sharding.h"

namespace llm42 {

// Shapes are a rank's (ShardDims; the whole model's at TP 1): q_dim, kv_dim and ffn_dim below
// are its heads' and FFN columns' widths, vocab its vocabulary slice.
struct LayerWeights {
  Tensor attn_norm;  // (dim) f32
  Tensor wqkv;       // (q_dim + 2 * kv_dim, dim): q rows, then k rows, then v rows
  Tensor bqkv;       // (q_dim + 2 * kv_dim) f32, Qwen2 only
  Tensor q_norm;     // (head_dim) f32, Qwen3 only
  Tensor k_norm;     // (head_dim) f32, Qwen3 only
  Tensor wo;         // (dim, q_dim): the columns of this rank's heads
  Tensor ffn_norm;   // (dim) f32
  Tensor w_gate_up;  // (2 * ffn_dim, dim): gate rows, then up rows
  Tensor w_down;     // (dim, ffn_dim): the columns of this rank's FFN slice
};

struct ModelWeights {
  ModelConfig config;         // the whole model's
  ShardDims dims;             // what of it these weights are (all of it at TP 1)
  DType dtype = DType::kF32;  // of the matrices
  Tensor embedding;           // (vocab, dim)
  std::vector<LayerWeights> layers;
  Tensor final_norm;  // (dim) f32
  Tensor lm_head;     // (vocab, dim); the embedding itself when tied
  std::vector<Buffer> storage;
  // Of the whole checkpoint's tensor bytes (Checkpoint::content_hash), or the dummy seed, for
  // fingerprints: the same for every rank and TP size.
  uint64_t content_hash = 0;

  size_t bytes() const;
  // What one decode step reads: every weight except the embedding table, of which it reads
  // only the rows of its tokens (unless the table is also the LM head).
  size_t bytes_per_decode_step() const;
};

// Copies (and converts) rank `shard`'s part of a checkpoint's tensors onto the backend, reading
// only those bytes of the mapped files. Matrices are stored in `dtype`.
ModelWeights load_weights(Backend& backend, const Checkpoint& ckpt, DType dtype,
                          TpShard shard = {});

// Dummy weights at the config's real shape, drawn on the backend from `seed` (like vLLM's
// --load-format dummy): matrices N(0, 1/in_features), norm weights 1 + 0.1 N(0,1), biases
// 0.1 N(0,1). Deterministic: the same seed gives the same weights on a backend, and every
// rank's shard holds the values of the same elements of the whole model (RandomWindow), so the
// model is the same at every TP size.
ModelWeights dummy_weights(Backend& backend, const ModelConfig& config, DType dtype,
                           uint64_t seed, TpShard shard = {});

}  // namespace llm42
