// The decoder forward pass of the Llama family (Llama 2/3, Mistral, Qwen2, Qwen3), written once
// against the Backend interface. One call runs one pass: any mix of prefill chunks, decode rows
// and verification windows, under one schedule.
#pragma once

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "model/weights.h"

namespace llm42 {

class Transformer {
 public:
  // Workspaces are sized for passes of at most max_tokens tokens and max_logit_rows logit rows.
  Transformer(Backend& backend, ModelWeights weights, int max_tokens, int max_logit_rows);

  const ModelConfig& config() const { return weights_.config; }
  const ModelWeights& weights() const { return weights_; }
  Backend& backend() { return backend_; }
  int max_tokens() const { return max_tokens_; }
  int max_logit_rows() const { return max_logit_rows_; }

  // Runs the pass, writing K/V of every pass token into its slot, and returns the logits of
  // pass.logit_rows: (R, vocab) f32 in device memory, valid until the next forward. A pass
  // marked `graph` on a backend with graphs runs as a captured graph: the first pass of its
  // shape (schedule, tokens, logit rows, KV cache) eagerly and then captured, later ones by
  // replaying the capture.
  Tensor forward(const PassInput& pass, const KvCache& cache);

  struct GraphStats {
    int64_t captures = 0;  // graphs recorded (a shape's first pass, or again after a realloc)
    int64_t replays = 0;   // passes run by replaying a graph
  };
  GraphStats graph_stats() const { return {graph_captures_, graph_replays_}; }

  // Runs every GEMM shape of the model in the canonical lane at the backend's tuning sizes
  // (Backend::matmul_tuning_sizes) up to the pass limits, and in the fast lane at M = 1, 2, 4,
  // 8, 16, so that a backend that picks GEMM kernels per shape on first use (the CUDA backend's
  // autotunes; the canonical table cached on disk) does it now, at start-up, rather than inside
  // the first requests' latency. Overwrites the activation workspaces.
  void warm_up();

 private:
  Tensor workspace(DType dtype, std::initializer_list<int64_t> shape);
  // Every kernel of the pass after begin_pass / begin_graph_pass.
  void launch(const PassInput& pass, const KvCache& cache);

  // The shape a captured graph serves: the kernels it holds depend on these and on nothing
  // else that changes between passes (the cache is named by its per-layer addresses).
  using GraphKey = std::tuple<Schedule, int, int, uint64_t>;
  static uint64_t cache_identity(const KvCache& cache);

  Backend& backend_;
  ModelWeights weights_;
  int max_tokens_;
  int max_logit_rows_;
  QkvLayout qkv_layout_;
  RopeTable rope_;
  std::vector<Buffer> storage_;
  // Activations, (max_tokens, ...) each; views of the first T rows are used per pass.
  Tensor x_;       // (T, dim)       residual stream
  Tensor h_;       // (T, dim)       normed input of a block
  Tensor qkv_;     // (T, q_dim + 2 kv_dim)
  Tensor attn_;    // (T, q_dim)
  Tensor proj_;    // (T, dim)       output of o_proj / down_proj
  Tensor gu_;      // (T, 2 ffn_dim)
  Tensor act_;     // (T, ffn_dim)
  Tensor last_;    // (R, dim)       residual rows whose logits are wanted
  Tensor normed_;  // (R, dim)
  Tensor logits_;  // (R, vocab) f32

  std::map<GraphKey, std::unique_ptr<PassGraph>> graphs_;
  int64_t graph_captures_ = 0, graph_replays_ = 0;
};

}  // namespace llm42
