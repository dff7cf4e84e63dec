// Prompt logprobs (Request::prompt_logprobs: what `echo` with `logprobs` and `prompt_logprobs`
// return). For a deterministic request they come from the canonical prefill, so they are the
// logprobs the same tokens get when a deterministic request decodes them, bit for bit, and they
// do not depend on how the prompt is chunked, batched or cached.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "test_util.h"
#include "util/error.h"

namespace llm42::test {
namespace {

struct Outcome {
  std::vector<int32_t> ids;
  std::vector<TokenLogprob> logprobs;
  std::vector<TokenLogprob> prompt_logprobs;
  int prompt_outputs = 0;  // outputs that carried prompt logprobs
  FinishReason reason = FinishReason::kNone;
  std::string error;
};

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Bitwise equality of two logprob entries (id, logprob, alternatives; rank when both have one).
::testing::AssertionResult same_logprob(const TokenLogprob& a, const TokenLogprob& b) {
  if (a.id != b.id || !same_bits(a.logprob, b.logprob) || a.top.size() != b.top.size())
    return ::testing::AssertionFailure()
           << "token " << a.id << " logprob " << a.logprob << " vs token " << b.id << " logprob "
           << b.logprob;
  for (size_t i = 0; i < a.top.size(); ++i)
    if (a.top[i].first != b.top[i].first || !same_bits(a.top[i].second, b.top[i].second))
      return ::testing::AssertionFailure() << "alternative " << i << " differs";
  if (a.rank != 0 && b.rank != 0 && a.rank != b.rank)
    return ::testing::AssertionFailure() << "rank " << a.rank << " vs " << b.rank;
  return ::testing::AssertionSuccess();
}

class PromptLogprobs : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.threads = 2;
    backend_ = make_backend(o);
    model_ = std::make_unique<Transformer>(
        *backend_, dummy_weights(*backend_, tiny_test_config(), DType::kF32, 7), 512, 1024);
  }

  static EngineConfig config(DeterminismMode mode) {
    EngineConfig c;
    c.mode = mode;
    c.num_blocks = 256;
    c.window = 4;
    c.check_integrity = true;
    return c;
  }

  static Request request(std::vector<int32_t> prompt, int max_tokens, bool deterministic,
                         int prompt_logprobs, int top = 3) {
    Request r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.deterministic = deterministic;
    r.ignore_eos = true;
    r.logprobs = true;
    r.sampling.top_logprobs = top;
    r.prompt_logprobs = prompt_logprobs;
    r.detokenize = false;
    return r;
  }

