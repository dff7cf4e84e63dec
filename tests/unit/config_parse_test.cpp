// parse_hf_config: the shared models' config.json files, transformers 4 key names, every
// architecture's defaults and the errors for what is not supported; rope_inv_freq against the
// Llama 3 formula computed independently here.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "model/config.h"
#include "test_util.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

using nlohmann::json;

json shared_config(const std::string& dir) {
  return json::parse(read_file(test::shared_dir() + "/models/" + dir + "/config.json"));
}

// The message of the llm42::Error that parsing `j` throws ("" when it parses).
std::string parse_error(const json& j) {
  try {
    parse_hf_config(j, "cfg/config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_PARSE_ERROR(j, ...)                                            \
  do {                                                                        \
    const std::string msg_ = parse_error(j);                                  \
    ASSERT_FALSE(msg_.empty()) << "parsed without error";                     \
    EXPECT_NE(msg_.find("cfg/config.json"), std::string::npos) << msg_;       \
    for (const char* kw_ : {__VA_ARGS__})                                     \
      EXPECT_NE(msg_.find(kw_), std::string::npos) << kw_ << " in: " << msg_; \
  } while (0)

// A minimal transformers-4-style Llama config.
json llama_t4() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 384, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64}})");
}

TEST(ConfigParse, SharedModels) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const ModelConfig s = parse_hf_config(shared_config("stories260K-hf"), "stories");
  EXPECT_EQ(s.arch, Architecture::kLlama);
  EXPECT_EQ(s.vocab_size, 512);
  EXPECT_EQ(s.dim, 64);
  EXPECT_EQ(s.n_layers, 5);
  EXPECT_EQ(s.n_heads, 8);
  EXPECT_EQ(s.n_kv_heads, 4);
  EXPECT_EQ(s.head_dim, 8);
  EXPECT_EQ(s.ffn_dim, 172);
  EXPECT_EQ(s.max_seq_len, 512);
  EXPECT_FLOAT_EQ(s.norm_eps, 1e-5f);
  EXPECT_EQ(s.rope_theta, 10000.0);
  EXPECT_EQ(s.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(s.rope_layout, RopeLayout::kHalf);
  EXPECT_TRUE(s.tie_embeddings);
  EXPECT_EQ(s.weights_dtype, DType::kF32);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_ids, std::vector<int>{2});

  const ModelConfig l3 = parse_hf_config(shared_config("tiny-llama3"), "llama3");
  EXPECT_EQ(l3.arch, Architecture::kLlama);
  EXPECT_EQ(l3.head_dim, 16);
  EXPECT_FALSE(l3.tie_embeddings);
  EXPECT_EQ(l3.rope_theta, 500000.0);
  EXPECT_EQ(l3.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(l3.rope_scaling.factor, 8.0);
  EXPECT_EQ(l3.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(l3.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(l3.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(l3.weights_dtype, DType::kBF16);

  const ModelConfig q2 = parse_hf_config(shared_config("tiny-qwen2"), "qwen2");
  EXPECT_EQ(q2.arch, Architecture::kQwen2);
  EXPECT_EQ(q2.head_dim, 16);  // not written: hidden / heads
  EXPECT_TRUE(q2.qkv_bias);
  EXPECT_FALSE(q2.qk_norm);
  EXPECT_TRUE(q2.tie_embeddings);
  EXPECT_FLOAT_EQ(q2.norm_eps, 1e-6f);
  EXPECT_EQ(q2.rope_theta, 1e6);

  const ModelConfig q3 = parse_hf_config(shared_config("tiny-qwen3"), "qwen3");
  EXPECT_EQ(q3.arch, Architecture::kQwen3);
  EXPECT_EQ(q3.head_dim, 32);
  EXPECT_EQ(q3.q_dim(), 128);
  EXPECT_EQ(q3.kv_dim(), 64);
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_FALSE(q3.qkv_bias);
  EXPECT_TRUE(q3.tie_embeddings);

  const ModelConfig m = parse_hf_config(shared_config("tiny-mistral"), "mistral");
  EXPECT_EQ(m.arch, Architecture::kMistral);
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_EQ(m.rope_theta, 10000.0);
  EXPECT_FLOAT_EQ(m.norm_eps, 1e-5f);
}

// The same model written with transformers 4 key names parses to the same config.
TEST(ConfigParse, Transformers4KeysMatchTransformers5) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  for (const char* name : {"tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-mistral"}) {
    SCOPED_TRACE(name);
    const json t5 = shared_config(name);
    const ModelConfig want = parse_hf_config(t5, "t5");
    for (const char* type_key : {"rope_type", "type"}) {
      json t4 = t5;
      t4["torch_dtype"] = t4["dtype"];
      t4.erase("dtype");
      json rope = t4["rope_parameters"];
      t4.erase("rope_parameters");
      t4["rope_theta"] = rope["rope_theta"];
      rope.erase("rope_theta");
      const std::string type = rope["rope_type"];
      rope.erase("rope_type");
      if (type == "default") {
        t4["rope_scaling"] = nullptr;
      } else {
        rope[type_key] = type;
        t4["rope_scaling"] = rope;
      }
      const ModelConfig got = parse_hf_config(t4, "t4");
      EXPECT_EQ(got.arch, want.arch);
      EXPECT_EQ(got.head_dim, want.head_dim);
      EXPECT_EQ(got.rope_theta, want.rope_theta);
      EXPECT_EQ(got.rope_scaling.type, want.rope_scaling.type);
      EXPECT_EQ(got.rope_scaling.factor, want.rope_scaling.factor);
      EXPECT_EQ(got.rope_scaling.original_max_position_embeddings,
                want.rope_scaling.original_max_position_embeddings);
      EXPECT_EQ(got.weights_dtype, want.weights_dtype);
      EXPECT_EQ(got.tie_embeddings, want.tie_embeddings);
      EXPECT_EQ(rope_inv_freq(got), rope_inv_freq(want));
    }
  }
}

TEST(ConfigParse, Transformers4Llama3) {
  const ModelConfig c = parse_hf_config(llama_t4(), "t4");
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c.weights_dtype, DType::kBF16);
  json legacy = llama_t4();
  legacy["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  const ModelConfig lin = parse_hf_config(legacy, "t4");
  EXPECT_EQ(lin.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(lin.rope_scaling.factor, 4.0);
  const std::vector<double> f = rope_inv_freq(lin);
  for (size_t i = 0; i < f.size(); ++i)
    EXPECT_DOUBLE_EQ(f[i], 1.0 / std::pow(500000.0, 2.0 * i / 16) / 4.0);
}

TEST(ConfigParse, EosIdsAsList) {
  json j = llama_t4();
  j["eos_token_id"] = {128, 129, 130};
  EXPECT_EQ(parse_hf_config(j, "x").eos_ids, (std::vector<int>{128, 129, 130}));
  j["eos_token_id"] = 7;
  EXPECT_EQ(parse_hf_config(j, "x").eos_ids, std::vector<int>{7});
}

TEST(ConfigParse, Defaults) {
  json j = llama_t4();
  for (const char* k : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "rope_scaling",
                        "torch_dtype", "bos_token_id", "eos_token_id"})
    j.erase(k);
  const ModelConfig c = parse_hf_config(j, "x");
  EXPECT_EQ(c.n_kv_heads, 4);  // = num_attention_heads
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.weights_dtype, DType::kF32);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_ids, std::vector<int>{2});

  j["architectures"] = {"Qwen3ForCausalLM"};
  const ModelConfig q3 = parse_hf_config(j, "x");
  EXPECT_EQ(q3.head_dim, 128);  // Qwen3Config's default, not hidden / heads
  EXPECT_EQ(q3.bos_id, -1);
  EXPECT_TRUE(q3.eos_ids.empty());

  j.erase("architectures");
  j["model_type"] = "mistral";
  EXPECT_EQ(parse_hf_config(j, "x").arch, Architecture::kMistral);
}

