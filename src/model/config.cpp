// ModelConfig: Hugging Face config.json parsing, validation, parameter count and RoPE frequencies.
#include "model/config.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>

#include "util/error.h"

namespace llm42 {
namespace {

using nlohmann::json;

// Typed access to one JSON object of a config file. Every error names the file and the field by
// its full path (e.g. 'rope_scaling.factor') and shows the value found.
class Fields {
 public:
  Fields(const json& j, std::string_view source, std::string prefix = "")
      : j_(j), source_(source), prefix_(std::move(prefix)) {}

  std::string_view source() const { return source_; }
  std::string path(std::string_view key) const { return prefix_ + std::string(key); }

  // The value of `key`, or null when it is absent or JSON null (HF writes null for "unset").
  const json* find(std::string_view key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  [[noreturn]] void bad(std::string_view key, const json& v, std::string_view why) const {
    std::string shown = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (shown.size() > 200) shown = shown.substr(0, 200) + "...";
    fail("{}: field '{}' = {} {}", source_, path(key), shown, why);
  }
  [[noreturn]] void missing(std::string_view key) const {
    fail("{}: field '{}' is missing", source_, path(key));
  }

  std::optional<int> opt_int(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) bad(key, *v, "is not an integer");
    if (v->is_number_unsigned()) {
      if (v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int>::max()))
        bad(key, *v, "is out of range");
      return static_cast<int>(v->get<uint64_t>());
    }
    const int64_t i = v->get<int64_t>();
    if (i < std::numeric_limits<int>::min() || i > std::numeric_limits<int>::max())
      bad(key, *v, "is out of range");
    return static_cast<int>(i);
  }
  int positive_int(std::string_view key) const {
    const std::optional<int> v = opt_int(key);
    if (!v) missing(key);
    if (*v <= 0) bad(key, *find(key), "must be positive");
    return *v;
  }

  std::optional<double> opt_number(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) bad(key, *v, "is not a number");
    const double d = v->get<double>();
    if (!std::isfinite(d)) bad(key, *v, "is not finite");
    return d;
  }
  double positive_number(std::string_view key) const {
    const std::optional<double> v = opt_number(key);
    if (!v) missing(key);
    if (*v <= 0) bad(key, *find(key), "must be positive");
    return *v;
  }

  std::optional<bool> opt_bool(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) bad(key, *v, "is not true or false");
    return v->get<bool>();
  }

  std::optional<std::string> opt_string(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) bad(key, *v, "is not a string");
    return v->get<std::string>();
  }

  // A nested object as Fields, or nullopt when absent or null.
  std::optional<Fields> opt_object(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_object()) bad(key, *v, "is not an object");
    return Fields(*v, source_, path(key) + ".");
  }

 private:
  const json& j_;
  std::string_view source_;
  std::string prefix_;
};

struct ArchInfo {
  Architecture arch;
  std::string_view class_name;
  std::string_view model_type;
};
constexpr ArchInfo kArchitectures[] = {
    {Architecture::kLlama, "LlamaForCausalLM", "llama"},
    {Architecture::kMistral, "MistralForCausalLM", "mistral"},
    {Architecture::kQwen2, "Qwen2ForCausalLM", "qwen2"},
    {Architecture::kQwen3, "Qwen3ForCausalLM", "qwen3"},
};

std::string supported_classes() {
  std::string s;
  for (const ArchInfo& a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a.class_name);
  return s;
}

// `architectures` (the class transformers instantiates) decides; `model_type` is the fallback for
// configs written without it.
Architecture parse_architecture(const Fields& f) {
  if (const json* archs = f.find("architectures")) {
    if (!archs->is_array() || archs->empty()) f.bad("architectures", *archs, "is not a list");
    for (const json& a : *archs) {
      if (!a.is_string()) f.bad("architectures", *archs, "is not a list of class names");
      for (const ArchInfo& info : kArchitectures)
        if (a.get<std::string>() == info.class_name) return info.arch;
    }
    f.bad("architectures", *archs, "is not supported (supported: " + supported_classes() + ")");
  }
  const std::optional<std::string> type = f.opt_string("model_type");
  if (!type)
    fail("{}: neither 'architectures' nor 'model_type' is given (supported: {})", f.source(),
         supported_classes());
  for (const ArchInfo& info : kArchitectures)
    if (*type == info.model_type) return info.arch;
  f.bad("model_type", *f.find("model_type"),
        "is not supported (supported: llama, mistral, qwen2, qwen3)");
}

