// The work model behind `llm42 bench`'s "work" (bench/workload_cost.h): counted by hand on a
// small shape, and tied to the parameter count on a real one.
#include "bench/workload_cost.h"

#include <gtest/gtest.h>

#include "model/presets.h"

namespace llm42::test {
namespace {

ModelConfig small() {
  ModelConfig c;
  c.vocab_size = 10;
  c.dim = 4;
  c.n_layers = 3;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 2;  // q_dim 4, kv_dim 2
  c.ffn_dim = 8;
  return c;
}

TEST(WorkloadCost, CountedByHand) {
  // Prompt 3, 2 sampled tokens: 4 tokens run (3 prompt + 1 decode query), 2 LM-head rows.
  // A token's projections: 4 x (4 + 2 x 2) + 4 x 4 + 4 x 16 + 8 x 4 = 144 multiply-adds a layer.
  const bench::WorkloadCost w = bench::workload_cost(small(), 2, {{3, 2}});
  EXPECT_EQ(w.tokens_run, 4);
  EXPECT_EQ(w.decode_steps, 1);
  EXPECT_DOUBLE_EQ(w.linear_flop, 2.0 * (144 * 3 * 4 + 4 * 10 * 2));
  // Keys: prefill 1 + 2 + 3, the decode query at position 3 reaches 4; 4 x q_dim x layers = 48
  // FLOPs a key; K and V of one position: 2 x 2 x 2 bytes x 3 layers = 24.
  EXPECT_DOUBLE_EQ(w.prefill_attention_flop, 48.0 * 6);
  EXPECT_DOUBLE_EQ(w.decode_attention_flop, 48.0 * 4);
  EXPECT_DOUBLE_EQ(w.decode_kv_bytes, 24.0 * 4);
}

TEST(WorkloadCost, SumsRequestsAndSkipsEmptyOnes) {
  const bench::WorkloadCost a = bench::workload_cost(small(), 2, {{3, 2}});
  const bench::WorkloadCost b = bench::workload_cost(small(), 2, {{5, 1}});  // no decode query
  EXPECT_EQ(b.decode_steps, 0);
  EXPECT_DOUBLE_EQ(b.decode_kv_bytes, 0);
  EXPECT_DOUBLE_EQ(b.prefill_attention_flop, 48.0 * 15);
  const bench::WorkloadCost ab = bench::workload_cost(small(), 2, {{3, 2}, {0, 7}, {5, 1}});
  EXPECT_EQ(ab.tokens_run, a.tokens_run + b.tokens_run);
  EXPECT_DOUBLE_EQ(ab.linear_flop, a.linear_flop + b.linear_flop);
  EXPECT_DOUBLE_EQ(ab.prefill_attention_flop, a.prefill_attention_flop + b.prefill_attention_flop);
  EXPECT_DOUBLE_EQ(ab.decode_kv_bytes, a.decode_kv_bytes + b.decode_kv_bytes);
}

TEST(WorkloadCost, ProjectionsMatchTheParameterCount) {
  // Llama-3.1-8B: a prompt token costs 2 FLOPs per layer weight (13.96 GFLOP); one sampled token
  // adds the LM head.
  const ModelConfig c = preset_config("llama-3.1-8b");
  const bench::WorkloadCost w = bench::workload_cost(c, 2, {{1, 1}});
  const double embedding = double(c.vocab_size) * c.dim;
  const double norms = double(c.n_layers) * 2 * c.dim + c.dim;
  const double layer_weights = double(c.n_params()) - 2 * embedding - norms;
  EXPECT_DOUBLE_EQ(w.linear_flop, 2 * layer_weights + 2 * embedding);
  EXPECT_NEAR(2 * layer_weights / 1e9, 13.96, 0.01);
  // A bf16 KV position: 8 KV heads x 128 x 2 (K, V) x 2 bytes x 32 layers = 128 KiB.
  EXPECT_DOUBLE_EQ(bench::workload_cost(c, 2, {{10, 2}}).decode_kv_bytes, 131072.0 * 11);
}

}  // namespace
}  // namespace llm42::test
