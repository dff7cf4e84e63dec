#include "backend/cuda/attention_plan.h"

#include <algorithm>

#include "util/error.h"

namespace llm42::cuda {
namespace {

struct RowTile {
  int seq;
  int row_begin;
  int n_rows;
  int kv_len;  // keys reached by the tile's last row
};

}  // namespace

AttnPlan plan_attention(const PassInput& pass, const AttnPlanRequest& req) {
  LLM42_ASSERT(req.n_kv_heads > 0 && req.n_heads % req.n_kv_heads == 0);
  static_assert(kCanonicalChunk % kAttnKeyTile == 0);
  const int group = req.n_heads / req.n_kv_heads;
  // Each sequence's lane: a canonical pass may run some sequences' attention fast.
  auto canonical = [&](const PassSeq& sq) {
    return attention_schedule(req.schedule, sq) == Schedule::kCanonical;
  };

  // Row tiles of every sequence: `fast_rows_per_tile` rows in the fast lane, kAttnRowTile in the
  // canonical lane.
  auto cut = [&](int fast_rows_per_tile) {
    std::vector<RowTile> tiles;
    for (int s = 0; s < static_cast<int>(pass.seqs.size()); ++s) {
      const PassSeq& sq = pass.seqs[s];
      const int rows = sq.q_len * group;
      const int rows_per_tile = canonical(sq) ? kAttnRowTile : fast_rows_per_tile;
      for (int rb = 0; rb < rows; rb += rows_per_tile) {
        const int n = std::min(rows_per_tile, rows - rb);
        const int last_token = (rb + n - 1) / group;
        tiles.push_back({s, rb, n, sq.pos_begin + last_token + 1});
      }
    }
    return tiles;
  };
  std::vector<RowTile> tiles = cut(kAttnRowTile);
  // Tall tiles (fast lane) in passes of prefill chunks only (every sequence longer than a tall
  // tile), and where they still give at least one item per SM, so that they never turn an
  // unsplit pass into a split one. A pass that also holds decode or verification rows keeps one
  // kernel launch: a build with tall items there (and attend_item refactored) ran the
  // ShareGPT-like workload 3.4 % slower (H200, 2026-12-03). Canonical sequences keep 64-row
  // tiles.
  // kMixed lifts the prefill-only condition: there the chunks' tall tiles alone must fill a
  // wave (decode rows stay one tile each, in the narrow or wide kernel).
  const bool any_fast = !std::all_of(pass.seqs.begin(), pass.seqs.end(), canonical);
  if (any_fast && req.tall != TallPolicy::kNever) {
    const bool prefill_only =
        std::all_of(pass.seqs.begin(), pass.seqs.end(),
                    [&](const PassSeq& sq) { return sq.q_len * group > kAttnTallRowTile; });
    if (req.tall == TallPolicy::kAlways || req.tall == TallPolicy::kMixed || prefill_only) {
      std::vector<RowTile> tall = cut(kAttnTallRowTile);
      // The tiles that fill the wave: all of them in a pass of prefill chunks, only the tall
      // ones beside decode rows.
      const int64_t filling =
          prefill_only ? static_cast<int64_t>(tall.size())
                       : std::count_if(tall.begin(), tall.end(),
                                       [](const RowTile& t) { return t.n_rows > kAttnRowTile; });
      if (req.tall == TallPolicy::kAlways || ((!prefill_only || tall.size() < tiles.size()) &&
                                              filling * req.n_kv_heads >= req.sm_count))
        tiles = std::move(tall);
    }
  }
  // Split keys only when the unsplit items cannot fill one wave (one per SM): splitting costs
  // partial-state traffic and a combine, and measured slower for prefill-sized passes. Pieces
  // then aim at two resident CTAs per SM (at least), or at one an SM for the deep narrow kernel
  // (at most: a second round of a few items would hold the whole pass back).
  const int64_t unsplit = static_cast<int64_t>(tiles.size()) * req.n_kv_heads;
  const bool split = req.policy == SplitPolicy::kAlways ||
                     (req.policy == SplitPolicy::kAuto && unsplit < req.sm_count);
  const bool deep = req.deep_pieces && attn_narrowable(req.head_dim_pad) &&
                    std::all_of(tiles.begin(), tiles.end(), [](const RowTile& t) {
                      return t.n_rows <= kAttnNarrowMaxRows;
                    });
  const int64_t per_tile =
      deep ? req.sm_count / std::max<int64_t>(unsplit, 1)
                      : (2LL * req.sm_count + unsplit - 1) / std::max<int64_t>(unsplit, 1);
  const int fast_pieces = static_cast<int>(std::clamp<int64_t>(per_tile, 2, 64));

  AttnPlan plan;
  for (const RowTile& t : tiles) {
    const bool canon = canonical(pass.seqs[t.seq]);
    const int tiles_per_chunk = canon ? kCanonicalChunk / kAttnKeyTile : 0;
    for (int kvh = 0; kvh < req.n_kv_heads; ++kvh) {
      int parts = 1;
      if (split) {
        if (canon) {
          parts = (t.kv_len + kCanonicalChunk - 1) / kCanonicalChunk;
        } else {
          // Pieces of at least one key tile, unless a split is forced. At batch 1 one warp of
          // the CTA has rows, so a piece's tiles run one after another: one tile each is the
          // shortest item.
          const int cap = req.policy == SplitPolicy::kAlways ? t.kv_len : t.kv_len / kAttnKeyTile;
          parts = std::min(fast_pieces, std::max(1, cap));
        }
      }
      if (parts > 1 &&
          plan.partial_rows + static_cast<int64_t>(parts) * t.n_rows > req.partial_capacity)
        parts = 1;
      const PassSeq& sq = pass.seqs[t.seq];
      auto item = [&](int k0, int k1, int32_t partial, int32_t combine) {
        return AttnWorkItem{.kv_head = kvh,
                            .row_begin = t.row_begin,
                            .n_rows = t.n_rows,
                            .key_begin = k0,
                            .key_end = k1,
                            .tiles_per_chunk = tiles_per_chunk,
                            .partial = partial,
                            .combine = combine,
                            .q_begin = sq.q_begin,
                            .block_begin = sq.block_begin};
      };
      if (parts == 1) {
        plan.items.push_back(item(0, t.kv_len, -1, -1));
        continue;
      }
      const auto base = static_cast<int32_t>(plan.partial_rows);
      const auto combine = static_cast<int32_t>(plan.combines.size());
      for (int c = 0; c < parts; ++c) {
        int k0, k1;
        if (canon) {
          k0 = c * kCanonicalChunk;
          k1 = std::min(t.kv_len, (c + 1) * kCanonicalChunk);
        } else {
          k0 = static_cast<int>(static_cast<int64_t>(t.kv_len) * c / parts);
          k1 = static_cast<int>(static_cast<int64_t>(t.kv_len) * (c + 1) / parts);
        }
        plan.items.push_back(item(k0, k1, base + c * t.n_rows, combine));
      }
      plan.combines.push_back({t.seq, kvh, t.row_begin, t.n_rows, parts, base});
      plan.partial_rows += static_cast<int64_t>(parts) * t.n_rows;
    }
  }
  // Stored tall items first, then narrow ones (each shape has a kernel of its own; the launch
  // order is another, attention.cu), then longest first within a shape, so the causal tail of a
  // prefill does not run alone at the end. Items are independent (each writes its own rows or
  // partial slots): the order changes no result.
  auto shape = [&](const AttnWorkItem& a) {
    if (a.n_rows > kAttnRowTile) return 0;
    return req.narrow && attn_item_narrow(a, req.head_dim_pad) ? 1 : 2;
  };
  std::stable_sort(plan.items.begin(), plan.items.end(),
                   [&](const AttnWorkItem& a, const AttnWorkItem& b) {
                     if (shape(a) != shape(b)) return shape(a) < shape(b);
                     return a.key_end - a.key_begin > b.key_end - b.key_begin;
                   });
  for (const AttnWorkItem& it : plan.items) {
    plan.n_tall += shape(it) == 0;
    plan.n_narrow += shape(it) == 1;
  }
  return plan;
}

}  // namespace llm42::cuda