TEST(ConfigParse, Errors) {
  json j = llama_t4();
  j["num_key_value_heads"] = 3;
  EXPECT_PARSE_ERROR(j, "'num_key_value_heads' = 3 does not divide num_attention_heads = 4");

  j = llama_t4();
  j.erase("hidden_size");
  EXPECT_PARSE_ERROR(j, "'hidden_size' is missing");
  j["hidden_size"] = "64";
  EXPECT_PARSE_ERROR(j, "'hidden_size'", "not an integer");
  j["hidden_size"] = -64;
  EXPECT_PARSE_ERROR(j, "'hidden_size'", "must be positive");
  j["hidden_size"] = 1LL << 40;
  EXPECT_PARSE_ERROR(j, "'hidden_size'", "out of range");
  j["hidden_size"] = 1 << 30;
  EXPECT_PARSE_ERROR(j, "'hidden_size'", "implausibly large");

  j = llama_t4();
  j["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_PARSE_ERROR(j, "'rope_scaling.rope_type' = \"yarn\"", "not supported");
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  EXPECT_PARSE_ERROR(j, "'rope_scaling.type' = \"dynamic\"", "not supported");
  j = llama_t4();
  j["rope_scaling"].erase("low_freq_factor");
  EXPECT_PARSE_ERROR(j, "'rope_scaling.low_freq_factor' is missing");
  j = llama_t4();
  j["rope_scaling"]["high_freq_factor"] = 0.5;
  EXPECT_PARSE_ERROR(j, "'rope_scaling.high_freq_factor'", "greater than low_freq_factor");
  j = llama_t4();
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 1e4}};
  EXPECT_PARSE_ERROR(j, "'rope_parameters.rope_type' = \"longrope\"", "not supported");
  j["rope_parameters"] = {
      {"rope_type", "default"}, {"rope_theta", 1e4}, {"partial_rotary_factor", 0.5}};
  EXPECT_PARSE_ERROR(j, "'rope_parameters.partial_rotary_factor'", "not supported");

  j = llama_t4();
  j["architectures"] = {"GemmaForCausalLM"};
  EXPECT_PARSE_ERROR(j, "'architectures'", "not supported", "LlamaForCausalLM");
  j.erase("architectures");
  EXPECT_PARSE_ERROR(j, "neither 'architectures' nor 'model_type'");

  j = llama_t4();
  j["architectures"] = {"MistralForCausalLM"};
  j["sliding_window"] = 128;
  EXPECT_PARSE_ERROR(j, "'sliding_window' = 128", "not supported");
  j["sliding_window"] = 256;  // = max_position_embeddings: full attention
  EXPECT_EQ(parse_error(j), "");
  j["sliding_window"] = nullptr;
  EXPECT_EQ(parse_error(j), "");

  j = llama_t4();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["sliding_window"] = 32;  // inert while use_sliding_window is false
  EXPECT_EQ(parse_error(j), "");
  j["use_sliding_window"] = true;
  EXPECT_PARSE_ERROR(j, "'sliding_window' = 32", "not supported");

  j = llama_t4();
  j["attention_bias"] = true;
  EXPECT_PARSE_ERROR(j, "'attention_bias'", "not supported");
  j = llama_t4();
  j["mlp_bias"] = true;
  EXPECT_PARSE_ERROR(j, "'mlp_bias'", "not supported");
  j = llama_t4();
  j["hidden_act"] = "gelu";
  EXPECT_PARSE_ERROR(j, "'hidden_act' = \"gelu\"", "not supported");
  j = llama_t4();
  j["torch_dtype"] = "float8_e4m3fn";
  EXPECT_PARSE_ERROR(j, "'torch_dtype'", "not supported");
  j = llama_t4();
  j["head_dim"] = 15;
  EXPECT_PARSE_ERROR(j, "'head_dim' = 15", "even");
  j = llama_t4();
  j["eos_token_id"] = {2, 384};
  EXPECT_PARSE_ERROR(j, "'eos_token_id'", "outside the vocabulary of 384");
  j = llama_t4();
  j["eos_token_id"] = "2";
  EXPECT_PARSE_ERROR(j, "'eos_token_id'", "not an integer or a list");
  j = llama_t4();
  j["hidden_size"] = 66;
  j.erase("head_dim");
  EXPECT_PARSE_ERROR(j, "'hidden_size' = 66", "not divisible by num_attention_heads = 4");
  EXPECT_PARSE_ERROR(json::array(), "not a JSON object");
}