  std::vector<Outcome> run(Engine& engine, const std::vector<Request>& requests) {
    std::vector<Outcome> out(requests.size());
    for (size_t i = 0; i < requests.size(); ++i)
      engine.add_request(requests[i], [&, i](RequestOutput&& o) {
        Outcome& f = out[i];
        f.ids.insert(f.ids.end(), o.tokens.begin(), o.tokens.end());
        f.logprobs.insert(f.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
        if (!o.prompt_logprobs.empty()) {
          ++f.prompt_outputs;
          f.prompt_logprobs = o.prompt_logprobs;
        }
        if (o.finished) {
          f.reason = o.finish_reason;
          f.error = o.error;
        }
      });
    int steps = 0;
    while (engine.step() && ++steps < 10000) {
    }
    EXPECT_LT(steps, 10000) << "the engine did not go idle";
    return out;
  }

  static std::vector<int32_t> prompt(int n, int salt) {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back((i * 37 + salt * 11 + 5) % 290 + 3);
    return p;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Transformer> model_;
};

TEST_F(PromptLogprobs, EqualTheLogprobsOfTheSameTokensDecodedDeterministically) {
  // dvr (canonical prefill, verified decode) and global: score prompt + generated tokens and
  // find the generated tokens' logprobs, alternatives included, bit for bit.
  for (DeterminismMode mode : {DeterminismMode::kDvr, DeterminismMode::kGlobal}) {
    Engine engine(*model_, config(mode), nullptr);
    const std::vector<int32_t> p = prompt(23, 1);
    const Outcome gen = run(engine, {request(p, 12, true, -1)})[0];
    ASSERT_EQ(gen.reason, FinishReason::kLength) << gen.error;
    ASSERT_EQ(gen.ids.size(), 12u);
    std::vector<int32_t> full = p;
    full.insert(full.end(), gen.ids.begin(), gen.ids.end());
    const Outcome scored = run(engine, {request(full, 1, true, 3)})[0];
    ASSERT_EQ(scored.reason, FinishReason::kLength) << scored.error;
    ASSERT_EQ(scored.prompt_outputs, 1);
    ASSERT_EQ(scored.prompt_logprobs.size(), full.size() - 1);
    for (size_t i = 0; i < full.size() - 1; ++i) {
      const TokenLogprob& t = scored.prompt_logprobs[i];
      EXPECT_EQ(t.id, full[i + 1]);
      EXPECT_TRUE(std::isfinite(t.logprob) && t.logprob <= 0.0f);
      ASSERT_EQ(t.top.size(), 3u);
      // The rank is where the token stands among the alternatives.
      EXPECT_GE(t.rank, 1);
      if (t.rank <= 3) {
        EXPECT_EQ(t.top[static_cast<size_t>(t.rank - 1)].first, t.id);
      } else {
        EXPECT_LE(t.logprob, t.top[2].second);
      }
    }
    for (size_t j = 0; j < gen.ids.size(); ++j)
      EXPECT_TRUE(same_logprob(scored.prompt_logprobs[p.size() - 1 + j], gen.logprobs[j]))
          << "generated token " << j << " in mode " << static_cast<int>(mode);
  }
}

TEST_F(PromptLogprobs, SameHoweverThePromptIsChunkedBatchedOrCached) {
  const std::vector<int32_t> p = prompt(70, 2);
  Engine alone(*model_, config(DeterminismMode::kDvr), nullptr);
  const Outcome ref = run(alone, {request(p, 4, true, 2)})[0];
  ASSERT_EQ(ref.reason, FinishReason::kLength) << ref.error;
  ASSERT_EQ(ref.prompt_logprobs.size(), p.size() - 1);

  // Small chunks and few logits rows a step (the prompt takes many passes), with other traffic
  // (deterministic and not, scoring too), and a warm prefix cache holding the same prompt.
  EngineConfig c = config(DeterminismMode::kDvr);
  c.prefill_chunk = 16;
  c.max_prompt_logprobs_rows = 7;
  Engine busy(*model_, c, nullptr);
  run(busy, {request(p, 3, true, -1)});  // publishes p's blocks
  std::vector<Request> load;
  for (int i = 0; i < 6; ++i) load.push_back(request(prompt(20 + 9 * i, 10 + i), 9, i % 2 == 0, -1));
  load.insert(load.begin() + 2, request(p, 4, true, 2));
  load.push_back(request(prompt(40, 3), 5, false, 1));
  const std::vector<Outcome> out = run(busy, load);
  const Outcome& got = out[2];
  ASSERT_EQ(got.reason, FinishReason::kLength) << got.error;
  EXPECT_EQ(got.ids, ref.ids);
  ASSERT_EQ(got.prompt_logprobs.size(), ref.prompt_logprobs.size());
  for (size_t i = 0; i < ref.prompt_logprobs.size(); ++i)
    EXPECT_TRUE(same_logprob(got.prompt_logprobs[i], ref.prompt_logprobs[i])) << "prompt token "
                                                                               << i + 1;
  EXPECT_EQ(out.back().reason, FinishReason::kLength) << out.back().error;
  EXPECT_EQ(out.back().prompt_logprobs.size(), 39u);
  for (size_t i = 0; i + 1 < out.size(); ++i)
    if (i != 2) {
      EXPECT_EQ(out[i].prompt_outputs, 0) << "request " << i << " did not ask";
    }
}

TEST_F(PromptLogprobs, EveryModeAndScheduleScoresThePromptOnce) {
  // off, dvr fixed-shape (isolated deterministic prefill chunks cut to the rows), global.
  const std::vector<int32_t> p = prompt(45, 4);
  std::vector<std::vector<TokenLogprob>> deterministic;
  for (int variant = 0; variant < 3; ++variant) {
    EngineConfig c = config(variant == 0   ? DeterminismMode::kOff
                            : variant == 1 ? DeterminismMode::kDvr
                                           : DeterminismMode::kGlobal);
    if (variant == 1) c.verify_schedule = VerifyMode::kFixedShape;
    c.max_prompt_logprobs_rows = 10;
    c.prefill_chunk = 32;
    Engine engine(*model_, c, nullptr);
    const std::vector<Outcome> out =
        run(engine, {request(p, 5, true, 0), request(prompt(30, 5), 5, false, 0)});
    for (const Outcome& o : out) {
      ASSERT_EQ(o.reason, FinishReason::kLength) << o.error;
      EXPECT_EQ(o.prompt_outputs, 1);
      for (const TokenLogprob& t : o.prompt_logprobs) {
        EXPECT_TRUE(std::isfinite(t.logprob) && t.logprob <= 0.0f);
        EXPECT_TRUE(t.top.empty());
        EXPECT_GE(t.rank, 1);
      }
    }
    ASSERT_EQ(out[0].prompt_logprobs.size(), p.size() - 1);
    for (size_t i = 0; i + 1 < p.size(); ++i) EXPECT_EQ(out[0].prompt_logprobs[i].id, p[i + 1]);
  }
}

TEST_F(PromptLogprobs, OneTokenPromptHasNoneAndBadCountsAreRefused) {
  Engine engine(*model_, config(DeterminismMode::kDvr), nullptr);
  const Outcome o = run(engine, {request({9}, 2, true, 1)})[0];
  EXPECT_EQ(o.reason, FinishReason::kLength) << o.error;
  EXPECT_TRUE(o.prompt_logprobs.empty());
  for (int bad : {-2, 21}) {
    try {
      engine.add_request(request({1, 2, 3}, 2, true, bad), nullptr);
      FAIL() << "prompt_logprobs " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'prompt_logprobs'"), std::string::npos) << e.what();
    }
  }
  EngineConfig c = config(DeterminismMode::kDvr);
  c.max_prompt_logprobs_rows = 0;
  EXPECT_THROW(Engine(*model_, c, nullptr), Error);
}

TEST_F(PromptLogprobs, NonFinitePromptLogitsFailOnlyThatRequestNamingThePosition) {
  ModelWeights w = dummy_weights(*backend_, tiny_test_config(), DType::kF32, 7);
  const int dim = tiny_test_config().dim;
  w.embedding.ptr<float>()[42 * dim + 1] = std::numeric_limits<float>::quiet_NaN();
  model_ = std::make_unique<Transformer>(*backend_, std::move(w), 512, 1024);
  Engine engine(*model_, config(DeterminismMode::kDvr), nullptr);
  std::vector<Request> rs = {request({5, 6, 7, 42, 8, 9}, 3, true, 1),
                             request({5, 6, 7, 8, 9}, 3, true, 1)};
  for (Request& r : rs) r.sampling.temperature = 0.0f;
  const std::vector<Outcome> out = run(engine, rs);
  EXPECT_EQ(out[0].reason, FinishReason::kError);
  EXPECT_NE(out[0].error.find("at position 3"), std::string::npos) << out[0].error;
  EXPECT_EQ(out[1].reason, FinishReason::kLength) << out[1].error;
  EXPECT_EQ(out[1].prompt_logprobs.size(), 4u);
}

}  // namespace
}  // namespace llm42::test
