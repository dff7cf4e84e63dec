// The model runner: turns a pass plan into the backend's pass input (tokens, positions, KV slots,
// block tables, logit rows), runs the forward pass and brings the needed logits to the host.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "core/sampler.h"
#include "engine/pass_plan.h"
#include "parallel/parallel_model.h"

namespace llm42 {

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

  // pack -> pad_for_graph or pad_to_fixed_shape -> forward -> sample.
  PassResult run(const PassPlan& plan);
  const PassInput& last_input() const { return input_; }

 private:
  // Per logits row: the sequence (null: a padding row) and the output index of the token it
  // predicts, or the prompt token it scores.
  struct RowOwner {
    const Sequence* seq = nullptr;
    int index = 0;
    int32_t score = -1;
  };
  // Appends n input rows of one sequence (tokens at positions [pos_begin, pos_begin + n) over
  // its block table) to the pass input.
  void add_rows(const std::vector<int32_t>& blocks, int pos_begin, int n, const int32_t* tokens,
                bool fast_attention);
  // The plan's entries as pass input: their rows, and the logits rows each needs.
  void pack(const PassPlan& plan, PassResult& result);
  // A decode-only pass small enough for a graph: padded to its bucket (in.graph set).
  void pad_for_graph(const PassPlan& plan);
  // Fixed-shape verification: padded to plan.pad_to rows, logits for every row.
  void pad_to_fixed_shape(const PassPlan& plan, PassResult& result);
  // Draws the token of every logits row (prompt-scoring rows: the prompt token's logprob).
  void sample(const Tensor& logits, PassResult& result);

  ParallelModel& model_;
  std::vector<int32_t> scratch_blocks_;
  int graph_max_batch_;
  PassInput input_;
  std::vector<RowOwner> row_owner_;  // per logits row of input_
  std::vector<SampleRow> sample_rows_;
  std::vector<SampleResult> sample_out_;
  std::vector<float> host_row_;
};

}  // namespace llm42
