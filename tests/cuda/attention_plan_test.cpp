// The attention planner (host code: runs without a GPU, in CI too). Checks the plan's contract
// with the kernels (backend/cuda/kernels.h): every packed query row of every KV head is covered
// by exactly one row tile; a tile runs as one item over all its causal keys or as parts whose
// key ranges tile them in order, merged by a combine over disjoint partial rows within the
// capacity; canonical parts are 256-position chunks; each sequence is planned in its own lane
// (a canonical pass may hold fast sequences); tall items come first, are counted by n_tall, and
// appear only for fast-lane sequences, in passes of prefill chunks (TallPolicy::kMixed: also
// beside decode rows, where the chunks' tall items fill a wave); the narrow items come next,
// counted by n_narrow, and are exactly the items attn_item_narrow accepts.
#include "backend/cuda/attention_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace llm42 {
namespace {

using cuda::AttnPlan;
using cuda::AttnPlanRequest;
using cuda::AttnWorkItem;
using cuda::SplitPolicy;
using cuda::TallPolicy;

// Sequences of (context before the pass, tokens in the pass); those whose index is in `fast`
// ask for fast attention.
PassInput make_pass(const std::vector<std::pair<int, int>>& seqs, const std::set<int>& fast = {}) {
  PassInput p;
  for (auto [prefix, q_len] : seqs) {
    PassSeq s;
    s.fast_attention = fast.contains(static_cast<int>(p.seqs.size()));
    s.q_begin = static_cast<int32_t>(p.positions.size());
    s.q_len = q_len;
    s.pos_begin = prefix;
    s.block_begin = static_cast<int32_t>(p.block_tables.size());
    s.n_blocks = (prefix + q_len + 15) / 16;
    for (int b = 0; b < s.n_blocks; ++b) p.block_tables.push_back(b);
    for (int i = 0; i < q_len; ++i) p.positions.push_back(prefix + i);
    p.seqs.push_back(s);
  }
  return p;
}

AttnPlanRequest request(Schedule s, SplitPolicy split, TallPolicy tall) {
  AttnPlanRequest r;
  r.schedule = s;
  r.policy = split;
  r.tall = tall;
  r.n_heads = 32;
  r.n_kv_heads = 8;
  r.sm_count = 132;
  r.partial_capacity = 1 << 20;
  r.head_dim_pad = 128;
  return r;
}

// Checks the contract above; returns the number of tall items.
int check_plan(const PassInput& pass, const AttnPlanRequest& req, const AttnPlan& plan) {
  const int group = req.n_heads / req.n_kv_heads;
  // Each sequence's lane, by its first row.
  std::map<int, bool> canonical_at;
  for (const PassSeq& s : pass.seqs)
    canonical_at[s.q_begin] = attention_schedule(req.schedule, s) == Schedule::kCanonical;
  // Items of each row tile, by (sequence's first row, kv head, first packed row).
  std::map<std::tuple<int, int, int>, std::vector<AttnWorkItem>> tiles;
  int tall = 0, narrow = 0;
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const AttnWorkItem& it = plan.items[i];
    const bool is_tall = it.n_rows > cuda::kAttnRowTile;
    EXPECT_EQ(is_tall, static_cast<int>(i) < plan.n_tall) << "tall items first, item " << i;
    tall += is_tall;
    const bool is_narrow = req.narrow && cuda::attn_item_narrow(it, req.head_dim_pad);
    const bool in_narrow_range =
        static_cast<int>(i) >= plan.n_tall && static_cast<int>(i) < plan.n_tall + plan.n_narrow;
    EXPECT_EQ(is_narrow, in_narrow_range) << "narrow items after the tall ones, item " << i;
    narrow += is_narrow;
    EXPECT_LE(it.n_rows, cuda::kAttnTallRowTile);
    EXPECT_GT(it.n_rows, 0);
    const bool canonical = canonical_at.at(it.q_begin);
    if (is_tall) {
      EXPECT_FALSE(canonical) << "a tall item in the canonical lane";
    }
    EXPECT_EQ(it.tiles_per_chunk, canonical ? cuda::kCanonicalChunk / cuda::kAttnKeyTile : 0);
    tiles[{it.q_begin, it.kv_head, it.row_begin}].push_back(it);
  }
  EXPECT_EQ(tall, plan.n_tall);
  EXPECT_EQ(narrow, plan.n_narrow);
  std::set<int64_t> partial_rows;
  std::set<int> combines_used;
  for (const PassSeq& s : pass.seqs) {
    for (int kvh = 0; kvh < req.n_kv_heads; ++kvh) {
      int row = 0;
      while (row < s.q_len * group) {
        auto found = tiles.find({s.q_begin, kvh, row});
        if (found == tiles.end()) {
          ADD_FAILURE() << "no tile at packed row " << row << " of the sequence at " << s.q_begin;
          break;
        }
        std::vector<AttnWorkItem> parts = found->second;
        std::sort(parts.begin(), parts.end(), [](const AttnWorkItem& a, const AttnWorkItem& b) {
          return a.key_begin < b.key_begin;
        });
        const int n_rows = parts.front().n_rows;
        const int kv_len = s.pos_begin + (row + n_rows - 1) / group + 1;  // the last row's limit
        int key = 0;
        for (const AttnWorkItem& it : parts) {
          EXPECT_EQ(it.n_rows, n_rows);
          EXPECT_EQ(it.block_begin, s.block_begin);
          EXPECT_EQ(it.key_begin, key) << "parts must tile the keys in order";
          EXPECT_GT(it.key_end, it.key_begin);
          if (canonical_at.at(s.q_begin) && parts.size() > 1) {
            EXPECT_EQ(it.key_begin % cuda::kCanonicalChunk, 0);
          }
          key = it.key_end;
          if (parts.size() == 1) {
            EXPECT_LT(it.partial, 0);
            EXPECT_LT(it.combine, 0);
          } else {
            EXPECT_GE(it.partial, 0);
            EXPECT_GE(it.combine, 0);
            for (int r = 0; r < n_rows; ++r)
              EXPECT_TRUE(partial_rows.insert(it.partial + r).second) << "partial rows overlap";
            combines_used.insert(it.combine);
          }
        }
        EXPECT_EQ(key, kv_len) << "keys up to the tile's last causal limit";
        if (parts.size() > 1) {
          const cuda::AttnCombineItem& c = plan.combines.at(parts.front().combine);
          EXPECT_EQ(c.n_parts, static_cast<int>(parts.size()));
          EXPECT_EQ(c.n_rows, n_rows);
          EXPECT_EQ(c.row_begin, row);
          EXPECT_EQ(c.kv_head, kvh);
        }
        tiles.erase(found);
        row += n_rows;
      }
    }
  }
  EXPECT_TRUE(tiles.empty()) << tiles.size() << " row tiles belong to no sequence row";
  EXPECT_EQ(combines_used.size(), plan.combines.size());
  EXPECT_LE(static_cast<int64_t>(partial_rows.size()), req.partial_capacity);
  EXPECT_EQ(static_cast<int64_t>(partial_rows.size()), plan.partial_rows);
  return tall;
}

