// The verifier: decode-verify-rollback (DESIGN.md §3), both ends of it.
//
//   before a pass: the rules the scheduler obeys when it hands out DVR's work (when a window is
//                  ready, what a window costs, fixed-shape prefill, prefix-cache reuse), and
//                  assign_lanes(): the lane of every piece of work and the passes, per mode
//                  (off, dvr invariant, dvr fixed-shape, global);
//   after a pass:  apply(): commit (prefill's token 0, non-speculative and canonical decode
//                  rows), keep speculative tokens, verify a window and roll back, move the
//                  canonical frontier, and publish what the prefix cache may share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/block_manager.h"
#include "engine/engine_config.h"
#include "engine/pass_plan.h"
#include "engine/sequence.h"

namespace llm42 {

// --- The rules for handing out work (used by the Scheduler).

// True when a speculative sequence's tail must be verified before it decodes on: k reached the
// window, or a speculative token finishes it.
bool ready_to_verify(const EngineConfig& config, const Sequence& seq);
// Fixed-shape: a deterministic prefill runs in a pass of its own, chunked by prefill_chunk
// alone so that its passes do not depend on load (it waits for budget instead).
bool isolated_prefill(const EngineConfig& config, const Sequence& seq);
// The tokens the verification window numbered `n` in this step (0-based) of k tokens takes from
// the step's budget: k, or under fixed-shape a whole padded group (G x W) for the first window
// of each group and nothing for the others.
int window_cost(const EngineConfig& config, int n, int k);
// Whether seq may reuse, and publish, prefix-cache blocks (not fixed-shape deterministic ones).
bool uses_prefix_cache(const EngineConfig& config, const Sequence& seq);
// Whether seq's fast-lane KV may be shared through the prefix cache (fast-lane blocks): in dvr
// mode, for a request that needs no canonical values (it never rolls back).
inline bool shares_fast_kv(DeterminismMode mode, const Sequence& seq) {
  return mode == DeterminismMode::kDvr && !seq.speculative;
}

// --- The commit decision of one window (steps 4-5).

struct VerifyOptions {
  double inject_mismatch_rate = 0.0;  // force a mismatch in this fraction of windows
  int inject_position = -1;           // at this window index (clamped); -1 = random
  bool no_rollback = false;           // accept every speculative token (overhead measurement)
};

struct VerifyDecision {
  int n_match = 0;         // m: speculative tokens confirmed before the first mismatch
  bool mismatch = false;   // a (real or injected) mismatch at position m
  bool injected = false;   // the mismatch at m was forced by fault injection
};

// Decides the commit for one window. `predict(i)` returns the canonical token at window
// position i (called in order, only as far as needed). The injected mismatch position is a
// function of (seed, window_position) only, so injection never makes outputs depend on load.
template <typename Predict>
VerifyDecision decide_commit(const std::vector<int32_t>& spec, Predict&& predict,
                             const VerifyOptions& opts, uint64_t seed, int64_t window_position);

// Where fault injection forces a mismatch in a window of k tokens, or -1 for none.
int injected_mismatch_position(const VerifyOptions& opts, uint64_t seed, int64_t window_position,
                               int k);

// --- Both ends, for the engine.

class Verifier {
 public:
  // The verifier truncates and publishes KV blocks; `stops` says when a token finishes a
  // sequence.
  Verifier(const EngineConfig& config, BlockManager& blocks, StopConditions stops);

  // Whether a request decodes speculatively (and is verified): deterministic, in dvr mode.
  bool speculates(const Request& req) const;

  // The passes of a step: the lane of each piece of work and how the work is grouped.
  StepPlan assign_lanes(StepWork work) const;

  // Applies the results of entry i of a pass (its logits rows were finite): commit, keep as
  // speculative, or verify and roll back; then the canonical frontier and the prefix cache.
  void apply(const PassPlan& plan, size_t i, const PassResult& result);

 private:
  // The passes of dvr mode under each verification mode.
  void fixed_shape_passes(StepWork work, StepPlan& plan) const;
  void invariant_passes(StepWork work, StepPlan& plan) const;
  void on_prefill(Sequence& s, const PassEntry& e, const PassResult& r, int row, bool canonical);
  void on_decode(Sequence& s, const PassResult& r, int row, bool canonical);
  // Verification (step 4) and commit/rollback (step 5) of one window.
  void on_verify(Sequence& s, const PassEntry& e, const PassResult& r, int row);
  // Moves s's canonical frontier to n_cached after KV was written from position `from`.
  void advance_canonical(Sequence& s, int from, bool canonical) const;
  // What the prefix cache may share of s: canonical blocks, and fast-lane blocks of requests
  // that never roll back.
  void publish(Sequence& s);

  const EngineConfig& config_;
  BlockManager& blocks_;
  StopConditions stops_;
};

template <typename Predict>
VerifyDecision decide_commit(const std::vector<int32_t>& spec, Predict&& predict,
                             const VerifyOptions& opts, uint64_t seed, int64_t window_position) {
  VerifyDecision d;
  const int k = static_cast<int>(spec.size());
  if (opts.no_rollback) {
    d.n_match = k;
    return d;
  }
  const int forced = injected_mismatch_position(opts, seed, window_position, k);
  for (int i = 0; i < k; ++i) {
    if (predict(i) != spec[static_cast<size_t>(i)]) {
      d.n_match = i;
      d.mismatch = true;
      return d;
    }
    if (i == forced) {
      // The verifier's token here equals the speculative one, so outputs are unchanged; only
      // the rollback path runs.
      d.n_match = i;
      d.mismatch = true;
      d.injected = true;
      return d;
    }
  }
  d.n_match = k;
  return d;
}

}  // namespace llm42
