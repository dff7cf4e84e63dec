// The model runner: turns a pass plan into the backend's pass input (tokens, positions, KV slots,
// block tables, logit rows), runs the forward pass and brings the needed logits to the host.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "engine/sampler.h"
#include "engine/pass_plan.h"
#include "parallel/parallel_model.h"

namespace llm42 {

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

// The prompt tokens a prefill entry scores: those after its positions [pos_begin, end) below
// n_prompt - 1 (0 when the request asks for no prompt logprobs or has them all).
int prompt_rows(const PassEntry& e);

class ModelRunner {
 public:
  // `scratch_blocks` are KV blocks outside the block manager's pool, used by padding rows.
  // Decode-only passes of at most `graph_max_batch` rows (0 = none) are padded to a graph bucket
  // and marked to run as captured graphs.
  // The model's KV caches (ParallelModel::allocate_kv) hold the blocks of the plans.
  ModelRunner(ParallelModel& model, std::vector<int32_t> scratch_blocks, int graph_max_batch);

  // The rows a decode pass of n rows is padded to for a graph: 1, 2, 4, 8, then multiples of 8.
  static int graph_bucket(int n);

  PassResult run(const PassPlan& plan);
  const PassInput& last_input() const { return input_; }

 private:
  ParallelModel& model_;
  std::vector<int32_t> scratch_blocks_;
  int graph_max_batch_;
  PassInput input_;
  std::vector<SampleRow> sample_rows_;
  std::vector<SampleResult> sample_out_;
  std::vector<float> host_row_;
};

}  // namespace llm42