TEST(AttentionPlan, EveryRowOnceOverItsCausalKeysInEveryForm) {
  const std::vector<std::vector<std::pair<int, int>>> passes = {
      {{0, 4096}},                             // a long prefill
      {{0, 70}, {100, 37}, {0, 1}, {700, 1}},  // chunks and decode rows
      {{520, 16}, {300, 290}, {3000, 1}},      // a verification window, a chunk, a decode
      {{0, 1}},                                // batch 1
      {{1000, 600}, {2000, 33}},               // chunks after a prefix, one just over a tall tile
  };
  for (const auto& spec : passes) {
    for (const std::set<int>& fast : {std::set<int>{}, std::set<int>{0}, std::set<int>{1, 2}}) {
      const PassInput pass = make_pass(spec, fast);
      for (Schedule s : {Schedule::kCanonical, Schedule::kFast})
        for (SplitPolicy split : {SplitPolicy::kAuto, SplitPolicy::kNever, SplitPolicy::kAlways})
          for (TallPolicy tall :
               {TallPolicy::kAuto, TallPolicy::kMixed, TallPolicy::kNever, TallPolicy::kAlways}) {
            SCOPED_TRACE(testing::Message()
                         << "pass of " << spec.size() << " sequences, " << schedule_name(s)
                         << ", split " << static_cast<int>(split) << ", tall "
                         << static_cast<int>(tall));
            AttnPlanRequest req = request(s, split, tall);
            check_plan(pass, req, cuda::plan_attention(pass, req));
            req.narrow = false;
            EXPECT_EQ(cuda::plan_attention(pass, req).n_narrow, 0);
            check_plan(pass, req, cuda::plan_attention(pass, req));
          }
    }
  }
}