DType parse_weights_dtype(const Fields& f) {
  for (const char* key : {"dtype", "torch_dtype"}) {
    const std::optional<std::string> s = f.opt_string(key);
    if (!s) continue;
    if (*s == "float32") return DType::kF32;
    if (*s == "float16") return DType::kF16;
    if (*s == "bfloat16") return DType::kBF16;
    f.bad(key, *f.find(key), "is not supported (float32, float16, bfloat16 are)");
  }
  return DType::kF32;  // transformers' default when the config does not say
}

// The scaling keys of one RoPE object (`rope_parameters` or `rope_scaling`).
RopeScaling parse_rope_scaling(const Fields& r) {
  RopeScaling s;
  const char* type_key = r.find("rope_type") != nullptr ? "rope_type" : "type";
  const std::optional<std::string> type = r.opt_string(type_key);
  if (!type) r.missing("rope_type");
  if (*type == "default") return s;
  if (*type == "linear") {
    s.type = RopeScaling::Type::kLinear;
    s.factor = r.positive_number("factor");
    return s;
  }
  if (*type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
    s.factor = r.positive_number("factor");
    s.low_freq_factor = r.positive_number("low_freq_factor");
    s.high_freq_factor = r.positive_number("high_freq_factor");
    s.original_max_position_embeddings = r.positive_int("original_max_position_embeddings");
    if (s.high_freq_factor <= s.low_freq_factor)
      r.bad("high_freq_factor", *r.find("high_freq_factor"),
            fmt::format("must be greater than low_freq_factor = {}", s.low_freq_factor));
    return s;
  }
  r.bad(type_key, *r.find(type_key), "is not supported (default, linear, llama3 are)");
}

void parse_rope(const Fields& f, ModelConfig& c) {
  // transformers 5 writes everything RoPE under `rope_parameters`; transformers 4 writes
  // `rope_theta` at the top level and the scaling, if any, under `rope_scaling`.
  const std::optional<Fields> params = f.find("rope_parameters") != nullptr
                                           ? f.opt_object("rope_parameters")
                                           : f.opt_object("rope_scaling");
  if (params && params->opt_number("rope_theta")) {
    c.rope_theta = params->positive_number("rope_theta");
  } else if (f.opt_number("rope_theta")) {
    c.rope_theta = f.positive_number("rope_theta");
  }
  if (params) c.rope_scaling = parse_rope_scaling(*params);
  for (const Fields* g : {&f, params ? &*params : nullptr}) {
    if (g == nullptr) continue;
    const std::optional<double> partial = g->opt_number("partial_rotary_factor");
    if (partial && *partial != 1.0)
      g->bad("partial_rotary_factor", *g->find("partial_rotary_factor"),
             "is not supported (RoPE over the whole head only)");
  }
}

// Sliding-window attention is not implemented; a window that covers every position is the same
// as full attention and is accepted.
void check_sliding_window(const Fields& f, const ModelConfig& c) {
  const bool qwen = c.arch == Architecture::kQwen2 || c.arch == Architecture::kQwen3;
  if (qwen && !f.opt_bool("use_sliding_window").value_or(false)) return;
  const std::optional<int> window = f.opt_int("sliding_window");
  if (window && *window < c.max_seq_len)
    f.bad("sliding_window", *f.find("sliding_window"),
          fmt::format("is not supported: sliding-window attention is not implemented (null or "
                      ">= max_position_embeddings = {} is)",
                      c.max_seq_len));
  if (const json* types = f.find("layer_types")) {
    if (!types->is_array()) f.bad("layer_types", *types, "is not a list");
    for (const json& t : *types)
      if (t != "full_attention")
        f.bad("layer_types", *types, "is not supported (only full_attention layers are)");
  }
}

std::vector<int> parse_eos(const Fields& f, std::vector<int> fallback) {
  const json* v = f.find("eos_token_id");
  if (v == nullptr) return fallback;
  if (v->is_number_integer()) return {*f.opt_int("eos_token_id")};
  if (!v->is_array()) f.bad("eos_token_id", *v, "is not an integer or a list of integers");
  std::vector<int> ids;
  for (const json& e : *v) {
    if (!e.is_number_integer() || e.get<int64_t>() < 0 ||
        e.get<int64_t>() > std::numeric_limits<int>::max())
      f.bad("eos_token_id", *v, "is not a list of token ids");
    ids.push_back(e.get<int>());
  }
  return ids;
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

}  // namespace

