#include "model/transformer.h"

#include "model/device_state.h"
#include "util/error.h"

namespace llm42 {

Transformer::Transformer(Backend& backend, ModelWeights weights, int max_tokens, int max_logit_rows,
                         Communicator* comm)
    : backend_(backend),
      weights_(std::move(weights)),
      comm_(comm),
      max_tokens_(max_tokens),
      max_logit_rows_(max_logit_rows) {
  const ModelConfig& c = weights_.config;
  const ShardDims& d = weights_.dims;
  const int tp = d.shard.size;
  LLM42_ASSERT(
      tp == 1 || (comm_ != nullptr && comm_->size() == tp && comm_->rank() == d.shard.rank),
      "rank {} of {} needs a communicator of that group", d.shard.rank, tp);
  qkv_layout_ = QkvLayout{d.n_heads(), d.n_kv_heads(), c.head_dim};
  rope_ = make_rope_table(backend_, c, c.max_seq_len, storage_);
  const DType a = backend_.activation_dtype();
  const int64_t t = max_tokens;
  x_ = workspace(a, {t, c.dim});
  h_ = workspace(a, {t, c.dim});
  qkv_ = workspace(a, {t, qkv_layout_.row()});
  attn_ = workspace(a, {t, qkv_layout_.q_dim()});
  proj_ = workspace(a, {t, c.dim});
  gu_ = workspace(a, {t, 2LL * d.ffn_dim()});
  act_ = workspace(a, {t, d.ffn_dim()});
  last_ = workspace(a, {max_logit_rows, c.dim});
  normed_ = workspace(a, {max_logit_rows, c.dim});
  logits_ = workspace(DType::kF32, {max_logit_rows, c.vocab_size});
  leaf_sum_ = workspace(DType::kF32, {t, c.dim});
  if (tp > 1) {
    subtrees_ = workspace(DType::kF32, {tp * t * c.dim});
    local_logits_ = workspace(DType::kF32, {max_logit_rows * d.max_vocab_slice});
    gathered_logits_ = workspace(DType::kF32, {tp * max_logit_rows * d.max_vocab_slice});
  }
}

KvCache Transformer::allocate_kv_cache(int n_blocks, int block_size, std::vector<Buffer>& storage) {
  ModelConfig local = weights_.config;
  local.n_kv_heads = qkv_layout_.n_kv_heads;
  return llm42::allocate_kv_cache(backend_, local, n_blocks, block_size, storage);
}

Tensor Transformer::workspace(DType dtype, std::initializer_list<int64_t> shape) {
  Tensor t(nullptr, dtype, backend_.device(), shape);
  storage_.emplace_back(backend_, t.nbytes());
  t.data = storage_.back().get();
  return t;
}

uint64_t Transformer::cache_identity(const KvCache& cache) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the layer pools' addresses and geometry
  auto mix = [&h](uint64_t v) {
    h ^= v;
    h *= 1099511628211ull;
  };
  for (size_t l = 0; l < cache.k.size(); ++l) {
    mix(reinterpret_cast<uintptr_t>(cache.k[l].data));
    mix(reinterpret_cast<uintptr_t>(cache.v[l].data));
  }
  mix(static_cast<uint64_t>(cache.block_size));
  mix(static_cast<uint64_t>(cache.n_blocks));
  return h;
}

Tensor Transformer::forward(const PassInput& pass, const KvCache& cache) {
  const ModelConfig& c = weights_.config;
  const int t = pass.n_tokens();
  const int r = static_cast<int>(pass.logit_rows.size());
  LLM42_ASSERT(t > 0 && t <= max_tokens_, "pass of {} tokens (max {})", t, max_tokens_);
  LLM42_ASSERT(r <= max_logit_rows_, "{} logit rows (max {})", r, max_logit_rows_);
  const Tensor logits = logits_.rows(0, r);
  // A replay runs none of the kernels' host-side checks, and a vocabulary shard's embedding
  // cannot tell a bad id from another shard's: check here.
  for (int i = 0; i < t; ++i) {
    LLM42_ASSERT(pass.tokens[i] >= 0 && pass.tokens[i] < c.vocab_size,
                 "token id {} outside vocabulary of {}", pass.tokens[i], c.vocab_size);
    LLM42_ASSERT(pass.positions[i] >= 0 && pass.positions[i] < rope_.max_positions,
                 "position {} beyond the RoPE table of {}", pass.positions[i], rope_.max_positions);
  }
  // A tensor-parallel pass runs as a graph only where its exchanges are stream operations that
  // can be captured with the kernels (NCCL); the in-process exchange meets on the host.
  if (!pass.graph || !backend_.supports_graphs() || (tp_size() > 1 && !comm_->capturable())) {
    backend_.begin_pass(pass, cache, qkv_layout_);
    launch(pass, cache);
    return logits;
  }
  backend_.begin_graph_pass(pass, cache, qkv_layout_);
  std::unique_ptr<PassGraph>& graph =
      graphs_[GraphKey{pass.schedule, t, r, cache_identity(cache), backend_.graph_variant()}];
  if (graph != nullptr && backend_.replay(*graph)) {
    ++graph_replays_;
    return logits;
  }
  launch(pass, cache);  // this pass's results
  graph = backend_.capture([&] { launch(pass, cache); });
  ++graph_captures_;
  return logits;
}