TEST(AttentionPlan, EachSequenceInItsOwnLane) {
  // A canonical pass of two long prefill chunks, the second asking for fast attention: only the
  // second is cut into tall tiles, and only the first's items merge 256-key chunks.
  const PassInput pass = make_pass({{0, 4096}, {0, 4096}}, {1});
  const AttnPlanRequest req = request(Schedule::kCanonical, SplitPolicy::kAuto, TallPolicy::kAuto);
  const AttnPlan plan = cuda::plan_attention(pass, req);
  EXPECT_EQ(check_plan(pass, req, plan), 128 * 8);
  int canonical_items = 0, fast_items = 0;
  for (const AttnWorkItem& it : plan.items) {
    (it.q_begin == 0 ? canonical_items : fast_items) += 1;
    EXPECT_EQ(it.tiles_per_chunk, it.q_begin == 0 ? cuda::kCanonicalChunk / cuda::kAttnKeyTile : 0);
  }
  EXPECT_EQ(canonical_items, 256 * 8);
  EXPECT_EQ(fast_items, 128 * 8);
  // A small decode pass, split: canonical rows in 256-key chunks, fast rows in load-chosen pieces.
  const PassInput decode = make_pass({{1000, 1}, {1000, 1}}, {1});
  const AttnPlan small = cuda::plan_attention(decode, req);
  check_plan(decode, req, small);
  std::vector<int> canonical_parts, fast_parts;
  for (const AttnWorkItem& it : small.items)
    if (it.kv_head == 0) (it.q_begin == 0 ? canonical_parts : fast_parts).push_back(it.key_end);
  std::sort(canonical_parts.begin(), canonical_parts.end());
  EXPECT_EQ(canonical_parts, (std::vector<int>{256, 512, 768, 1001}));
  EXPECT_GT(fast_parts.size(), 4u);
  // In a fast pass the flag changes nothing.
  const PassInput all_fast = make_pass({{1000, 1}, {1000, 1}});
  const AttnPlanRequest fast = request(Schedule::kFast, SplitPolicy::kAuto, TallPolicy::kAuto);
  const AttnPlan a = cuda::plan_attention(decode, fast), b = cuda::plan_attention(all_fast, fast);
  ASSERT_EQ(a.items.size(), b.items.size());
  for (size_t i = 0; i < a.items.size(); ++i) {
    EXPECT_EQ(a.items[i].key_begin, b.items[i].key_begin);
    EXPECT_EQ(a.items[i].key_end, b.items[i].key_end);
    EXPECT_EQ(a.items[i].tiles_per_chunk, 0);
  }
}

TEST(AttentionPlan, TallItemsOnlyInTheFastLanesPrefillPasses) {
  auto n_tall = [](const std::vector<std::pair<int, int>>& spec, Schedule s, TallPolicy t) {
    const PassInput pass = make_pass(spec);
    const AttnPlanRequest req = request(s, SplitPolicy::kAuto, t);
    return check_plan(pass, req, cuda::plan_attention(pass, req));
  };
  // 4,096 tokens x 4 heads = 128 tall tiles a KV head: all tall.
  EXPECT_EQ(n_tall({{0, 4096}}, Schedule::kFast, TallPolicy::kAuto), 128 * 8);
  // The same chunk beside a decode row: one launch, no tall items.
  EXPECT_EQ(n_tall({{0, 4096}, {500, 1}}, Schedule::kFast, TallPolicy::kAuto), 0);
  // Or beside a sequence of 32 tokens (128 rows: not longer than a tall tile).
  EXPECT_EQ(n_tall({{0, 4096}, {500, 32}}, Schedule::kFast, TallPolicy::kAuto), 0);
  EXPECT_GT(n_tall({{0, 4096}, {500, 33}}, Schedule::kFast, TallPolicy::kAuto), 0);
  // 512 tokens: 16 tall tiles x 8 KV heads, fewer than one item per SM: wide tiles stay.
  EXPECT_EQ(n_tall({{0, 512}}, Schedule::kFast, TallPolicy::kAuto), 0);
  EXPECT_EQ(n_tall({{0, 4096}}, Schedule::kFast, TallPolicy::kNever), 0);
  EXPECT_EQ(n_tall({{0, 4096}}, Schedule::kCanonical, TallPolicy::kAuto), 0);
  EXPECT_EQ(n_tall({{0, 4096}}, Schedule::kCanonical, TallPolicy::kAlways), 0);
  // Forced: the 70-token chunk's 280 rows are 128 + 128 + 24 (the last tile wide).
  EXPECT_EQ(n_tall({{0, 70}}, Schedule::kFast, TallPolicy::kAlways), 2 * 8);
}

