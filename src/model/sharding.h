// How a model is cut across tensor-parallel ranks (DESIGN.md §7), and the leaves of the
// canonical lane's row-parallel reduction (DESIGN.md §2).
//
// Megatron-style: q/k/v by heads and gate/up by FFN columns (column-parallel: each rank holds
// whole output rows of the weight); o and down by their K dimension (row-parallel: each rank
// holds a slice of K and produces a partial sum that the ranks exchange); the embedding and the
// LM head by vocabulary rows. Norm weights and biases of the row-parallel layers (none in the
// supported architectures) are replicated. KV heads are split across ranks, and replicated where
// the TP size exceeds their count (rank r then holds KV head r * n_kv_heads / tp).
//
// Every split of n items into p parts gives part r the items [floor(r*n/p), floor((r+1)*n/p)).
// The canonical leaves follow the same rule: the K of a row-parallel layer is cut into
// kTreeLeaves = 8 leaves, leaf i covering [floor(i*K/8), floor((i+1)*K/8)), a function of K alone
// (stories260K's FFN of 172 gives leaves of 21 or 22). Rank r of tp holds leaves
// [r*8/tp, (r+1)*8/tp), which are exactly its K slice [floor(r*K/tp), floor((r+1)*K/tp)).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace llm42 {

// The largest supported TP size, and the number of leaves of every row-parallel reduction.
inline constexpr int kTreeLeaves = 8;

// Rank `rank` of a tensor-parallel group of `size` ranks.
struct TpShard {
  int rank = 0;
  int size = 1;
};

struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// Part r of n items split into p parts: [floor(r*n/p), floor((r+1)*n/p)).
Range split_range(int64_t n, int p, int r);

// The leaf boundaries of a row-parallel reduction over K that rank `s` holds, relative to the
// start of its K slice: kTreeLeaves / s.size + 1 ascending offsets, first 0, last the slice size.
std::vector<int64_t> shard_leaves(int64_t k, TpShard s);

// Throws naming the numbers unless `tp` is 1, 2, 4 or 8 and divides the model's query heads,
// and its KV heads either divide by it or divide it.
void check_tp_size(const ModelConfig& c, int tp);

// What rank s.rank of s.size holds of the model with config `c`.
struct ShardDims {
  TpShard shard;
  Range heads;     // query heads
  Range kv_heads;  // key/value heads (one, shared with other ranks, where tp > n_kv_heads)
  Range ffn;       // FFN columns (gate/up rows, down's K)
  Range vocab;     // embedding and LM head rows
  std::vector<int64_t> o_leaves;     // shard_leaves(q_dim, shard)
  std::vector<int64_t> down_leaves;  // shard_leaves(ffn_dim, shard)

  int n_heads() const { return static_cast<int>(heads.size()); }
  int n_kv_heads() const { return static_cast<int>(kv_heads.size()); }
  int ffn_dim() const { return static_cast<int>(ffn.size()); }
  // The largest vocabulary slice of any rank (the LM head's exchange is padded to it).
  int64_t max_vocab_slice = 0;
};

// Checks the TP size (check_tp_size) and returns rank s's part.
ShardDims shard_dims(const ModelConfig& c, TpShard s);

}  // namespace llm42