std::string_view architecture_name(Architecture a) {
  for (const ArchInfo& info : kArchitectures)
    if (info.arch == a) return info.class_name;
  return "?";
}

int64_t ModelConfig::n_params() const {
  const int64_t d = dim, q = q_dim(), kv = kv_dim(), f = ffn_dim;
  int64_t layer = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * f;
  if (qkv_bias) layer += q + 2 * kv;
  if (qk_norm) layer += 2LL * head_dim;
  const int64_t head = tie_embeddings ? 0 : int64_t{vocab_size} * d;
  return int64_t{vocab_size} * d + n_layers * layer + d + head;
}

void ModelConfig::validate(std::string_view source) const {
  // Limits far above any published model keep every size computation below in int64 (and
  // q_dim()/kv_dim() in int) whatever a corrupt file says.
  constexpr struct {
    const char* field;
    int ModelConfig::*member;
    int max;
  } kDims[] = {
      {"vocab_size", &ModelConfig::vocab_size, 1 << 24},
      {"hidden_size", &ModelConfig::dim, 1 << 20},
      {"num_hidden_layers", &ModelConfig::n_layers, 1 << 14},
      {"num_attention_heads", &ModelConfig::n_heads, 1 << 14},
      {"num_key_value_heads", &ModelConfig::n_kv_heads, 1 << 14},
      {"head_dim", &ModelConfig::head_dim, 1 << 14},
      {"intermediate_size", &ModelConfig::ffn_dim, 1 << 22},
      {"max_position_embeddings", &ModelConfig::max_seq_len, 1 << 28},
  };
  for (const auto& d : kDims) {
    const int v = this->*d.member;
    if (v <= 0) fail("{}: field '{}' = {} must be positive", source, d.field, v);
    if (v > d.max)
      fail("{}: field '{}' = {} is implausibly large (limit {})", source, d.field, v, d.max);
  }
  if (n_heads % n_kv_heads != 0)
    fail("{}: field 'num_key_value_heads' = {} does not divide num_attention_heads = {}", source,
         n_kv_heads, n_heads);
  if (head_dim % 2 != 0)
    fail("{}: field 'head_dim' = {} must be even (RoPE rotates pairs)", source, head_dim);
  if (int64_t{n_heads} * head_dim > (1 << 24))
    fail("{}: num_attention_heads {} * head_dim {} is implausibly large", source, n_heads,
         head_dim);
  if (!(norm_eps > 0.0f) || !std::isfinite(norm_eps))
    fail("{}: field 'rms_norm_eps' = {} must be positive and finite", source, norm_eps);
  if (!(rope_theta > 0.0) || !std::isfinite(rope_theta))
    fail("{}: field 'rope_theta' = {} must be positive and finite", source, rope_theta);
  const RopeScaling& s = rope_scaling;
  if (s.type != RopeScaling::Type::kNone && !(s.factor > 0.0 && std::isfinite(s.factor)))
    fail("{}: RoPE scaling factor = {} must be positive and finite", source, s.factor);
  if (s.type == RopeScaling::Type::kLlama3 &&
      !(s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor &&
        std::isfinite(s.high_freq_factor) && s.original_max_position_embeddings > 0))
    fail(
        "{}: llama3 RoPE scaling needs 0 < low_freq_factor < high_freq_factor and "
        "original_max_position_embeddings > 0 (found {}, {}, {})",
        source, s.low_freq_factor, s.high_freq_factor, s.original_max_position_embeddings);
  if (!rope_freq_factors.empty()) {
    if (rope_freq_factors.size() != static_cast<size_t>(head_dim / 2))
      fail("{}: {} RoPE frequency factors, expected head_dim / 2 = {}", source,
           rope_freq_factors.size(), head_dim / 2);
    for (size_t i = 0; i < rope_freq_factors.size(); ++i)
      if (!(rope_freq_factors[i] > 0.0) || !std::isfinite(rope_freq_factors[i]))
        fail("{}: RoPE frequency factor {} = {} must be positive and finite", source, i,
             rope_freq_factors[i]);
  }
  if (bos_id < -1 || bos_id >= vocab_size)
    fail("{}: field 'bos_token_id' = {} is outside the vocabulary of {}", source, bos_id,
         vocab_size);
  for (int id : eos_ids)
    if (id < 0 || id >= vocab_size)
      fail("{}: field 'eos_token_id' = [{}] has id {} outside the vocabulary of {}", source,
           join(eos_ids), id, vocab_size);
  if (weights_dtype != DType::kF32 && weights_dtype != DType::kF16 && weights_dtype != DType::kBF16)
    fail("{}: weights dtype {} is not a floating-point type", source, dtype_name(weights_dtype));
}

