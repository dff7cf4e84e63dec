// The plan of a step: the work the scheduler hands out (StepWork) and the passes the verifier
// makes of it (StepPlan), each pass run under one schedule (lane) by the model runner, which
// returns a PassResult (DESIGN.md §3-4).
#pragma once

#include <algorithm>
#include <vector>

#include "core/sampler.h"
#include "core/schedule.h"
#include "engine/sequence.h"

namespace llm42 {

enum class WorkKind { kPrefill, kDecode, kVerify };

// One sequence's rows in a pass.
struct PassEntry {
  Sequence* seq = nullptr;
  WorkKind kind = WorkKind::kDecode;
  int pos_begin = 0;  // absolute position of the first input token
  int n_tokens = 0;   // input tokens (prefill chunk, 1 for decode, k for a verification window)
  // In a canonical pass, this entry is in the fast lane all the same: its attention runs fast
  // (PassSeq::fast_attention), so its values are the fast lane's. Set by Verifier::assign_lanes.
  bool fast_lane = false;
};

// The work of one step, as the scheduler handed it out (each list in that order). It says
// nothing of lanes.
struct StepWork {
  std::vector<PassEntry> prefill;    // prompt chunks (and recomputations after preemption)
  std::vector<PassEntry> decode;     // one row each
  std::vector<PassEntry> verify;     // verification windows, ready (Verifier: ready_to_verify)
  std::vector<Sequence*> preempted;  // this step, in order
};

struct PassPlan {
  Schedule schedule = Schedule::kFast;
  std::vector<PassEntry> entries;
  int pad_to = 0;  // fixed-shape verification: pad the pass with dummy rows to this many tokens
  int n_tokens() const {
    int n = 0;
    for (const PassEntry& e : entries) n += e.n_tokens;
    return std::max(n, pad_to);
  }
  // The lane an entry's values come from.
  Schedule lane(const PassEntry& e) const { return entry_lane(schedule, e.fast_lane); }
};

struct StepPlan {
  std::vector<PassPlan> passes;
  bool empty() const { return passes.empty(); }
};

// The sampled token of every logits row of a pass. Rows of requests with penalties are sampled
// on the host (they need token history); all others by the backend.
struct PassResult {
  std::vector<SampledToken> samples;  // per logits row
  std::vector<int> entry_first_row;   // per pass entry: its first logits row, or -1
  // Per pass entry: the row scoring its first prompt token, or -1. A prefill chunk of a request
  // with Request::prompt_logprobs scores the prompt token after each of its positions p <
  // n_prompt - 1, in rows entry_prompt_row, +1, ... (SampledToken::id is the prompt token).
  std::vector<int> entry_prompt_row;
};

}  // namespace llm42
