// The model's fixed dimensions and numerics, whatever file they came from (HF config.json, GGUF
// metadata, llama2.c header, or a dummy preset).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/rope_layout.h"
#include "core/tensor.h"

namespace llm42 {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3 };
std::string_view architecture_name(Architecture a);  // the HF class name, e.g. "LlamaForCausalLM"

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;                 // llama3 only
  double high_freq_factor = 4.0;                // llama3 only
  int original_max_position_embeddings = 8192;  // llama3 only
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int vocab_size = 0;
  int dim = 0;  // hidden_size
  int n_layers = 0;
  int n_heads = 0;      // query heads
  int n_kv_heads = 0;   // key/value heads (GQA when < n_heads)
  int head_dim = 0;     // explicit for Qwen3; dim / n_heads otherwise
  int ffn_dim = 0;      // intermediate_size of the SwiGLU MLP
  int max_seq_len = 0;  // max_position_embeddings
  float norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Per-pair divisors of the inverse frequencies, (head_dim / 2) values or empty: GGUF files of
  // Llama 3.1+ store their RoPE scaling this way (tensor `rope_freqs.weight`).
  std::vector<double> rope_freq_factors;
  RopeLayout rope_layout = RopeLayout::kHalf;
  bool tie_embeddings = false;        // output head shares the embedding table
  bool qkv_bias = false;              // Qwen2: biases on q, k, v projections
  bool qk_norm = false;               // Qwen3: RMSNorm over each head of q and k before RoPE
  int bos_id = 1;                     // -1: the model has no BOS token
  std::vector<int> eos_ids{2};        // any of them ends a sequence (Llama 3 has three)
  DType weights_dtype = DType::kF32;  // as stored in the checkpoint

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Parameter count (embedding and head counted once when tied).
  int64_t n_params() const;
  // Throws llm42::Error naming `source` and the field when a value is missing or inconsistent.
  void validate(std::string_view source) const;
};

// Parses a Hugging Face config.json (transformers 4 and 5 key names: `rope_parameters` or
// `rope_theta` + `rope_scaling`, `dtype` or `torch_dtype`). `source` names the file in errors.
ModelConfig parse_hf_config(const nlohmann::json& j, std::string_view source);

// RoPE inverse frequencies for pair i in [0, head_dim/2), scaling applied (double precision):
// theta^(-2i/head_dim), then linear (/ factor) or Llama 3 scaling exactly as transformers'
// `_compute_llama3_parameters`, then `rope_freq_factors`.
std::vector<double> rope_inv_freq(const ModelConfig& c);

}  // namespace llm42
