// llama2.c checkpoint loading: header to config, stacked fp32 arrays to per-layer tensor views.
#include "model/llama2c.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "util/error.h"

namespace llm42 {
namespace {

constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);
// llama2.c's later export versions start with this magic ("ak42") instead of the legacy header.
constexpr int32_t kVersionedMagic = 0x616b3432;

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Checks the header with its own field names. The limits, far above any llama2.c model, keep
// every byte count below within uint64.
void check_header(const std::string& path, const Header& h) {
  const struct {
    const char* field;
    int64_t value;
    int64_t max;
  } fields[] = {
      {"dim", h.dim, 1 << 20},
      {"hidden_dim", h.hidden_dim, 1 << 22},
      {"n_layers", h.n_layers, 1 << 14},
      {"n_heads", h.n_heads, 1 << 14},
      {"n_kv_heads", h.n_kv_heads, 1 << 14},
      // INT32_MIN has no absolute value.
      {"vocab_size",
       h.vocab_size == std::numeric_limits<int32_t>::min() ? 0 : std::abs(h.vocab_size), 1 << 24},
      {"seq_len", h.seq_len, 1 << 28},
  };
  for (const auto& f : fields) {
    if (f.value <= 0)
      fail("{}: header field '{}' = {} must be {} (not a llama2.c checkpoint?)", path, f.field,
           f.value, std::string_view(f.field) == "vocab_size" ? "non-zero" : "positive");
    if (f.value > f.max)
      fail(
          "{}: header field '{}' = {} is implausibly large (limit {}; not a llama2.c "
          "checkpoint?)",
          path, f.field, f.value, f.max);
  }
  if (h.dim % h.n_heads != 0)
    fail("{}: header field 'n_heads' = {} does not divide dim = {}", path, h.n_heads, h.dim);
  if (h.n_heads % h.n_kv_heads != 0)
    fail("{}: header field 'n_kv_heads' = {} does not divide n_heads = {}", path, h.n_kv_heads,
         h.n_heads);
  if ((h.dim / h.n_heads) % 2 != 0)
    fail("{}: head size dim / n_heads = {} must be even (RoPE rotates pairs)", path,
         h.dim / h.n_heads);
}

}  // namespace

Checkpoint load_llama2c(const std::string& path) {
  auto file = std::make_unique<MappedFile>(path);
  const uint64_t size = file->size();
  if (size < kHeaderBytes)
    fail("{}: {} bytes is too short for the llama2.c header (7 int32, 28 bytes)", path, size);
  Header h;
  std::memcpy(&h, file->data(), kHeaderBytes);
  if (h.dim == kVersionedMagic)
    fail(
        "{}: llama2.c versioned export (magic \"ak42\", version {}) is not supported; export "
        "with the legacy format that run.c reads",
        path, h.hidden_dim);
  check_header(path, h);

  Checkpoint ckpt;
  ckpt.path = path;
  ckpt.format = "llama2c";
  ckpt.config_source = path + " (llama2.c header)";
  ModelConfig& c = ckpt.config;
  c.arch = Architecture::kLlama;
  c.vocab_size = std::abs(h.vocab_size);
  c.dim = h.dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.ffn_dim = h.hidden_dim;
  c.max_seq_len = h.seq_len;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0;
  c.rope_layout = RopeLayout::kInterleaved;
  c.tie_embeddings = h.vocab_size > 0;
  c.bos_id = 1;
  c.eos_ids = {2};
  c.weights_dtype = DType::kF32;

  const int64_t d = c.dim, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn_dim, v = c.vocab_size;
  uint64_t pos = kHeaderBytes;
  // Lays out the next array of `layers` (0: not stacked) fp32 tensors of `shape` and adds one
  // view per layer. `hf` holds the Hugging Face name, with {} for the layer.
  auto take = [&](const char* what, int64_t layers, const std::vector<int64_t>& shape,
                  const std::string& hf) {
    uint64_t one = sizeof(float);
    for (int64_t n : shape) one *= static_cast<uint64_t>(n);
    const int64_t n = layers == 0 ? 1 : layers;
    for (int64_t l = 0; l < n; ++l) {
      const std::string name = layers == 0 ? hf : fmt::format(fmt::runtime(hf), l);
      if (one > size - pos)
        fail(
            "{}: tensor '{}' (llama2.c {}{}) at bytes [{}, {}) runs past the end of the file "
            "({} bytes): truncated file or wrong header",
            path, name, what, layers == 0 ? "" : fmt::format("[{}]", l), pos, pos + one, size);
      TensorView t;
      t.name = name;
      t.dtype = DType::kF32;
      t.shape = shape;
      t.data = file->data() + pos;
      t.nbytes = one;
      t.file = path;
      ckpt.tensors.emplace(name, std::move(t));
      pos += one;
    }
  };
  const int64_t L = c.n_layers;
  take("token_embedding", 0, {v, d}, "model.embed_tokens.weight");
  take("rms_att", L, {d}, "model.layers.{}.input_layernorm.weight");
  take("wq", L, {q, d}, "model.layers.{}.self_attn.q_proj.weight");
  take("wk", L, {kv, d}, "model.layers.{}.self_attn.k_proj.weight");
  take("wv", L, {kv, d}, "model.layers.{}.self_attn.v_proj.weight");
  take("wo", L, {d, q}, "model.layers.{}.self_attn.o_proj.weight");
  take("rms_ffn", L, {d}, "model.layers.{}.post_attention_layernorm.weight");
  take("w1", L, {f, d}, "model.layers.{}.mlp.gate_proj.weight");
  take("w2", L, {d, f}, "model.layers.{}.mlp.down_proj.weight");
  take("w3", L, {f, d}, "model.layers.{}.mlp.up_proj.weight");
  take("rms_final", 0, {d}, "model.norm.weight");
  const uint64_t tensors_end = pos;
  const uint64_t rope_tables = 2 * static_cast<uint64_t>(h.seq_len) * (c.head_dim / 2) * 4;
  if (c.tie_embeddings) {
    if (size != tensors_end && size != tensors_end + rope_tables)
      fail(
          "{}: file has {} bytes; the header implies {} (tensors) or {} (tensors and the "
          "{}-byte RoPE tables): truncated file or wrong header",
          path, size, tensors_end, tensors_end + rope_tables, rope_tables);
  } else {
    if (size - pos < rope_tables)
      fail(
          "{}: the RoPE tables at bytes [{}, {}) run past the end of the file ({} bytes), "
          "before the classifier: truncated file or wrong header",
          path, pos, pos + rope_tables, size);
    pos += rope_tables;
    take("wcls", 0, {v, d}, "lm_head.weight");
    if (size != pos)
      fail("{}: file has {} bytes; the header implies {}: wrong header or trailing data", path,
           size, pos);
  }
  ckpt.files.push_back(std::move(file));
  return ckpt;
}

}  // namespace llm42
