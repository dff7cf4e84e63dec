// load_checkpoint on every shared model: the config each format yields, and stories260K's three
// files (llama2.c, GGUF, Hugging Face) holding bitwise the same tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "model/checkpoint.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "test_util.h"
#include "util/error.h"

namespace llm42 {
namespace {

std::string model_path(const std::string& rel) { return test::shared_dir() + "/models/" + rel; }

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes &&
         std::memcmp(a.data, b.data, a.nbytes) == 0;
}

// Every view lies inside one of the checkpoint's mapped files and has numel * dtype size bytes.
void expect_views_inside_files(const Checkpoint& c) {
  for (const auto& [name, t] : c.tensors) {
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * dtype_size(t.dtype)) << name;
    bool inside = false;
    for (const auto& f : c.files)
      inside |= t.data >= f->data() && t.data + t.nbytes <= f->data() + f->size();
    EXPECT_TRUE(inside) << name;
  }
}

TEST(LoaderModels, Stories260KAllFormats) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const Checkpoint bin = load_checkpoint(model_path("stories260K/stories260K.bin"));
  const Checkpoint gguf = load_checkpoint(model_path("stories260K/stories260K-f32.gguf"));
  const Checkpoint hf = load_checkpoint(model_path("stories260K-hf"));
  EXPECT_EQ(bin.format, "llama2c");
  EXPECT_EQ(gguf.format, "gguf");
  EXPECT_EQ(hf.format, "safetensors");
  for (const Checkpoint* c : {&bin, &gguf, &hf}) {
    SCOPED_TRACE(c->format);
    const ModelConfig& k = c->config;
    EXPECT_EQ(k.arch, Architecture::kLlama);
    EXPECT_EQ(k.vocab_size, 512);
    EXPECT_EQ(k.dim, 64);
    EXPECT_EQ(k.n_layers, 5);
    EXPECT_EQ(k.n_heads, 8);
    EXPECT_EQ(k.n_kv_heads, 4);
    EXPECT_EQ(k.head_dim, 8);
    EXPECT_EQ(k.ffn_dim, 172);
    EXPECT_EQ(k.max_seq_len, 512);
    EXPECT_FLOAT_EQ(k.norm_eps, 1e-5f);
    EXPECT_EQ(k.rope_theta, 10000.0);
    EXPECT_EQ(k.bos_id, 1);
    EXPECT_EQ(k.eos_ids, std::vector<int>{2});
    EXPECT_EQ(k.weights_dtype, DType::kF32);
    expect_views_inside_files(*c);
  }
  EXPECT_EQ(bin.config.rope_layout, RopeLayout::kInterleaved);
  EXPECT_EQ(gguf.config.rope_layout, RopeLayout::kInterleaved);
  EXPECT_EQ(hf.config.rope_layout, RopeLayout::kHalf);
  EXPECT_TRUE(bin.config.tie_embeddings);
  EXPECT_TRUE(hf.config.tie_embeddings);
  EXPECT_FALSE(gguf.config.tie_embeddings);  // the GGUF stores output.weight separately
  EXPECT_FALSE(bin.vocab.has_value());
  ASSERT_TRUE(gguf.vocab.has_value());
  EXPECT_EQ(gguf.vocab->model, "llama");
  EXPECT_EQ(gguf.vocab->tokens.size(), 512u);
  EXPECT_EQ(gguf.vocab->scores.size(), 512u);
  EXPECT_EQ(gguf.vocab->token_types.size(), 512u);
  EXPECT_EQ(gguf.vocab->tokens[1], "<s>");
  EXPECT_EQ(gguf.vocab->tokens[3], "<0x00>");
  EXPECT_EQ(gguf.vocab->token_types[0], 2);  // unknown
  EXPECT_EQ(gguf.vocab->token_types[1], 3);  // control
  EXPECT_EQ(gguf.vocab->token_types[3], 6);  // byte
  EXPECT_EQ(gguf.vocab->bos_id, 1);
  EXPECT_EQ(gguf.vocab->eos_id, 2);
  EXPECT_EQ(gguf.vocab->pad_id, 0);
  EXPECT_TRUE(gguf.vocab->add_bos);
}