ModelConfig parse_hf_config(const nlohmann::json& j, std::string_view source) {
  if (!j.is_object()) fail("{}: not a JSON object", source);
  const Fields f(j, source);
  ModelConfig c;
  c.arch = parse_architecture(f);
  c.rope_layout = RopeLayout::kHalf;
  c.vocab_size = f.positive_int("vocab_size");
  c.dim = f.positive_int("hidden_size");
  c.n_layers = f.positive_int("num_hidden_layers");
  c.n_heads = f.positive_int("num_attention_heads");
  c.n_kv_heads =
      f.opt_int("num_key_value_heads") ? f.positive_int("num_key_value_heads") : c.n_heads;
  c.ffn_dim = f.positive_int("intermediate_size");
  c.max_seq_len = f.positive_int("max_position_embeddings");
  if (f.opt_int("head_dim")) {
    c.head_dim = f.positive_int("head_dim");
  } else if (c.arch == Architecture::kQwen3) {
    c.head_dim = 128;  // Qwen3Config's default; every published Qwen3 config writes it anyway
  } else {
    if (c.dim % c.n_heads != 0)
      f.bad("hidden_size", *f.find("hidden_size"),
            fmt::format("is not divisible by num_attention_heads = {} (and head_dim is not given)",
                        c.n_heads));
    c.head_dim = c.dim / c.n_heads;
  }
  // All four architectures default to 1e-6 in transformers.
  c.norm_eps =
      f.opt_number("rms_norm_eps") ? static_cast<float>(f.positive_number("rms_norm_eps")) : 1e-6f;
  parse_rope(f, c);
  check_sliding_window(f, c);

  if (const std::optional<std::string> act = f.opt_string("hidden_act"); act && *act != "silu")
    f.bad("hidden_act", *f.find("hidden_act"), "is not supported (only silu, for SwiGLU)");
  if (f.opt_bool("mlp_bias").value_or(false))
    f.bad("mlp_bias", *f.find("mlp_bias"), "is not supported (MLP projections have no bias)");
  // Qwen2 always has q/k/v biases and never an o bias, whatever `attention_bias` says; for the
  // others `attention_bias` adds a bias to q, k, v and o, which is not implemented.
  c.qkv_bias = c.arch == Architecture::kQwen2;
  if (c.arch != Architecture::kQwen2 && f.opt_bool("attention_bias").value_or(false))
    f.bad("attention_bias", *f.find("attention_bias"),
          "is not supported (no biases on the attention projections)");
  c.qk_norm = c.arch == Architecture::kQwen3;
  c.tie_embeddings = f.opt_bool("tie_word_embeddings").value_or(false);

  // Llama and Mistral configs default to BOS 1 / EOS 2; Qwen's define none.
  const bool qwen = c.arch == Architecture::kQwen2 || c.arch == Architecture::kQwen3;
  c.bos_id = f.opt_int("bos_token_id").value_or(qwen ? -1 : 1);
  c.eos_ids = parse_eos(f, qwen ? std::vector<int>{} : std::vector<int>{2});
  c.weights_dtype = parse_weights_dtype(f);
  c.validate(source);
  return c;
}

std::vector<double> rope_inv_freq(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i)
    inv[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
  const RopeScaling& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::kLinear) {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == RopeScaling::Type::kLlama3) {
    // transformers' _compute_llama3_parameters, operation for operation: wavelengths above the
    // original context are divided by `factor`, those below context / high_freq_factor kept, and
    // the band between interpolated smoothly.
    const double old_context = s.original_max_position_embeddings;
    const double low_freq_wavelen = old_context / s.low_freq_factor;
    const double high_freq_wavelen = old_context / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      const double scaled = wavelen > low_freq_wavelen ? f / s.factor : f;
      const double smooth =
          (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      const double smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      f = medium ? smoothed : scaled;
    }
  }
  if (!c.rope_freq_factors.empty()) {
    for (int i = 0; i < half; ++i) inv[i] /= c.rope_freq_factors[static_cast<size_t>(i)];
  }
  return inv;
}

}  // namespace llm42
