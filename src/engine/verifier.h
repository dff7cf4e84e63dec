// The verifier's decision (DESIGN.md §3, steps 4-5): given a window's speculative tokens and the
// canonical lane's predictions at the same positions, how many tokens to commit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace llm42 {

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