// llama2.c and GGUF keep Meta's layout: every tensor is bitwise the same, and the GGUF's separate
// output head equals the llama2.c (tied) embedding.
TEST(LoaderModels, Stories260KLlama2cEqualsGguf) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const Checkpoint bin = load_checkpoint(model_path("stories260K/stories260K.bin"));
  const Checkpoint gguf = load_checkpoint(model_path("stories260K/stories260K-f32.gguf"));
  int compared = 0;
  for (const TensorSpec& s : expected_tensors(bin.config)) {
    EXPECT_TRUE(same_bytes(bin.get(s.name, s.shape), gguf.get(s.name, s.shape))) << s.name;
    ++compared;
  }
  EXPECT_EQ(compared, 1 + 5 * 9 + 1);
  EXPECT_TRUE(same_bytes(gguf.get("lm_head.weight", {512, 64}),
                         bin.get("model.embed_tokens.weight", {512, 64})));
}

// stories260K-hf permutes Q and K rows within each head, as transformers'
// convert_llama_weights_to_hf does (models README): hf = w.view(heads, rows / heads / 2, 2, cols)
// .transpose(1, 2).reshape(rows, cols). So HF row h*hd + j*(hd/2) + i is Meta row h*hd + 2i + j:
// the first half of a head holds the even rows, the second half the odd ones.
std::vector<float> meta_to_hf_rows(const TensorView& w, int heads) {
  const int64_t rows = w.shape[0], cols = w.shape[1], hd = rows / heads;
  const float* src = reinterpret_cast<const float*>(w.data);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(&out[static_cast<size_t>((h * hd + j * (hd / 2) + i) * cols)],
                    src + (h * hd + 2 * i + j) * cols, cols * sizeof(float));
  return out;
}

TEST(LoaderModels, Stories260KHfIsPermutedLlama2c) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const Checkpoint bin = load_checkpoint(model_path("stories260K/stories260K.bin"));
  const Checkpoint hf = load_checkpoint(model_path("stories260K-hf"));
  for (const TensorSpec& s : expected_tensors(bin.config)) {
    SCOPED_TRACE(s.name);
    const TensorView& b = bin.get(s.name, s.shape);
    const TensorView& h = hf.get(s.name, s.shape);
    const bool q = s.name.ends_with("q_proj.weight"), k = s.name.ends_with("k_proj.weight");
    if (q || k) {
      EXPECT_FALSE(same_bytes(b, h)) << "Q/K rows are expected to be permuted";
      const std::vector<float> permuted = meta_to_hf_rows(b, q ? 8 : 4);
      EXPECT_EQ(std::memcmp(permuted.data(), h.data, h.nbytes), 0);
    } else {
      EXPECT_TRUE(same_bytes(b, h));
    }
  }
}

struct TinyModel {
  const char* dir;
  Architecture arch;
  int head_dim;
  bool tied, qkv_bias, qk_norm;
  float eps;
  double theta;
};

class LoaderTinyModels : public ::testing::TestWithParam<TinyModel> {};

