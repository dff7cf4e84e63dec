#include "model/weights.h"

#include <xxhash.h>

#include <cmath>
#include <string>

#include "util/error.h"

namespace llm42 {
namespace {

std::string layer_name(int l, const char* suffix) {
  return "model.layers." + std::to_string(l) + "." + suffix;
}

// Allocates a tensor of `shape` in `dtype` on the backend; `w.storage` owns it.
Tensor alloc(Backend& b, ModelWeights& w, DType dtype, std::initializer_list<int64_t> shape) {
  Tensor t(nullptr, dtype, b.device(), shape);
  w.storage.emplace_back(b, t.nbytes());
  t.data = w.storage.back().get();
  return t;
}



LayerWeights allocate_layer(Backend& b, ModelWeights& w, const ModelConfig& c, DType dtype) {
  LayerWeights lw;
  const int64_t qkv_rows = c.q_dim() + 2 * c.kv_dim();
  lw.attn_norm = alloc(b, w, DType::kF32, {c.dim});
  lw.wqkv = alloc(b, w, dtype, {qkv_rows, c.dim});
  if (c.qkv_bias) lw.bqkv = alloc(b, w, DType::kF32, {qkv_rows});
  if (c.qk_norm) {
    lw.q_norm = alloc(b, w, DType::kF32, {c.head_dim});
    lw.k_norm = alloc(b, w, DType::kF32, {c.head_dim});
  }
  lw.wo = alloc(b, w, dtype, {c.dim, c.q_dim()});
  lw.ffn_norm = alloc(b, w, DType::kF32, {c.dim});
  lw.w_gate_up = alloc(b, w, dtype, {2LL * c.ffn_dim, c.dim});
  lw.w_down = alloc(b, w, dtype, {c.dim, c.ffn_dim});
  return lw;
}

ModelWeights allocate(Backend& b, const ModelConfig& c, DType dtype) {
  ModelWeights w;
  w.config = c;
  w.dtype = dtype;
  w.embedding = alloc(b, w, dtype, {c.vocab_size, c.dim});
  for (int l = 0; l < c.n_layers; ++l) w.layers.push_back(allocate_layer(b, w, c, dtype));
  w.final_norm = alloc(b, w, DType::kF32, {c.dim});
  w.lm_head = c.tie_embeddings ? w.embedding : alloc(b, w, dtype, {c.vocab_size, c.dim});
  return w;
}

}  // namespace

size_t ModelWeights::bytes() const {
  size_t n = 0;
  for (const Buffer& b : storage) n += b.bytes();
  return n;
}

size_t ModelWeights::bytes_per_decode_step() const {
  return lm_head.data == embedding.data ? bytes() : bytes() - embedding.nbytes();
}

ModelWeights load_weights(Backend& backend, const Checkpoint& ckpt, DType dtype) {
  const ModelConfig& c = ckpt.config;
  ModelWeights w = allocate(backend, c, dtype);
  XXH64_state_t* hs = XXH64_createState();
  XXH64_reset(hs, 42);
  auto put = [&](const std::string& name, std::vector<int64_t> shape, const Tensor& dst) {
    const TensorView& v = ckpt.get(name, shape);
    backend.upload_convert(v.data, v.dtype, dst);
    XXH64_update(hs, name.data(), name.size());
    XXH64_update(hs, v.data, v.nbytes);
  };
  const int64_t d = c.dim, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_dim;
  put("model.embed_tokens.weight", {c.vocab_size, d}, w.embedding);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& lw = w.layers[l];
    put(layer_name(l, "input_layernorm.weight"), {d}, lw.attn_norm);
    put(layer_name(l, "self_attn.q_proj.weight"), {q, d}, lw.wqkv.rows(0, q));
    put(layer_name(l, "self_attn.k_proj.weight"), {kv, d}, lw.wqkv.rows(q, q + kv));
    put(layer_name(l, "self_attn.v_proj.weight"), {kv, d}, lw.wqkv.rows(q + kv, q + 2 * kv));
    if (c.qkv_bias) {
      put(layer_name(l, "self_attn.q_proj.bias"), {q}, lw.bqkv.rows(0, q));
      put(layer_name(l, "self_attn.k_proj.bias"), {kv}, lw.bqkv.rows(q, q + kv));
      put(layer_name(l, "self_attn.v_proj.bias"), {kv}, lw.bqkv.rows(q + kv, q + 2 * kv));
    }
    if (c.qk_norm) {
      put(layer_name(l, "self_attn.q_norm.weight"), {c.head_dim}, lw.q_norm);
      put(layer_name(l, "self_attn.k_norm.weight"), {c.head_dim}, lw.k_norm);
    }
    put(layer_name(l, "self_attn.o_proj.weight"), {d, q}, lw.wo);
    put(layer_name(l, "post_attention_layernorm.weight"), {d}, lw.ffn_norm);
    put(layer_name(l, "mlp.gate_proj.weight"), {f, d}, lw.w_gate_up.rows(0, f));
    put(layer_name(l, "mlp.up_proj.weight"), {f, d}, lw.w_gate_up.rows(f, 2 * f));
    put(layer_name(l, "mlp.down_proj.weight"), {d, f}, lw.w_down);
  }
  put("model.norm.weight", {d}, w.final_norm);
  if (!c.tie_embeddings) put("lm_head.weight", {c.vocab_size, d}, w.lm_head);
  w.content_hash = XXH64_digest(hs);
  XXH64_freeState(hs);
  backend.synchronize();
  return w;
}

ModelWeights dummy_weights(Backend& backend, const ModelConfig& c, DType dtype, uint64_t seed) {
  c.validate("dummy config");
  ModelWeights w = allocate(backend, c, dtype);
  uint64_t stream = 0;
  auto matrix = [&](const Tensor& t) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(t.dim(1)));
    backend.fill_random(t, seed * 1000003ULL + stream++, RandomInit::kNormal, scale);
  };
  auto norm = [&](const Tensor& t) {
    backend.fill_random(t, seed * 1000003ULL + stream++, RandomInit::kOnesNoise, 0.1f);
  };
  backend.fill_random(w.embedding, seed * 1000003ULL + stream++, RandomInit::kNormal, 1.0f);
  for (LayerWeights& lw : w.layers) {
    norm(lw.attn_norm);
    matrix(lw.wqkv);
    if (!lw.bqkv.empty())
      backend.fill_random(lw.bqkv, seed * 1000003ULL + stream++, RandomInit::kBias, 0.1f);
    if (!lw.q_norm.empty()) {
      norm(lw.q_norm);
      norm(lw.k_norm);
    }
    matrix(lw.wo);
    norm(lw.ffn_norm);
    matrix(lw.w_gate_up);
    matrix(lw.w_down);
  }
  norm(w.final_norm);
  if (!c.tie_embeddings) matrix(w.lm_head);
  w.content_hash = XXH64(&seed, sizeof seed, 0x6475'6d6d'79ULL);
  backend.synchronize();
  return w;
}

}  // namespace llm42