void Transformer::launch(const PassInput& pass, const KvCache& cache) {
  const ModelConfig& c = weights_.config;
  const int t = pass.n_tokens();
  const int r = static_cast<int>(pass.logit_rows.size());
  const Schedule s = pass.schedule;
  const Tensor x = x_.rows(0, t), h = h_.rows(0, t), qkv = qkv_.rows(0, t), attn = attn_.rows(0, t),
               proj = proj_.rows(0, t), gu = gu_.rows(0, t), act = act_.rows(0, t);
  backend_.embedding(weights_.embedding, weights_.dims.vocab.begin, x);
  if (tp_size() > 1) comm_->all_reduce_sum(x);  // exact: other shards' rows are -0.0
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    // Attention block. The previous block's output (proj) is added to the residual stream by
    // the fused add_rmsnorm, except before the first layer.
    if (l == 0) {
      backend_.rmsnorm(x, lw.attn_norm, c.norm_eps, h, s);
    } else {
      backend_.add_rmsnorm(x, proj, lw.attn_norm, c.norm_eps, h, s);
    }
    backend_.matmul(h, lw.wqkv, lw.bqkv.empty() ? nullptr : &lw.bqkv, qkv, s);
    if (c.qk_norm) backend_.qk_norm(qkv, qkv_layout_, lw.q_norm, lw.k_norm, c.norm_eps, s);
    backend_.rope_kv_write(qkv, qkv_layout_, rope_, cache, l);
    backend_.attention(qkv, qkv_layout_, cache, l, attn, s);
    row_parallel(attn, lw.wo, weights_.dims.o_leaves, proj, s);
    // MLP block.
    backend_.add_rmsnorm(x, proj, lw.ffn_norm, c.norm_eps, h, s);
    backend_.matmul(h, lw.w_gate_up, nullptr, gu, s);
    backend_.swiglu(gu, act);
    row_parallel(act, lw.w_down, weights_.dims.down_leaves, proj, s);
  }
  if (r == 0) return;
  // Only the rows that need logits go through the last residual add, norm and LM head. The
  // residual add is applied to the gathered rows, not the whole pass.
  const Tensor last = last_.rows(0, r), normed = normed_.rows(0, r), logits = logits_.rows(0, r);
  backend_.gather_logit_rows(x, last);
  backend_.gather_logit_rows(proj, normed);
  backend_.add_rmsnorm(last, normed, weights_.final_norm, c.norm_eps, normed, s);
  lm_head(normed, logits, s);
}

void Transformer::row_parallel(const Tensor& x, const Tensor& w, const std::vector<int64_t>& leaves,
                               const Tensor& out, Schedule s) {
  const int tp = tp_size();
  if (s == Schedule::kFast) {
    backend_.matmul(x, w, nullptr, out, s);
    if (tp > 1) comm_->all_reduce_sum(out);
    return;
  }
  const int64_t t = x.dim(0), n = out.dim(1);
  if (tp == 1 && out.dtype != DType::kF32) {  // the whole tree here, rounded once
    backend_.matmul_leaves(x, w, leaves, out);
    return;
  }
  const Tensor sub = leaf_sum_.rows(0, t);
  backend_.matmul_leaves(x, w, leaves, sub);
  if (tp == 1) {
    backend_.sum_parts(sub.reshape({1, t, n}), out);
    return;
  }
  const Tensor parts(subtrees_.data, DType::kF32, subtrees_.device, {tp, t, n});
  comm_->all_gather(sub, parts);
  backend_.sum_parts(parts, out);
}