TEST(AttentionPlan, TallItemsBesideDecodeRowsOnlyInMixedWhereTheChunksFillAWave) {
  auto n_tall = [](const std::vector<std::pair<int, int>>& spec, Schedule s, TallPolicy t) {
    const PassInput pass = make_pass(spec);
    const AttnPlanRequest req = request(s, SplitPolicy::kAuto, t);
    return check_plan(pass, req, cuda::plan_attention(pass, req));
  };
  // An ArXiv-like step: two 512-token chunks at long prefixes (16 tall tiles each a KV head)
  // next to decode rows. Auto keeps one launch; mixed cuts the chunks tall (the decode rows
  // stay one tile each, not tall).
  const std::vector<std::pair<int, int>> step = {{4096, 512}, {2048, 512}, {500, 1}, {6000, 1}};
  EXPECT_EQ(n_tall(step, Schedule::kFast, TallPolicy::kAuto), 0);
  EXPECT_EQ(n_tall(step, Schedule::kFast, TallPolicy::kMixed), 2 * 16 * 8);
  // One such chunk: 128 tall items, fewer than one per SM: wide tiles stay.
  EXPECT_EQ(n_tall({{4096, 512}, {500, 1}}, Schedule::kFast, TallPolicy::kMixed), 0);
  // Passes of prefill chunks only: as auto.
  EXPECT_EQ(n_tall({{0, 4096}}, Schedule::kFast, TallPolicy::kMixed), 128 * 8);
  EXPECT_EQ(n_tall({{0, 512}}, Schedule::kFast, TallPolicy::kMixed), 0);
  // Never in the canonical lane.
  EXPECT_EQ(n_tall(step, Schedule::kCanonical, TallPolicy::kMixed), 0);
}

TEST(AttentionPlan, NarrowItemsAreItemsOfFewRowsWholeOrInPieces) {
  auto plan_of = [](const std::vector<std::pair<int, int>>& spec, Schedule s, SplitPolicy split,
                    int head_dim_pad = 128) {
    const PassInput pass = make_pass(spec);
    AttnPlanRequest req = request(s, split, TallPolicy::kAuto);
    req.head_dim_pad = head_dim_pad;
    const AttnPlan plan = cuda::plan_attention(pass, req);
    check_plan(pass, req, plan);
    return plan;
  };
  auto n_narrow = [&](const std::vector<std::pair<int, int>>& spec, Schedule s, SplitPolicy split,
                      int head_dim_pad = 128) {
    return plan_of(spec, s, split, head_dim_pad).n_narrow;
  };
  // A full decode batch: every item narrow, in both lanes.
  const std::vector<std::pair<int, int>> batch(256, {512, 1});
  EXPECT_EQ(n_narrow(batch, Schedule::kFast, SplitPolicy::kAuto), 256 * 8);
  EXPECT_EQ(n_narrow(batch, Schedule::kCanonical, SplitPolicy::kAuto), 256 * 8);
  // Of any length.
  const std::vector<std::pair<int, int>> short_batch(256, {100, 1});
  EXPECT_EQ(n_narrow(short_batch, Schedule::kFast, SplitPolicy::kAuto), 256 * 8);
  // Too few for a wave unsplit: split into pieces, every piece narrow (the narrow kernel runs
  // the combines too).
  for (Schedule s : {Schedule::kFast, Schedule::kCanonical}) {
    for (const auto& spec : {std::vector<std::pair<int, int>>(16, {1000, 1}),
                             std::vector<std::pair<int, int>>{{3000, 1}}}) {
      const AttnPlan plan = plan_of(spec, s, SplitPolicy::kAuto);
      EXPECT_GT(plan.combines.size(), 0u) << schedule_name(s);
      EXPECT_EQ(plan.n_narrow, static_cast<int>(plan.items.size())) << schedule_name(s);
    }
  }
  const AttnPlan forced = plan_of(batch, Schedule::kCanonical, SplitPolicy::kAlways);
  EXPECT_EQ(forced.n_narrow, static_cast<int>(forced.items.size()));
  EXPECT_EQ(n_narrow({{3000, 1}}, Schedule::kCanonical, SplitPolicy::kNever), 8);
  // A verification window of 4 tokens (16 rows) narrow, whole or in pieces; of 5 (20 rows) wide.
  EXPECT_EQ(n_narrow({{3000, 4}}, Schedule::kCanonical, SplitPolicy::kNever), 8);
  EXPECT_EQ(n_narrow({{3000, 4}}, Schedule::kCanonical, SplitPolicy::kAlways), 12 * 8);
  EXPECT_EQ(n_narrow({{3000, 5}}, Schedule::kCanonical, SplitPolicy::kNever), 0);
  EXPECT_EQ(n_narrow({{3000, 5}}, Schedule::kCanonical, SplitPolicy::kAlways), 0);
  // Head dims padded below 64 have no narrow kernel.
  EXPECT_EQ(n_narrow(batch, Schedule::kFast, SplitPolicy::kAuto, 32), 0);
  EXPECT_EQ(n_narrow({{3000, 1}}, Schedule::kFast, SplitPolicy::kAuto, 32), 0);
  EXPECT_EQ(n_narrow(batch, Schedule::kFast, SplitPolicy::kAuto, 64), 256 * 8);
}

