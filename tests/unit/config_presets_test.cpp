// Model presets: every preset validates, and the published shapes are what the model cards say.
#include <gtest/gtest.h>

#include "model/checkpoint.h"
#include "model/presets.h"
#include "util/error.h"

namespace llm42 {
namespace {

TEST(ConfigPresets, AllValidate) {
  const std::vector<std::string> names = preset_names();
  for (const char* want : {"tiny", "llama-3.1-8b", "llama-3.2-1b", "qwen3-8b", "qwen2.5-7b",
                           "mistral-7b", "llama-3.3-70b"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  for (const std::string& n : names) {
    SCOPED_TRACE(n);
    const ModelConfig c = preset_config(n);
    c.validate(n);
    EXPECT_EQ(c.weights_dtype, DType::kBF16);
    EXPECT_EQ(c.rope_layout, RopeLayout::kHalf);
    EXPECT_FALSE(expected_tensors(c).empty());
  }
}

TEST(ConfigPresets, PublishedShapes) {
  const ModelConfig l8 = preset_config("llama-3.1-8b");
  EXPECT_EQ(l8.vocab_size, 128256);
  EXPECT_EQ(l8.dim, 4096);
  EXPECT_EQ(l8.n_layers, 32);
  EXPECT_EQ(l8.n_heads, 32);
  EXPECT_EQ(l8.n_kv_heads, 8);
  EXPECT_EQ(l8.head_dim, 128);
  EXPECT_EQ(l8.ffn_dim, 14336);
  EXPECT_EQ(l8.max_seq_len, 131072);
  EXPECT_EQ(l8.rope_theta, 500000.0);
  EXPECT_EQ(l8.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(l8.rope_scaling.factor, 8.0);
  EXPECT_EQ(l8.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(l8.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(l8.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(l8.bos_id, 128000);
  EXPECT_EQ(l8.eos_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_FALSE(l8.tie_embeddings);
  EXPECT_NEAR(static_cast<double>(l8.n_params()), 8.03e9, 0.01e9);

  const ModelConfig l1 = preset_config("llama-3.2-1b");
  EXPECT_TRUE(l1.tie_embeddings);
  EXPECT_EQ(l1.rope_scaling.factor, 32.0);
  EXPECT_NEAR(static_cast<double>(l1.n_params()), 1.236e9, 0.01e9);
  EXPECT_NEAR(static_cast<double>(preset_config("llama-3.3-70b").n_params()), 70.55e9, 0.1e9);

  const ModelConfig q3 = preset_config("qwen3-8b");
  EXPECT_EQ(q3.arch, Architecture::kQwen3);
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.head_dim, 128);
  EXPECT_NEAR(static_cast<double>(q3.n_params()), 8.19e9, 0.01e9);

  const ModelConfig q2 = preset_config("qwen2.5-7b");
  EXPECT_EQ(q2.arch, Architecture::kQwen2);
  EXPECT_TRUE(q2.qkv_bias);
  EXPECT_NEAR(static_cast<double>(q2.n_params()), 7.62e9, 0.01e9);

  const ModelConfig m = preset_config("mistral-7b");
  EXPECT_EQ(m.arch, Architecture::kMistral);
  EXPECT_EQ(m.vocab_size, 32768);
  EXPECT_NEAR(static_cast<double>(m.n_params()), 7.25e9, 0.01e9);

  const ModelConfig t = preset_config("tiny");
  EXPECT_EQ(t.dim, 256);
  EXPECT_EQ(t.n_layers, 4);
  EXPECT_EQ(t.n_heads, 8);
  EXPECT_EQ(t.n_kv_heads, 4);
  EXPECT_EQ(t.ffn_dim, 768);
  EXPECT_EQ(t.vocab_size, 512);
  EXPECT_EQ(t.max_seq_len, 2048);
}

TEST(ConfigPresets, UnknownNameListsPresets) {
  try {
    preset_config("llama-9");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'llama-9'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("llama-3.1-8b"), std::string::npos) << msg;
    EXPECT_NE(msg.find("qwen3-8b"), std::string::npos) << msg;
  }
}

// Dummy-weight init kinds follow the tensor's role.
TEST(ConfigPresets, ExpectedTensorInitKinds) {
  const ModelConfig q2 = preset_config("qwen2.5-7b");
  for (const TensorSpec& s : expected_tensors(q2)) {
    SCOPED_TRACE(s.name);
    if (s.name.ends_with(".bias")) {
      EXPECT_EQ(s.init, TensorSpec::Init::kBias);
    } else if (s.name.find("norm") != std::string::npos) {
      EXPECT_EQ(s.init, TensorSpec::Init::kOnesNoise);
      EXPECT_EQ(s.shape.size(), 1u);
    } else {
      EXPECT_EQ(s.init, TensorSpec::Init::kNormal);
      EXPECT_EQ(s.shape.size(), 2u);
    }
    EXPECT_FALSE(s.dims.empty());
  }
}

}  // namespace
}  // namespace llm42
