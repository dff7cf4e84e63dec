#include "model/sharding.h"

#include <algorithm>

#include "util/error.h"

namespace llm42 {

Range split_range(int64_t n, int p, int r) {
  LLM42_ASSERT(p > 0 && r >= 0 && r < p, "part {} of {}", r, p);
  return Range{n * r / p, n * (r + 1) / p};
}

std::vector<int64_t> shard_leaves(int64_t k, TpShard s) {
  const int per_rank = kTreeLeaves / s.size;
  const int64_t begin = split_range(k, s.size, s.rank).begin;
  std::vector<int64_t> offsets;
  // Leaf g starts at floor(g*K/8); the end of the last leaf (g = 8) is K.
  for (int i = 0; i <= per_rank; ++i)
    offsets.push_back(k * (s.rank * per_rank + i) / kTreeLeaves - begin);
  return offsets;
}

void check_tp_size(const ModelConfig& c, int tp) {
  if (tp != 1 && tp != 2 && tp != 4 && tp != 8)
    fail("--tensor-parallel-size {} is not supported: it must be 1, 2, 4 or 8", tp);
  if (c.n_heads % tp != 0)
    fail("--tensor-parallel-size {} does not divide the model's {} query heads", tp, c.n_heads);
  if (c.n_kv_heads % tp != 0 && tp % c.n_kv_heads != 0)
    fail("--tensor-parallel-size {} and the model's {} KV heads: one must divide the other", tp,
         c.n_kv_heads);
  // Every rank needs at least one FFN column, vocabulary row and K element of each leaf.
  if (c.ffn_dim < kTreeLeaves || c.q_dim() < kTreeLeaves)
    fail("the model's FFN ({}) and attention ({}) widths must be at least {} for the canonical "
         "tree reduction",
         c.ffn_dim, c.q_dim(), kTreeLeaves);
}

ShardDims shard_dims(const ModelConfig& c, TpShard s) {
  check_tp_size(c, s.size);
  LLM42_ASSERT(s.rank >= 0 && s.rank < s.size, "rank {} of {}", s.rank, s.size);
  ShardDims d;
  d.shard = s;
  d.heads = split_range(c.n_heads, s.size, s.rank);
  if (c.n_kv_heads >= s.size) {
    d.kv_heads = split_range(c.n_kv_heads, s.size, s.rank);
  } else {
    const int64_t h = int64_t{s.rank} * c.n_kv_heads / s.size;
    d.kv_heads = Range{h, h + 1};
  }
  d.ffn = split_range(c.ffn_dim, s.size, s.rank);
  d.vocab = split_range(c.vocab_size, s.size, s.rank);
  for (int r = 0; r < s.size; ++r)
    d.max_vocab_slice = std::max(d.max_vocab_slice, split_range(c.vocab_size, s.size, r).size());
  d.o_leaves = shard_leaves(c.q_dim(), s);
  d.down_leaves = shard_leaves(c.ffn_dim, s);
  return d;
}

}  // namespace llm42
