// The decoder forward pass of the Llama family (Llama 2/3, Mistral, Qwen2, Qwen3), written once
// against the Backend interface. One call runs one pass: any mix of prefill chunks, decode rows
// and verification windows, under one schedule.
//
// Under tensor parallelism (DESIGN.md §7) a Transformer is one rank's: it holds its shard of the
// weights (ModelWeights::dims) and exchanges with the other ranks through a Communicator after
// the embedding (every rank's rows sum to the owner's), after o and down (the row-parallel
// layers) and after the LM head (logits gathered). In the canonical lane o and down run as a
// fixed tree of fp32 leaves (Backend::matmul_leaves), completed across ranks in the same order,
// so canonical values do not depend on the TP size; the fast lane runs the plain GEMM and an
// all-reduce.
#pragma once

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "backend/communicator.h"
#include "model/weights.h"

namespace llm42 {

class Transformer {
 public:
  // Workspaces are sized for passes of at most max_tokens tokens and max_logit_rows logit rows.
  // `comm` joins the ranks of a tensor-parallel group (its size is weights.dims.shard.size);
  // null for one rank.
  Transformer(Backend& backend, ModelWeights weights, int max_tokens, int max_logit_rows,
              Communicator* comm = nullptr);

  const ModelConfig& config() const { return weights_.config; }  // the whole model's
  const ShardDims& dims() const { return weights_.dims; }          // this rank's part
  int tp_size() const { return weights_.dims.shard.size; }
  const ModelWeights& weights() const { return weights_; }
  Backend& backend() const { return backend_; }
  int max_tokens() const { return max_tokens_; }
  int max_logit_rows() const { return max_logit_rows_; }

  // Runs the pass, writing K/V of every pass token into its slot, and returns the logits of
  // pass.logit_rows: (R, vocab) f32 in device memory, valid until the next forward. A pass
  // marked `graph` on a backend with graphs runs as a captured graph: the first pass of its
  // shape (schedule, tokens, logit rows, KV cache) eagerly and then captured, later ones by
  // replaying the capture.
  Tensor forward(const PassInput& pass, const KvCache& cache);

  // A paged KV cache of n_blocks blocks for this rank's KV heads; `storage` owns it.
  KvCache allocate_kv_cache(int n_blocks, int block_size, std::vector<Buffer>& storage);

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
  // out (T, dim) = x @ w^T summed over every rank's K slice: in the canonical lane the leaf tree
  // (Backend::matmul_leaves, then the ranks' subtrees gathered and summed in tree order), in the
  // fast lane the plain GEMM and an all-reduce.
  void row_parallel(const Tensor& x, const Tensor& w, const std::vector<int64_t>& leaves,
                    const Tensor& out, Schedule s);
  // The LM head over this rank's vocabulary rows, gathered into logits (R, vocab).
  void lm_head(const Tensor& normed, const Tensor& logits, Schedule s);

  // The shape a captured graph serves: the kernels it holds depend on these and on nothing
  // else that changes between passes (the cache is named by its per-layer addresses).
  // (schedule, tokens, logit rows, cache identity, Backend::graph_variant).
  using GraphKey = std::tuple<Schedule, int, int, uint64_t, int>;
  static uint64_t cache_identity(const KvCache& cache);

  Backend& backend_;
  ModelWeights weights_;
  Communicator* comm_;
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
  Tensor leaf_sum_;  // (T, dim) f32: this rank's subtree of a row-parallel canonical GEMM
  // Tensor parallel only: (tp, T, dim) f32, every rank's subtree; (R, max vocab slice) f32,
  // this rank's logits; (tp, R, max vocab slice) f32, every rank's.
  Tensor subtrees_;
  Tensor local_logits_;
  Tensor gathered_logits_;

  std::map<GraphKey, std::unique_ptr<PassGraph>> graphs_;
  int64_t graph_captures_ = 0, graph_replays_ = 0;
};

}  // namespace llm42
