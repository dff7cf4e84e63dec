// The scheduler: continuous batching with a token budget and a sequence cap, chunked prefill,
// first-come-first-served admission, and preemption by recompute when KV blocks run out. Each
// step it hands out work (StepWork: prefill chunks, decode rows, verification windows) and
// knows nothing of lanes: the verifier makes the step's passes of it (Verifier::assign_lanes).
// It obeys DVR's rules for what a window or a fixed-shape prefill costs (verifier.h).
#pragma once

#include <deque>
#include <vector>

#include "engine/block_manager.h"
#include "engine/engine_config.h"
#include "engine/pass_plan.h"
#include "engine/sequence.h"

namespace llm42 {

class Scheduler {
 public:
  Scheduler(const EngineConfig& config, BlockManager& blocks);

  void add(Sequence* seq);  // to the back of the waiting queue
  // Removes a sequence from whichever queue holds it (abort or finish).
  void remove(Sequence* seq);
  // This step's work: the running sequences' (collect), then newly admitted ones' (admit).
  StepWork schedule();

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

 private:
  // What is left of a step's budget: tokens, and logits rows for prompt logprobs.
  struct Budget {
    int tokens = 0;
    int score_rows = 0;
  };
  // The work of the running sequences, oldest first: prefill chunks, decode rows, windows ready
  // to verify. Preempts newer sequences when KV blocks run out.
  void collect(StepWork& work, Budget& budget);
  // Admits waiting sequences, first come first served, while the budget, the sequence cap and
  // the KV blocks (with admission's reserve) allow, and hands out their first prefill chunk.
  void admit(StepWork& work, Budget& budget);

  // The chunk s's prefill takes now (0: none fits).
  int prefill_chunk(const Sequence& s, const Budget& budget) const;
  // A fixed-shape deterministic prefill chunk: prefill_chunk and the step's budget alone.
  int isolated_chunk(const Sequence& s, bool scoring) const;
  // The logits rows a prefill chunk of s takes for prompt logprobs.
  void take_chunk(const Sequence& s, int chunk, Budget& budget) const;
  // The tokens s's work takes this step when it cannot be split (a verification window, a
  // fixed-shape deterministic prefill chunk); 0 when it takes whatever budget is left.
  int whole_cost(const Sequence& s) const;
  // KV blocks s will still need (admission's reserve).
  int future_blocks(const Sequence& s, double ratio) const;
  // Makes room for `positions` KV positions of s, preempting newer sequences; false when s
  // itself had to be preempted.
  bool reserve(Sequence* s, int positions, StepWork& work);
  // Frees the KV of the most recently admitted running sequence and puts it at the front of the
  // waiting queue; returns it.
  Sequence* preempt_one(StepWork& work);
  void preempt(Sequence* seq, StepWork& work);

  const EngineConfig& config_;
  BlockManager& blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // in admission order
  int64_t num_preemptions_ = 0;
  // Auto reserve: moving averages of finished requests' output tokens and of their
  // min(max_tokens, kOutputReserveCap).
  double used_avg_ = 0, expected_avg_ = 0;
};

}  // namespace llm42
