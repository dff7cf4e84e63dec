// Checkpoint lookups and the tensor list each architecture needs.
#include "model/checkpoint.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>

#include "util/error.h"

namespace llm42 {

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

namespace {

// The index of the first of n elements of type U whose exponent bits (`mask`) are all set (NaN
// or an infinity), or -1. Blocks are scanned without branches first, so the common all-finite
// case runs at memory speed.
template <typename U>
int64_t first_all_ones(const uint8_t* data, int64_t n, U mask) {
  constexpr int64_t kBlock = 4096;
  auto bad = [&](int64_t i) {
    U x;
    std::memcpy(&x, data + i * static_cast<int64_t>(sizeof(U)), sizeof(U));
    return (x & mask) == mask;
  };
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    bool any = false;
    for (int64_t i = b; i < e; ++i) any |= bad(i);
    if (!any) continue;
    for (int64_t i = b; i < e; ++i)
      if (bad(i)) return i;
  }
  return -1;
}

}  // namespace

void check_finite(const TensorView& t) {
  const int64_t n = static_cast<int64_t>(t.nbytes / dtype_size(t.dtype));
  int64_t at = -1;
  switch (t.dtype) {
    case DType::kF32:
      at = first_all_ones<uint32_t>(t.data, n, 0x7F80'0000u);
      break;
    case DType::kF16:
      at = first_all_ones<uint16_t>(t.data, n, 0x7C00u);
      break;
    case DType::kBF16:
      at = first_all_ones<uint16_t>(t.data, n, 0x7F80u);
      break;
    case DType::kI32:
      return;
  }
  if (at < 0) return;
  // The element's index in the tensor's shape, outermost first.
  std::vector<int64_t> index(t.shape.size());
  int64_t rest = at;
  for (size_t d = t.shape.size(); d-- > 0;) {
    index[d] = t.shape[d] > 0 ? rest % t.shape[d] : 0;
    rest = t.shape[d] > 0 ? rest / t.shape[d] : 0;
  }
  fail(
      "{}: tensor '{}' {} holds a non-finite value (NaN or Inf) at [{}]: the model would "
      "produce NaN logits",
      t.file, t.name, t.shape_string(), fmt::join(index, ", "));
}

const TensorView* Checkpoint::find(const std::string& name) const {
  const auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

const TensorView& Checkpoint::get(const std::string& name,
                                  const std::vector<int64_t>& shape) const {
  const TensorView* t = find(name);
  if (t == nullptr) fail("{}: tensor '{}' is missing", path, name);
  if (t->shape != shape)
    fail("{}: tensor '{}' has shape {}, expected [{}]", t->file, name, t->shape_string(),
         fmt::join(shape, ", "));
  return *t;
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  using Init = TensorSpec::Init;
  const int64_t d = c.dim, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_dim, v = c.vocab_size;
  // How each dimension follows from the config, in Hugging Face field names.
  const std::string hidden = fmt::format("hidden_size {}", c.dim);
  const std::string q_rows =
      fmt::format("num_attention_heads {} * head_dim {}", c.n_heads, c.head_dim);
  const std::string kv_rows =
      fmt::format("num_key_value_heads {} * head_dim {}", c.n_kv_heads, c.head_dim);
  const std::string ffn = fmt::format("intermediate_size {}", c.ffn_dim);
  const std::string vocab = fmt::format("vocab_size {}", c.vocab_size);
  const std::string head = fmt::format("head_dim {}", c.head_dim);

  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape, Init init, const std::string& rows,
                 const std::string& cols = "") {
    specs.push_back({std::move(name), std::move(shape), init,
                     cols.empty() ? "(" + rows + ")" : "(" + rows + ", " + cols + ")"});
  };
  add("model.embed_tokens.weight", {v, d}, Init::kNormal, vocab, hidden);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {d}, Init::kOnesNoise, hidden);
    add(p + "self_attn.q_proj.weight", {q, d}, Init::kNormal, q_rows, hidden);
    add(p + "self_attn.k_proj.weight", {kv, d}, Init::kNormal, kv_rows, hidden);
    add(p + "self_attn.v_proj.weight", {kv, d}, Init::kNormal, kv_rows, hidden);
    if (c.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {q}, Init::kBias, q_rows);
      add(p + "self_attn.k_proj.bias", {kv}, Init::kBias, kv_rows);
      add(p + "self_attn.v_proj.bias", {kv}, Init::kBias, kv_rows);
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {c.head_dim}, Init::kOnesNoise, head);
      add(p + "self_attn.k_norm.weight", {c.head_dim}, Init::kOnesNoise, head);
    }
    add(p + "self_attn.o_proj.weight", {d, q}, Init::kNormal, hidden, q_rows);
    add(p + "post_attention_layernorm.weight", {d}, Init::kOnesNoise, hidden);
    add(p + "mlp.gate_proj.weight", {f, d}, Init::kNormal, ffn, hidden);
    add(p + "mlp.up_proj.weight", {f, d}, Init::kNormal, ffn, hidden);
    add(p + "mlp.down_proj.weight", {d, f}, Init::kNormal, hidden, ffn);
  }
  add("model.norm.weight", {d}, Init::kOnesNoise, hidden);
  if (!c.tie_embeddings) add("lm_head.weight", {v, d}, Init::kNormal, vocab, hidden);
  return specs;
}

}  // namespace llm42
