// CPU attention over the paged KV cache.
#pragma once

#include <cstdint>

namespace llm42::cpu {

// Canonical key tile: keys are reduced in tiles covering absolute positions [t*T, (t+1)*T),
// combined in increasing t. The same for a query in a prefill chunk, a verification window or a
// decode step.
inline constexpr int kCanonicalKeyTile = 64;

struct AttentionGeometry {
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int block_size;
};

// One query row, one head: out (head_dim) = softmax(q . K[0..pos] * scale) V[0..pos].
//   q:           (head_dim) f32
//   k_cache/v_cache: (n_blocks, block_size, n_kv_heads, head_dim) f32
//   block_table: block ids covering positions [0, pos]
// `kv_splits` = 0 selects the canonical tiling; S > 0 the fast schedule's S contiguous pieces.
void attend_one(const float* q, const float* k_cache, const float* v_cache,
                const int32_t* block_table, int pos, int kv_head, const AttentionGeometry& g,
                int kv_splits, float* out);

// Fast-schedule split-KV count for a pass of `rows` query rows (times heads) on `threads`.
int fast_kv_splits(int64_t rows_times_heads, int threads);

}  // namespace llm42::cpu
