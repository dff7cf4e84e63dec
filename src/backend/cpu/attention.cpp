#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"

namespace llm42::cpu {
namespace {

// Running softmax state: max, sum of exp(s - max), and the weighted sum of values.
struct Partial {
  float m = -INFINITY;
  float l = 0.0f;
};

inline const float* kv_row(const float* cache, const int32_t* block_table, int pos, int kv_head,
                           const AttentionGeometry& g) {
  const int64_t slot =
      static_cast<int64_t>(block_table[pos / g.block_size]) * g.block_size + pos % g.block_size;
  return cache + (slot * g.n_kv_heads + kv_head) * g.head_dim;
}

// Merges (pb, ob) into (pa, oa) in that order.
void merge(Partial& pa, float* oa, const Partial& pb, const float* ob, int d) {
  if (pb.l == 0.0f) return;
  if (pa.l == 0.0f) {
    pa = pb;
    std::copy(ob, ob + d, oa);
    return;
  }
  const float m = std::max(pa.m, pb.m);
  const float a = std::exp(pa.m - m);
  const float b = std::exp(pb.m - m);
  pa.l = pa.l * a + pb.l * b;
  pa.m = m;
  for (int i = 0; i < d; ++i) oa[i] = oa[i] * a + ob[i] * b;
}

}  // namespace

void attend_one(const float* q, const float* k_cache, const float* v_cache,
                const int32_t* block_table, int pos, int kv_head, const AttentionGeometry& g,
                int kv_splits, float* out) {
  const int d = g.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int n_keys = pos + 1;
  Partial acc;
  std::vector<float> acc_o(static_cast<size_t>(d), 0.0f);
  std::vector<float> part_o(static_cast<size_t>(d));
  if (kv_splits == 0) {
    // Canonical: per tile, scores, the tile's max, then exp-sums and value sums in key order.
    float scores[kCanonicalKeyTile];
    for (int t0 = 0; t0 < n_keys; t0 += kCanonicalKeyTile) {
      const int t1 = std::min(n_keys, t0 + kCanonicalKeyTile);
      Partial p;
      for (int j = t0; j < t1; ++j) {
        const float s = dot_f32(q, kv_row(k_cache, block_table, j, kv_head, g), d) * scale;
        scores[j - t0] = s;
        p.m = std::max(p.m, s);
      }
      std::fill(part_o.begin(), part_o.end(), 0.0f);
      for (int j = t0; j < t1; ++j) {
        const float e = std::exp(scores[j - t0] - p.m);
        p.l += e;
        const float* v = kv_row(v_cache, block_table, j, kv_head, g);
        for (int i = 0; i < d; ++i) part_o[i] += e * v[i];
      }
      merge(acc, acc_o.data(), p, part_o.data(), d);
    }
  } else {
    // Fast: S contiguous pieces, each an online softmax key by key, merged in order.
    const int splits = std::min(kv_splits, n_keys);
    for (int s = 0; s < splits; ++s) {
      const int j0 = static_cast<int>(static_cast<int64_t>(n_keys) * s / splits);
      const int j1 = static_cast<int>(static_cast<int64_t>(n_keys) * (s + 1) / splits);
      Partial p;
      std::fill(part_o.begin(), part_o.end(), 0.0f);
      for (int j = j0; j < j1; ++j) {
        const float sc = dot_f32(q, kv_row(k_cache, block_table, j, kv_head, g), d) * scale;
        const float* v = kv_row(v_cache, block_table, j, kv_head, g);
        if (sc > p.m) {
          const float a = std::exp(p.m - sc);
          p.l *= a;
          for (int i = 0; i < d; ++i) part_o[i] *= a;
          p.m = sc;
        }
        const float e = std::exp(sc - p.m);
        p.l += e;
        for (int i = 0; i < d; ++i) part_o[i] += e * v[i];
      }
      merge(acc, acc_o.data(), p, part_o.data(), d);
    }
  }
  const float inv = 1.0f / acc.l;
  for (int i = 0; i < d; ++i) out[i] = acc_o[i] * inv;
}

int fast_kv_splits(int64_t rows_times_heads, int threads) {
  // FlashDecoding's rule of thumb: split the keys when there are too few (query, head) items to
  // occupy every thread several times over.
  const int64_t want = static_cast<int64_t>(threads) * 8;
  if (rows_times_heads >= want) return 1;
  return static_cast<int>(std::min<int64_t>(8, (want + rows_times_heads - 1) / rows_times_heads));
}

}  // namespace llm42::cpu