// Llama 3 RoPE scaling computed here from its definition (Meta's reference `apply_scaling`):
// wavelengths below original_context / high_freq_factor keep their frequency, those above
// original_context / low_freq_factor are divided by the factor, those between are interpolated
// with smooth = (original_context / wavelength - low) / (high - low).
TEST(ConfigRope, Llama3MatchesFormula) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const ModelConfig c = parse_hf_config(shared_config("tiny-llama3"), "llama3");
  const std::vector<double> got = rope_inv_freq(c);
  ASSERT_EQ(got.size(), 8u);
  int kept = 0, interpolated = 0, divided = 0;
  for (int i = 0; i < 8; ++i) {
    const double freq = std::pow(500000.0, -2.0 * i / 16.0);
    const double wavelength = 2 * std::numbers::pi / freq;
    double want;
    if (wavelength < 64.0 / 4.0) {
      want = freq;
      ++kept;
    } else if (wavelength > 64.0 / 1.0) {
      want = freq / 8.0;
      ++divided;
    } else {
      const double smooth = (64.0 / wavelength - 1.0) / (4.0 - 1.0);
      want = freq * ((1 - smooth) / 8.0 + smooth);
      ++interpolated;
      EXPECT_NEAR(want / freq, 0.409, 0.001);  // the models README's figure
    }
    EXPECT_NEAR(got[i], want, 1e-15 * want) << "pair " << i;
  }
  EXPECT_EQ(kept, 1);
  EXPECT_EQ(interpolated, 1);
  EXPECT_EQ(divided, 6);
}

