// Host-side planning of the attention kernel (plan, then run): which work items and combines
// one pass runs. The kernels only execute the lists (backend/cuda/kernels.h). Each sequence is
// planned in its own lane (attention_schedule: a canonical pass may hold fast sequences); an
// item carries its lane in tiles_per_chunk, so one launch serves both.
//
// A sequence's query rows are packed as (token, query head of one KV head) and cut into tiles
// of kAttnRowTile rows, per KV head (fast lane, passes of prefill chunks only: of
// kAttnTallRowTile rows where that still leaves a wave of items; a tall item reads each K/V
// fragment for twice the rows). Items of few rows, whole or pieces, run narrow
// (attn_item_narrow, kernels.h), in the lane's bits. Then:
//   canonical: keys in chunks of kCanonicalChunk absolute positions, merged in increasing order.
//              A row tile runs as one item (chunks merged in the kernel) or, when the pass is
//              too small to fill the GPU, as one item per chunk plus a combine. Both give the
//              same bits, so this choice may follow the load.
//   fast:      FlashDecoding: when the pass is too small to fill the GPU, a row tile's keys are
//              cut into S near-equal pieces, S chosen from the load, plus a combine; otherwise
//              one item over all keys. Piece boundaries are not aligned: not batch-invariant.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/kernels.h"

namespace llm42::cuda {

// Positions per canonical chunk; a multiple of kAttnKeyTile. Part of the canonical value.
inline constexpr int kCanonicalChunk = 256;

// How the planner may split row tiles into pieces (tests and labs force one or the other).
enum class SplitPolicy { kAuto, kNever, kAlways };
// TallPolicy: backend/cuda/options.h.

struct AttnPlanRequest {
  Schedule schedule = Schedule::kCanonical;  // the pass's (PassSeq::fast_attention per sequence)
  SplitPolicy policy = SplitPolicy::kAuto;
  int n_heads = 0;
  int n_kv_heads = 0;
  int sm_count = 132;
  TallPolicy tall = TallPolicy::kAuto;  // kNever for captured graphs (one kernel launch)
  int64_t partial_capacity = 0;         // partial rows available in the workspace
  int head_dim_pad = 0;                 // attention_head_dim_pad: whether items may run narrow
  bool narrow = true;                   // false: every item wide (tests and labs)
  // Where every row tile is a narrow one (at most kAttnNarrowMaxRows rows, a head dim with a
  // narrow kernel) and the tiles are split, fast-lane pieces aim at one item an SM, at most,
  // instead of two an SM, at least: the narrow kernel runs with kAttnNarrowDeepStages stages,
  // one CTA an SM, where its items fit one wave. Independent of `narrow` (same pieces, same
  // bits, with narrow items off).
  bool deep_pieces = false;
};

struct AttnPlan {
  // The n_tall tall items, then the n_narrow narrow ones, then the wide ones (the order they are
  // stored in; the kernels launch narrow, tall, wide).
  std::vector<AttnWorkItem> items;
  int n_tall = 0;
  int n_narrow = 0;
  std::vector<AttnCombineItem> combines;
  int64_t partial_rows = 0;
};

AttnPlan plan_attention(const PassInput& pass, const AttnPlanRequest& req);

}  // namespace llm42::cuda
