// The engine (DESIGN.md §4): one thread owns the model and runs steps; other threads post
// requests and aborts and receive committed tokens through callbacks.
//
//   step: drain new requests and aborts -> Scheduler::schedule() (the work)
//         -> Verifier::assign_lanes (the passes) -> for each pass: ModelRunner::run (pack, pad,
//         forward, sample) -> Verifier::apply (commit, keep speculative, verify and roll back,
//         canonical frontier, prefix cache) -> outputs of committed tokens only, and stats.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "core/sampler.h"
#include "engine/block_manager.h"
#include "engine/engine_config.h"
#include "engine/model_runner.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/verifier.h"
#include "model/transformer.h"
#include "parallel/parallel_model.h"
#include "tokenizer/tokenizer.h"

namespace llm42 {

// Wall time of the passes of one kind (EngineStats::pass_profile).
struct PassTime {
  int64_t passes = 0, tokens = 0;
  double seconds = 0;
};
// Pass time by kind of pass: its schedule, whether it replayed a captured graph, and its token
// count as scheduled (fixed-shape verification padding included, graph padding not) rounded up
// to a power of two, 2^size_class. A fixed table: the engine copies its stats every step.
struct PassProfile {
  static constexpr int kSizeClasses = 32;
  PassTime by[2][2][kSizeClasses] = {};  // [canonical][graph][size_class]
  void add(Schedule s, bool graph, int tokens, double seconds) {
    PassTime& t = by[s == Schedule::kCanonical][graph]
                    [std::bit_width(static_cast<unsigned>(std::max(tokens, 1) - 1))];
    ++t.passes;
    t.tokens += tokens;
    t.seconds += seconds;
  }
};

struct EngineStats {
  int64_t steps = 0;
  int64_t fast_passes = 0, canonical_passes = 0;  // by the pass's schedule
  int64_t mixed_passes = 0;                       // canonical passes that also held fast entries
  int64_t fast_tokens = 0, canonical_tokens = 0;  // by the lane of each entry's values
  int64_t verify_passes = 0;                      // passes that contained verification windows
  int64_t verify_pass_tokens = 0;                 // tokens in those passes (padding included)
  std::map<int, int64_t> verify_pass_sizes;       // tokens per verification pass -> count
  VerifyStats verify;                             // summed over all requests
  int64_t prompt_tokens = 0;                      // of finished requests
  int64_t output_tokens = 0;                      // committed, all requests
  int64_t prefill_tokens = 0;                     // prompt (and recomputed) positions prefilled
  int64_t requests_added = 0, requests_finished = 0, requests_aborted = 0;
  int64_t preemptions = 0;
  int64_t requests_stalled = 0;    // failed by the watchdog (--max-stalled-steps)
  int64_t requests_nonfinite = 0;  // failed because their logits were not finite
  int64_t prefix_cache_hits = 0, prefix_cache_queries = 0;
  int64_t graph_passes = 0;    // passes run as captured graphs (replays)
  int64_t graph_captures = 0;  // graphs recorded (a shape's first pass ran eagerly)
  // Wall time of the engine thread in step(): scheduling, the passes (launch, device work and
  // sampling, which waits for the device), and the rest (commit, outputs, bookkeeping).
  double schedule_s = 0, pass_s = 0, other_s = 0;
  // pass_s by kind of pass: where two modes' pass times differ on the same workload.
  PassProfile pass_profile;
  int running = 0, waiting = 0;
  int kv_blocks_used = 0, kv_blocks_total = 0;
  // The share of running requests' remaining max_tokens admission keeps KV for
  // (--admission-reserve, or what auto learned).
  double admission_reserve_ratio = 0;
  // Rolled-back tokens per committed output token.
  double recompute_rate() const {
    return output_tokens == 0 ? 0.0
                              : static_cast<double>(verify.tokens_rolled_back) / output_tokens;
  }
};

class Engine {
 public:
  // `tokenizer` may be null (ids only: no text, no stop strings). The engine keeps references
  // to model and tokenizer.
  Engine(ParallelModel& model, const EngineConfig& config, const Tokenizer* tokenizer);
  // One rank: the model on the engine's thread.
  Engine(Transformer& model, const EngineConfig& config, const Tokenizer* tokenizer);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Thread-safe. Validates the request (throws llm42::Error naming the field) and queues it;
  // outputs arrive through `on_output` on the engine's thread, in order, the last one finished.
  uint64_t add_request(Request req, OutputCallback on_output);
  // Thread-safe. The request finishes with FinishReason::kAbort at the next step boundary and
  // its KV is freed.
  void abort(uint64_t id);

  // Caller-driven use (tests, bench, generate): one step on this thread. Returns whether work
  // remains (running, waiting or newly added requests).
  bool step();
  void run_until_idle();

  // Background use (server): a thread that steps while there is work.
  void start();
  // Stops the loop. drain: finish every accepted request first; otherwise abort them.
  void stop(bool drain);
  bool has_work() const;

  EngineStats stats() const;
  const EngineConfig& config() const { return config_; }
  const ModelConfig& model_config() const { return model_.config(); }
  int max_seq_len() const { return max_seq_len_; }
  int num_kv_blocks() const { return blocks_->num_blocks(); }
  // What a deterministic answer depends on: weights, dtype, kernels, verification schedule.
  std::string fingerprint() const;
  // Blocks until the engine thread has run at least one full step after this call.
  void wait_for_step();

 private:
  void drain_inbox();
  void finish(Sequence& s, FinishReason reason, std::string error = {});
  // A pass's results: stats, failures (non-finite logits), prompt logprobs; the rest is the
  // verifier's (Verifier::apply).
  void process_pass(const PassPlan& plan, const PassResult& result);
  // Keeps the logprobs of the prompt tokens after positions [pos_begin, pos_begin + n).
  void score_prompt(Sequence& s, int pos_begin, const SampledToken* scored, int n);
  void emit(Sequence& s);
  // The parts of step(), in order: run the plan's passes (returns their seconds); warn as the
  // KV cache preempts; fail requests stalled for --max-stalled-steps; emit outputs and retire
  // finished sequences; publish a stats snapshot and wake wait_for_step.
  double run_passes(const StepPlan& plan);
  void note_preemptions();
  void fail_stalled(bool scheduled_work);
  void retire_and_emit();
  void publish_stats();
  void loop();
  void init();  // the constructors' common part

  std::unique_ptr<ParallelModel> owned_model_;  // the one-rank wrapper of a Transformer
  ParallelModel& model_;
  EngineConfig config_;
  const Tokenizer* tokenizer_;
  int max_seq_len_;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Verifier> verifier_;
  std::unique_ptr<ModelRunner> runner_;
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> seqs_;
  VerifyStats finished_verify_;              // of sequences already gone
  Transformer::GraphStats graphs_at_start_;  // the model's counters when this engine began
  EngineStats stats_;                        // engine-thread copy, published to stats_snapshot_

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Sequence>> inbox_;
  std::vector<uint64_t> abort_inbox_;
  uint64_t next_id_ = 1;
  int64_t steps_done_ = 0;
  EngineStats stats_snapshot_;
  std::thread thread_;
  bool stop_ = false;
  bool drain_ = false;
};

}  // namespace llm42