TEST(ConfigRope, PlainAndFactors) {
  ModelConfig c = test::tiny_test_config();
  const std::vector<double> plain = rope_inv_freq(c);
  ASSERT_EQ(plain.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(plain[i], 1.0 / std::pow(10000.0, 2.0 * i / 16));
  c.rope_freq_factors = {1, 2, 4, 8, 1, 1, 1, 1};
  const std::vector<double> scaled = rope_inv_freq(c);
  EXPECT_EQ(scaled[3], plain[3] / 8);
  EXPECT_EQ(scaled[4], plain[4]);
}

TEST(ConfigValidate, NamesSourceAndField) {
  ModelConfig c = test::tiny_test_config();
  c.validate("src");
  c.n_kv_heads = 3;
  try {
    c.validate("src");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "src: field 'num_key_value_heads' = 3 does not divide "
                 "num_attention_heads = 4");
  }
  c = test::tiny_test_config();
  c.rope_freq_factors = {1.0, 2.0};
  EXPECT_THROW(c.validate("src"), Error);
  c = test::tiny_test_config();
  c.bos_id = 300;
  EXPECT_THROW(c.validate("src"), Error);
}

TEST(ConfigParams, CountsEveryTensor) {
  ModelConfig c = test::tiny_test_config();
  // embed 300*64, per layer: 2 norms, q 64*64, k,v 32*64 each, o 64*64, 3 * 64*128; final norm;
  // untied head 300*64.
  const int64_t layer = 2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 128;
  EXPECT_EQ(c.n_params(), 300 * 64 + 2 * layer + 64 + 300 * 64);
  c.tie_embeddings = true;
  EXPECT_EQ(c.n_params(), 300 * 64 + 2 * layer + 64);
}

}  // namespace
}  // namespace llm42
