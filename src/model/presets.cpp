// Preset configs, copied from each model's published config.json (Hugging Face hub).
#include "model/presets.h"

#include <fmt/ranges.h>

#include "util/error.h"

namespace llm42 {
namespace {

struct Preset {
  const char* name;
  ModelConfig (*make)();
};

ModelConfig base(Architecture arch, int vocab, int dim, int layers, int heads, int kv_heads,
                 int head_dim, int ffn, int max_seq_len, float eps, double theta) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = vocab;
  c.dim = dim;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.ffn_dim = ffn;
  c.max_seq_len = max_seq_len;
  c.norm_eps = eps;
  c.rope_theta = theta;
  c.rope_layout = RopeLayout::kHalf;
  c.qkv_bias = arch == Architecture::kQwen2;
  c.qk_norm = arch == Architecture::kQwen3;
  c.weights_dtype = DType::kBF16;
  return c;
}

// Llama 3.1+ RoPE: frequencies below the original 8192-token context divided by `factor`.
RopeScaling llama3_scaling(double factor) {
  RopeScaling s;
  s.type = RopeScaling::Type::kLlama3;
  s.factor = factor;
  s.low_freq_factor = 1.0;
  s.high_freq_factor = 4.0;
  s.original_max_position_embeddings = 8192;
  return s;
}

// Llama 3.1 / 3.3 Instruct special tokens: <|begin_of_text|>; <|end_of_text|>, <|eom_id|>,
// <|eot_id|>.
ModelConfig llama3(ModelConfig c, double factor, bool tied) {
  c.rope_scaling = llama3_scaling(factor);
  c.tie_embeddings = tied;
  c.bos_id = 128000;
  c.eos_ids = {128001, 128008, 128009};
  return c;
}

constexpr Preset kPresets[] = {
    // A small Llama shape for quick runs and tests (not a published model).
    {"tiny",
     [] {
       ModelConfig c = base(Architecture::kLlama, 512, 256, 4, 8, 4, 32, 768, 2048, 1e-5f, 1e4);
       c.bos_id = 1;
       c.eos_ids = {2};
       return c;
     }},
    // meta-llama/Llama-3.2-1B-Instruct
    {"llama-3.2-1b",
     [] {
       return llama3(
           base(Architecture::kLlama, 128256, 2048, 16, 32, 8, 64, 8192, 131072, 1e-5f, 5e5), 32.0,
           true);
     }},
    // meta-llama/Llama-3.1-8B-Instruct
    {"llama-3.1-8b",
     [] {
       return llama3(
           base(Architecture::kLlama, 128256, 4096, 32, 32, 8, 128, 14336, 131072, 1e-5f, 5e5), 8.0,
           false);
     }},
    // meta-llama/Llama-3.3-70B-Instruct
    {"llama-3.3-70b",
     [] {
       return llama3(
           base(Architecture::kLlama, 128256, 8192, 80, 64, 8, 128, 28672, 131072, 1e-5f, 5e5), 8.0,
           false);
     }},
    // mistralai/Mistral-7B-Instruct-v0.3 (no sliding window)
    {"mistral-7b",
     [] {
       ModelConfig c =
           base(Architecture::kMistral, 32768, 4096, 32, 32, 8, 128, 14336, 32768, 1e-5f, 1e6);
       c.bos_id = 1;
       c.eos_ids = {2};
       return c;
     }},
    // Qwen/Qwen2.5-7B-Instruct: <|endoftext|> as BOS, <|im_end|> as EOS
    {"qwen2.5-7b",
     [] {
       ModelConfig c =
           base(Architecture::kQwen2, 152064, 3584, 28, 28, 4, 128, 18944, 32768, 1e-6f, 1e6);
       c.bos_id = 151643;
       c.eos_ids = {151645};
       return c;
     }},
    // Qwen/Qwen3-8B
    {"qwen3-8b",
     [] {
       ModelConfig c =
           base(Architecture::kQwen3, 151936, 4096, 36, 32, 8, 128, 12288, 40960, 1e-6f, 1e6);
       c.bos_id = 151643;
       c.eos_ids = {151645};
       return c;
     }},
};

}  // namespace

ModelConfig preset_config(std::string_view name) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    ModelConfig c = p.make();
    c.validate(fmt::format("preset '{}'", name));
    return c;
  }
  fail("unknown model preset '{}' (presets: {})", name, fmt::join(preset_names(), ", "));
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

}  // namespace llm42