// With the deep narrow kernel (one CTA an SM) the fast lane's pieces aim at one item an SM, at
// most, instead of two at least; the canonical lane's pieces are its chunks either way.
TEST(AttentionPlan, DeepNarrowPiecesFillOneWave) {
  auto items = [](int kv_len, int n_seqs, Schedule s, bool deep) {
    const PassInput pass = make_pass(std::vector<std::pair<int, int>>(n_seqs, {kv_len, 1}));
    AttnPlanRequest req = request(s, SplitPolicy::kAuto, TallPolicy::kAuto);
    req.deep_pieces = deep;
    const AttnPlan plan = cuda::plan_attention(pass, req);
    check_plan(pass, req, plan);
    EXPECT_EQ(plan.n_narrow, static_cast<int>(plan.items.size()));
    return static_cast<int>(plan.items.size());
  };
  // Batch 1, 8 KV heads: 16 pieces a head at 132 SMs (two a head: at least 264 items without).
  EXPECT_EQ(items(4096, 1, Schedule::kFast, true), 16 * 8);
  EXPECT_EQ(items(4096, 1, Schedule::kFast, false), 33 * 8);
  // Capped at one key tile a piece.
  EXPECT_EQ(items(1024, 1, Schedule::kFast, true), 16 * 8);
  EXPECT_EQ(items(300, 1, Schedule::kFast, true), 4 * 8);
  // At least two pieces.
  EXPECT_EQ(items(4096, 16, Schedule::kFast, true), 16 * 8 * 2);
  // Canonical: one piece a chunk of kCanonicalChunk positions, deep or not.
  EXPECT_EQ(items(1023, 1, Schedule::kCanonical, true), 4 * 8);
  EXPECT_EQ(items(1023, 1, Schedule::kCanonical, false), 4 * 8);
  EXPECT_EQ(items(1024, 1, Schedule::kCanonical, true), 5 * 8);
  // Not where a tile has more rows than a narrow item (a window of 5 tokens: 20 rows) or the
  // head dim has no narrow kernel: two pieces an SM, at least, as for the wide kernel.
  auto wide_items = [](int q_len, int head_dim_pad) {
    const PassInput pass = make_pass({{4096, q_len}});
    AttnPlanRequest req = request(Schedule::kFast, SplitPolicy::kAuto, TallPolicy::kAuto);
    req.head_dim_pad = head_dim_pad;
    req.deep_pieces = true;
    const AttnPlan plan = cuda::plan_attention(pass, req);
    check_plan(pass, req, plan);
    return static_cast<int>(plan.items.size());
  };
  EXPECT_EQ(wide_items(5, 128), 33 * 8);
  EXPECT_EQ(wide_items(1, 32), 33 * 8);
}

}  // namespace
}  // namespace llm42
