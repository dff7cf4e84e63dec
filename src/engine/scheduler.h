// The scheduler: continuous batching with a token budget and a sequence cap, chunked prefill,
// first-come-first-served admission, and preemption by recompute when KV blocks run out. Each
// step is a plan of passes; each pass runs under one schedule (lane) and holds prefill chunks,
// decode rows and verification windows (DESIGN.md §3-4). A canonical pass may also hold entries
// whose values need not be canonical: their attention runs in the fast lane (PassEntry::
// fast_attention), so one pass serves both lanes where two would read every weight twice.
#pragma once

#include <deque>
#include <vector>

#include "core/schedule.h"
#include "engine/block_manager.h"
#include "engine/engine_config.h"
#include "engine/sequence.h"

namespace llm42 {

enum class WorkKind { kPrefill, kDecode, kVerify };

struct PassEntry {
  Sequence* seq = nullptr;
  WorkKind kind = WorkKind::kDecode;
  int pos_begin = 0;  // absolute position of the first input token
  int n_tokens = 0;   // input tokens (prefill chunk, 1 for decode, k for a verification window)
  bool fast_attention = false;  // in a canonical pass: this entry's attention runs fast
};

struct PassPlan {
  Schedule schedule = Schedule::kFast;
  std::vector<PassEntry> entries;
  int pad_to = 0;  // fixed-shape verification: pad the pass with dummy rows to this many tokens
  int n_tokens() const;
  // The lane an entry's values come from.
  Schedule lane(const PassEntry& e) const { return entry_lane(schedule, e.fast_attention); }
};

struct StepPlan {
  std::vector<PassPlan> passes;
  std::vector<Sequence*> preempted;  // this step, in order
  bool empty() const { return passes.empty(); }
};

class Scheduler {
 public:
  Scheduler(const EngineConfig& config, BlockManager& blocks, int max_seq_len);

  void add(Sequence* seq);  // to the back of the waiting queue
  // Removes a sequence from whichever queue holds it (abort or finish).
  void remove(Sequence* seq);
  StepPlan schedule();

  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::vector<Sequence*>& running() const { return running_; }
  bool idle() const { return waiting_.empty() && running_.empty(); }
  int64_t num_preemptions() const { return num_preemptions_; }
  // The share of a running request's remaining output (max_tokens, at most
  // kOutputReserveCap tokens) that admission keeps KV blocks free (or evictable) for:
  // --admission-reserve, or under auto (-1) the output tokens finished requests used over those
  // their max_tokens allowed (each at most kOutputReserveCap), moving averages; 1 before any.
  double reserve_ratio() const;
  // A sequence finished (stop or length): under auto, it teaches the reserve ratio.
  void on_finished(const Sequence& seq);
  static constexpr int kOutputReserveCap = 4096;

  // The watchdog, after a step's passes ran: the live sequences that made no progress (no KV
  // position, token or commit) for config.max_stalled_steps steps in a row, counting the steps
  // where they were running and those where the engine ran no pass at all.
  std::vector<Sequence*> watch(bool ran_passes);

  // True when a speculative sequence's speculative tail must be verified before it decodes on:
  // k reached the window, or a speculative token finishes it.
  bool ready_to_verify(const Sequence& seq) const;

 private:
  // Frees the KV of the most recently admitted running sequence and puts it at the front of the
  // waiting queue; returns it.
  Sequence* preempt_one(StepPlan& plan);
  void preempt(Sequence* seq, StepPlan& plan);
  bool fixed_shape() const;

  const EngineConfig& config_;
  BlockManager& blocks_;
  int max_seq_len_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // in admission order
  int64_t num_preemptions_ = 0;
  // Auto reserve: moving averages of finished requests' output tokens and of their
  // min(max_tokens, kOutputReserveCap).
  double used_avg_ = 0, expected_avg_ = 0;
};

// Whether seq's fast-lane KV may be shared through the prefix cache (fast-lane blocks): in dvr
// mode, for a request that needs no canonical values (it never rolls back).
inline bool shares_fast_kv(DeterminismMode mode, const Sequence& seq) {
  return mode == DeterminismMode::kDvr && !seq.speculative;
}

// Whether a speculative token at output index i (0-based) of seq would finish it (EOS, stop id,
// max_tokens, context limit). Stop strings are checked by the engine on committed text.
bool token_finishes(const Sequence& seq, int32_t token, int output_index, int max_seq_len,
                    const std::vector<int32_t>& eos_ids);

}  // namespace llm42
