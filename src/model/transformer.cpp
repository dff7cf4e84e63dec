#include "model/transformer.h"

#include "util/error.h"

namespace llm42 {

Transformer::Transformer(Backend& backend, ModelWeights weights, int max_tokens,
                         int max_logit_rows)
    : backend_(backend),
      weights_(std::move(weights)),
      max_tokens_(max_tokens),
      max_logit_rows_(max_logit_rows) {
  const ModelConfig& c = weights_.config;
  qkv_layout_ = QkvLayout{c.n_heads, c.n_kv_heads, c.head_dim};
  rope_ = make_rope_table(backend_, c, c.max_seq_len, storage_);
  const DType a = backend_.activation_dtype();
  const int64_t t = max_tokens;
  x_ = workspace(a, {t, c.dim});
  h_ = workspace(a, {t, c.dim});
  qkv_ = workspace(a, {t, qkv_layout_.row()});
  attn_ = workspace(a, {t, c.q_dim()});
  proj_ = workspace(a, {t, c.dim});
  gu_ = workspace(a, {t, 2LL * c.ffn_dim});
  act_ = workspace(a, {t, c.ffn_dim});
  last_ = workspace(a, {max_logit_rows, c.dim});
  normed_ = workspace(a, {max_logit_rows, c.dim});
  logits_ = workspace(DType::kF32, {max_logit_rows, c.vocab_size});
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
  if (!pass.graph || !backend_.supports_graphs()) {
    backend_.begin_pass(pass, cache);
    launch(pass, cache);
    return logits;
  }
  // A replay runs none of the kernels' host-side checks: make them here.
  for (int i = 0; i < t; ++i) {
    LLM42_ASSERT(pass.tokens[i] >= 0 && pass.tokens[i] < c.vocab_size,
                 "token id {} outside vocabulary of {}", pass.tokens[i], c.vocab_size);
    LLM42_ASSERT(pass.positions[i] >= 0 && pass.positions[i] < rope_.max_positions,
                 "position {} beyond the RoPE table of {}", pass.positions[i],
                 rope_.max_positions);
  }
  backend_.begin_graph_pass(pass, cache, qkv_layout_);
  std::unique_ptr<PassGraph>& graph = graphs_[GraphKey{pass.schedule, t, r, cache_identity(cache)}];
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
  const Tensor x = x_.rows(0, t), h = h_.rows(0, t), qkv = qkv_.rows(0, t),
               attn = attn_.rows(0, t), proj = proj_.rows(0, t), gu = gu_.rows(0, t),
               act = act_.rows(0, t);
  backend_.embedding(weights_.embedding, x);
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
    backend_.matmul(attn, lw.wo, nullptr, proj, s);
    // MLP block.
    backend_.add_rmsnorm(x, proj, lw.ffn_norm, c.norm_eps, h, s);
    backend_.matmul(h, lw.w_gate_up, nullptr, gu, s);
    backend_.swiglu(gu, act);
    backend_.matmul(act, lw.w_down, nullptr, proj, s);
  }
  if (r == 0) return;
  // Only the rows that need logits go through the last residual add, norm and LM head. The
  // residual add is applied to the gathered rows, not the whole pass.
  const Tensor last = last_.rows(0, r), normed = normed_.rows(0, r), logits = logits_.rows(0, r);
  backend_.gather_logit_rows(x, last);
  backend_.gather_logit_rows(proj, normed);
  backend_.add_rmsnorm(last, normed, weights_.final_norm, c.norm_eps, normed, s);
  backend_.matmul(normed, weights_.lm_head, nullptr, logits, s);
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
  auto all_shapes = [&](int t, Schedule s) {
    backend_.matmul(h_.rows(0, t), lw.wqkv, bias, qkv_.rows(0, t), s);
    backend_.matmul(attn_.rows(0, t), lw.wo, nullptr, proj_.rows(0, t), s);
    backend_.matmul(h_.rows(0, t), lw.w_gate_up, nullptr, gu_.rows(0, t), s);
    backend_.matmul(act_.rows(0, t), lw.w_down, nullptr, proj_.rows(0, t), s);
  };
  for (int t : backend_.matmul_tuning_sizes(max_tokens_)) all_shapes(t, Schedule::kCanonical);
  for (int r : backend_.matmul_tuning_sizes(max_logit_rows_))
    backend_.matmul(normed_.rows(0, r), weights_.lm_head, nullptr, logits_.rows(0, r),
                    Schedule::kCanonical);
  // The fast lane times its kernels per exact shape on first use; do the decode batch sizes
  // where that choice is made among several kernels (the CUDA backend's skinny GEMM).
  for (int t : {1, 2, 4, 8, 16}) {
    if (t <= max_tokens_) all_shapes(t, Schedule::kFast);
    if (t <= max_logit_rows_)
      backend_.matmul(normed_.rows(0, t), weights_.lm_head, nullptr, logits_.rows(0, t),
                      Schedule::kFast);
  }
  backend_.synchronize();
}

}  // namespace llm42
