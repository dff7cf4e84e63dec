#include "model/weights.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <string>

#include "util/error.h"

namespace llm42 {
namespace {

// Allocates a tensor of `shape` in `dtype` on the backend; `w.storage` owns it.
Tensor alloc(Backend& b, ModelWeights& w, DType dtype, std::initializer_list<int64_t> shape) {
  Tensor t(nullptr, dtype, b.device(), shape);
  w.storage.emplace_back(b, t.nbytes());
  t.data = w.storage.back().get();
  return t;
}



LayerWeights allocate_layer(Backend& b, ModelWeights& w, const ModelConfig& c,
                            const ShardDims& d, DType dtype) {
  LayerWeights lw;
  const int64_t q = int64_t{d.n_heads()} * c.head_dim, kv = int64_t{d.n_kv_heads()} * c.head_dim;
  const int64_t qkv_rows = q + 2 * kv;
  lw.attn_norm = alloc(b, w, DType::kF32, {c.dim});
  lw.wqkv = alloc(b, w, dtype, {qkv_rows, c.dim});
  if (c.qkv_bias) lw.bqkv = alloc(b, w, DType::kF32, {qkv_rows});
  if (c.qk_norm) {
    lw.q_norm = alloc(b, w, DType::kF32, {c.head_dim});
    lw.k_norm = alloc(b, w, DType::kF32, {c.head_dim});
  }
  lw.wo = alloc(b, w, dtype, {c.dim, q});
  lw.ffn_norm = alloc(b, w, DType::kF32, {c.dim});
  lw.w_gate_up = alloc(b, w, dtype, {2LL * d.ffn_dim(), c.dim});
  lw.w_down = alloc(b, w, dtype, {c.dim, d.ffn_dim()});
  return lw;
}

ModelWeights allocate(Backend& b, const ModelConfig& c, TpShard shard, DType dtype) {
  ModelWeights w;
  w.config = c;
  w.dims = shard_dims(c, shard);
  w.dtype = dtype;
  const int64_t vocab = w.dims.vocab.size();
  w.embedding = alloc(b, w, dtype, {vocab, c.dim});
  for (int l = 0; l < c.n_layers; ++l) w.layers.push_back(allocate_layer(b, w, c, w.dims, dtype));
  w.final_norm = alloc(b, w, DType::kF32, {c.dim});
  w.lm_head = c.tie_embeddings ? w.embedding : alloc(b, w, dtype, {vocab, c.dim});
  return w;
}

// The rows [rows.begin, rows.end) and columns [cols.begin, cols.end) of a row-major matrix of
// `full_cols` columns, as (rows, cols) element windows: which part of a whole weight a shard's
// tensor holds.
struct Window {
  Range rows;
  Range cols;
  int64_t full_cols = 0;
};

// Every tensor of a rank's weights with the part of the whole checkpoint tensor it holds. Dummy
// weights draw whole-model tensors in a fixed order, one random stream each (q/k/v as one fused
// tensor, gate/up as another, as they were drawn before tensor parallelism): `stream` and the
// part's first row inside that drawn tensor (`drawn_row`) name the values a shard holds.
struct ShardTensor {
  std::string name;
  std::vector<int64_t> full_shape;
  Tensor dst;
  Window window;
  int stream = 0;
  int64_t drawn_row = 0;
  RandomInit init = RandomInit::kNormal;
  float scale = 0.1f;
};

std::vector<ShardTensor> shard_tensors(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  const ShardDims& d = w.dims;
  const int64_t dim = c.dim, hd = c.head_dim, qf = c.q_dim(), kvf = c.kv_dim(), f = c.ffn_dim;
  const Range q_rows{d.heads.begin * hd, d.heads.end * hd};
  const Range kv_rows{d.kv_heads.begin * hd, d.kv_heads.end * hd};
  const int64_t q = q_rows.size(), kv = kv_rows.size(), fl = d.ffn_dim();
  const Range all_dim{0, dim};
  std::vector<ShardTensor> out;
  int stream = -1;
  // A matrix part; `fused_row`: where the checkpoint tensor starts inside the drawn one (0 for
  // a tensor drawn alone, which starts a new stream).
  auto matrix = [&](std::string name, int64_t rows, int64_t cols, const Tensor& dst, Range r,
                    Range c_range, int64_t fused_row) {
    if (fused_row == 0) ++stream;
    const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
    out.push_back({std::move(name), {rows, cols}, dst, Window{r, c_range, cols}, stream,
                   fused_row + r.begin, RandomInit::kNormal, scale});
  };
  auto vector = [&](std::string name, int64_t n, const Tensor& dst, Range part, RandomInit init,
                    int64_t fused_row = 0) {
    if (fused_row == 0) ++stream;
    out.push_back({std::move(name), {n}, dst, Window{part, Range{0, 1}, 1}, stream,
                   fused_row + part.begin, init, 0.1f});
  };
  matrix("model.embed_tokens.weight", c.vocab_size, dim, w.embedding, d.vocab, all_dim, 0);
  out.back().scale = 1.0f;
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    auto name = [l](const char* suffix) {
      return "model.layers." + std::to_string(l) + "." + suffix;
    };
    vector(name("input_layernorm.weight"), dim, lw.attn_norm, all_dim, RandomInit::kOnesNoise);
    matrix(name("self_attn.q_proj.weight"), qf, dim, lw.wqkv.rows(0, q), q_rows, all_dim, 0);
    matrix(name("self_attn.k_proj.weight"), kvf, dim, lw.wqkv.rows(q, q + kv), kv_rows, all_dim,
           qf);
    matrix(name("self_attn.v_proj.weight"), kvf, dim, lw.wqkv.rows(q + kv, q + 2 * kv), kv_rows,
           all_dim, qf + kvf);
    if (c.qkv_bias) {
      vector(name("self_attn.q_proj.bias"), qf, lw.bqkv.rows(0, q), q_rows, RandomInit::kBias);
      vector(name("self_attn.k_proj.bias"), kvf, lw.bqkv.rows(q, q + kv), kv_rows,
             RandomInit::kBias, qf);
      vector(name("self_attn.v_proj.bias"), kvf, lw.bqkv.rows(q + kv, q + 2 * kv), kv_rows,
             RandomInit::kBias, qf + kvf);
    }
    if (c.qk_norm) {
      vector(name("self_attn.q_norm.weight"), hd, lw.q_norm, Range{0, hd}, RandomInit::kOnesNoise);
      vector(name("self_attn.k_norm.weight"), hd, lw.k_norm, Range{0, hd}, RandomInit::kOnesNoise);
    }
    matrix(name("self_attn.o_proj.weight"), dim, qf, lw.wo, all_dim, q_rows, 0);
    vector(name("post_attention_layernorm.weight"), dim, lw.ffn_norm, all_dim,
           RandomInit::kOnesNoise);
    matrix(name("mlp.gate_proj.weight"), f, dim, lw.w_gate_up.rows(0, fl), d.ffn, all_dim, 0);
    matrix(name("mlp.up_proj.weight"), f, dim, lw.w_gate_up.rows(fl, 2 * fl), d.ffn, all_dim, f);
    matrix(name("mlp.down_proj.weight"), dim, f, lw.w_down, all_dim, d.ffn, 0);
  }
  vector("model.norm.weight", dim, w.final_norm, all_dim, RandomInit::kOnesNoise);
  if (!c.tie_embeddings)
    matrix("lm_head.weight", c.vocab_size, dim, w.lm_head, d.vocab, all_dim, 0);
  return out;
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

ModelWeights load_weights(Backend& backend, const Checkpoint& ckpt, DType dtype, TpShard shard) {
  ModelWeights w = allocate(backend, ckpt.config, shard, dtype);
  std::vector<uint8_t> staging;  // a column slice, gathered from the mapped rows
  for (const ShardTensor& t : shard_tensors(w)) {
    const TensorView& v = ckpt.get(t.name, t.full_shape);
    const size_t elem = dtype_size(v.dtype);
    const Window& win = t.window;
    const uint8_t* first = v.data + (win.rows.begin * win.full_cols + win.cols.begin) * elem;
    if (win.cols.size() == win.full_cols) {  // whole rows: contiguous in the file
      backend.upload_convert(first, v.dtype, t.dst);
      continue;
    }
    const size_t row_bytes = static_cast<size_t>(win.cols.size()) * elem;
    staging.resize(row_bytes * static_cast<size_t>(win.rows.size()));
    for (int64_t r = 0; r < win.rows.size(); ++r)
      std::memcpy(staging.data() + static_cast<size_t>(r) * row_bytes,
                  first + static_cast<size_t>(r * win.full_cols) * elem, row_bytes);
    backend.upload_convert(staging.data(), v.dtype, t.dst);
    backend.synchronize();  // before staging is reused
  }
  w.content_hash = ckpt.content_hash;
  backend.synchronize();
  return w;
}

ModelWeights dummy_weights(Backend& backend, const ModelConfig& c, DType dtype, uint64_t seed,
                           TpShard shard) {
  c.validate("dummy config");
  ModelWeights w = allocate(backend, c, shard, dtype);
  for (const ShardTensor& t : shard_tensors(w)) {
    const Window& win = t.window;
    const bool matrix = t.full_shape.size() == 2;
    const RandomWindow rw{t.drawn_row * win.full_cols + win.cols.begin,
                          matrix ? win.cols.size() : 0, win.full_cols};
    backend.fill_random(t.dst, seed * 1000003ULL + static_cast<uint64_t>(t.stream), t.init,
                        t.scale, rw);
  }
  w.content_hash = XXH64(&seed, sizeof seed, 0x6475'6d6d'79ULL);
  backend.synchronize();
  return w;
}

}  // namespace llm42