void Transformer::lm_head(const Tensor& normed, const Tensor& logits, Schedule s) {
  const int tp = tp_size();
  if (tp == 1) {
    backend_.matmul(normed, weights_.lm_head, nullptr, logits, s);
    return;
  }
  const ShardDims& d = weights_.dims;
  const int64_t r = normed.dim(0), slice = d.max_vocab_slice, vocab = weights_.config.vocab_size;
  const Tensor local(local_logits_.data, DType::kF32, local_logits_.device, {r, d.vocab.size()});
  backend_.matmul(normed, weights_.lm_head, nullptr, local, s);
  // Each rank's (R, its slice) block, padded to the largest slice, then placed at its columns.
  const Tensor padded(local_logits_.data, DType::kF32, local_logits_.device, {r * slice});
  const Tensor all(gathered_logits_.data, DType::kF32, gathered_logits_.device, {tp * r * slice});
  comm_->all_gather(padded, all);
  for (int j = 0; j < tp; ++j) {
    const Range cols = split_range(vocab, tp, j);
    backend_.copy_device_2d(logits.ptr<float>() + cols.begin, vocab * sizeof(float),
                            all.ptr<float>() + j * r * slice, cols.size() * sizeof(float),
                            cols.size() * sizeof(float), r);
  }
}

void Transformer::warm_up() {
  if (weights_.layers.empty()) return;
  const LayerWeights& lw = weights_.layers.front();
  const Tensor* bias = lw.bqkv.empty() ? nullptr : &lw.bqkv;
  // Random inputs: the autotune checks that its candidates agree bit for bit on them.
  backend_.fill_random(h_, 1, RandomInit::kNormal, 1.0f);
  backend_.fill_random(attn_, 2, RandomInit::kNormal, 1.0f);
  backend_.fill_random(act_, 3, RandomInit::kNormal, 1.0f);
  backend_.fill_random(normed_, 4, RandomInit::kNormal, 1.0f);
  const ShardDims& d = weights_.dims;
  const int64_t vocab_rows = d.vocab.size();
  // This rank's LM head output: its vocabulary slice's columns.
  auto head_out = [&](int r) {
    return Tensor(d.shard.size == 1 ? logits_.data : local_logits_.data, DType::kF32,
                  logits_.device, {r, vocab_rows});
  };
  // The GEMMs alone (no exchange: warm-up runs on each rank without the others). The leaves go
  // where row_parallel sends them (a backend may choose kernels by the output's dtype).
  auto leaves_out = [&](int t) {
    return tp_size() == 1 && proj_.dtype != DType::kF32 ? proj_.rows(0, t) : leaf_sum_.rows(0, t);
  };
  auto all_shapes = [&](int t, Schedule s) {
    backend_.matmul(h_.rows(0, t), lw.wqkv, bias, qkv_.rows(0, t), s);
    backend_.matmul(h_.rows(0, t), lw.w_gate_up, nullptr, gu_.rows(0, t), s);
    if (s == Schedule::kCanonical) {
      backend_.matmul_leaves(attn_.rows(0, t), lw.wo, d.o_leaves, leaves_out(t));
      backend_.matmul_leaves(act_.rows(0, t), lw.w_down, d.down_leaves, leaves_out(t));
    } else {
      backend_.matmul(attn_.rows(0, t), lw.wo, nullptr, proj_.rows(0, t), s);
      backend_.matmul(act_.rows(0, t), lw.w_down, nullptr, proj_.rows(0, t), s);
    }
  };
  for (int t : backend_.matmul_tuning_sizes(max_tokens_)) all_shapes(t, Schedule::kCanonical);
  for (int r : backend_.matmul_tuning_sizes(max_logit_rows_))
    backend_.matmul(normed_.rows(0, r), weights_.lm_head, nullptr, head_out(r),
                    Schedule::kCanonical);
  // The fast lane times its kernels per exact shape on first use; do the decode batch sizes
  // where that choice is made among several kernels (the CUDA backend's skinny GEMM).
  for (int t : {1, 2, 4, 8, 16}) {
    if (t <= max_tokens_) all_shapes(t, Schedule::kFast);
    if (t <= max_logit_rows_)
      backend_.matmul(normed_.rows(0, t), weights_.lm_head, nullptr, head_out(t), Schedule::kFast);
  }
  backend_.synchronize();
}

}  // namespace llm42