TEST_P(LoaderTinyModels, LoadsWithItsConfig) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const TinyModel& m = GetParam();
  const Checkpoint c = load_checkpoint(model_path(m.dir));
  const ModelConfig& k = c.config;
  EXPECT_EQ(c.format, "safetensors");
  EXPECT_EQ(k.arch, m.arch);
  EXPECT_EQ(k.vocab_size, 384);
  EXPECT_EQ(k.dim, 64);
  EXPECT_EQ(k.ffn_dim, 128);
  EXPECT_EQ(k.n_layers, 2);
  EXPECT_EQ(k.n_heads, 4);
  EXPECT_EQ(k.n_kv_heads, 2);
  EXPECT_EQ(k.head_dim, m.head_dim);
  EXPECT_EQ(k.max_seq_len, 256);
  EXPECT_EQ(k.tie_embeddings, m.tied);
  EXPECT_EQ(k.qkv_bias, m.qkv_bias);
  EXPECT_EQ(k.qk_norm, m.qk_norm);
  EXPECT_FLOAT_EQ(k.norm_eps, m.eps);
  EXPECT_EQ(k.rope_theta, m.theta);
  EXPECT_EQ(k.rope_layout, RopeLayout::kHalf);
  EXPECT_EQ(k.weights_dtype, DType::kBF16);
  EXPECT_EQ(k.bos_id, 1);
  EXPECT_EQ(k.eos_ids, std::vector<int>{2});
  EXPECT_EQ(c.find("lm_head.weight") != nullptr, !m.tied);
  for (const TensorSpec& s : expected_tensors(k))
    EXPECT_EQ(c.get(s.name, s.shape).dtype, DType::kBF16);
  expect_views_inside_files(c);
  if (m.qk_norm) {
    EXPECT_EQ(c.get("model.layers.1.self_attn.q_proj.weight", {128, 64}).nbytes, 128u * 64 * 2);
    EXPECT_EQ(c.get("model.layers.1.self_attn.o_proj.weight", {64, 128}).nbytes, 64u * 128 * 2);
  }
  // The same folder named by its safetensors file or its config.json.
  EXPECT_EQ(load_checkpoint(model_path(m.dir) + "/model.safetensors").tensors.size(),
            c.tensors.size());
  EXPECT_EQ(load_checkpoint(model_path(m.dir) + "/config.json").tensors.size(), c.tensors.size());
}

INSTANTIATE_TEST_SUITE_P(
    Shared, LoaderTinyModels,
    ::testing::Values(
        TinyModel{"tiny-llama3", Architecture::kLlama, 16, false, false, false, 1e-5f, 5e5},
        TinyModel{"tiny-qwen2", Architecture::kQwen2, 16, true, true, false, 1e-6f, 1e6},
        TinyModel{"tiny-qwen3", Architecture::kQwen3, 32, true, false, true, 1e-6f, 1e6},
        TinyModel{"tiny-mistral", Architecture::kMistral, 16, false, false, false, 1e-5f, 1e4}),
    [](const auto& info) {
      std::string n = info.param.dir;
      n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
      return n;
    });

TEST(LoaderModels, Llama3RopeScaling) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const ModelConfig& k = load_checkpoint(model_path("tiny-llama3")).config;
  EXPECT_EQ(k.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(k.rope_scaling.factor, 8.0);
  EXPECT_EQ(k.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(k.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(k.rope_scaling.original_max_position_embeddings, 64);
}

// The golden files hold int32 inputs next to float32 logits: read_safetensors reads both.
TEST(LoaderModels, GoldenSafetensorsReadable) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const MappedFile f(model_path("tiny-qwen3/golden.safetensors"));
  const std::map<std::string, TensorView> t = read_safetensors(f);
  EXPECT_EQ(t.at("input_ids").dtype, DType::kI32);
  EXPECT_EQ(t.at("input_ids").shape, (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(t.at("logits").dtype, DType::kF32);
  EXPECT_EQ(t.at("logits").shape, (std::vector<int64_t>{3, 32, 384}));
}

TEST(LoaderModels, GgufMetadataAccess) {
  LLM42_SHARED_OR_SKIP(dir, "models");
  const GgufFile g(model_path("stories260K/stories260K-f32.gguf"));
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_int("llama.block_count"), 5);
  EXPECT_EQ(g.array_size("tokenizer.ggml.tokens"), 512u);
  EXPECT_FALSE(g.get_int("no.such.key").has_value());
  EXPECT_EQ(g.tensors().size(), 48u);
  EXPECT_EQ(g.tensors()[0].name, "token_embd.weight");
  EXPECT_EQ(g.tensors()[0].shape, (std::vector<int64_t>{512, 64}));  // ne = [64, 512]
  try {
    g.get_int("general.architecture");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'general.architecture' has type string, expected an "
                                         "integer"),
              std::string::npos)
        << e.what();
  }
}

TEST(LoaderModels, MissingPathIsNamed) {
  try {
    load_checkpoint("/nonexistent/model.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}

}  // namespace
}  // namespace llm42
