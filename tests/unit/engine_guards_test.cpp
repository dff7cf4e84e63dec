// The engine's guards against requests that would hang or serve garbage: flag combinations
// under which a verification window can never run are refused at start-up; an indivisible unit
// of work (a verification window, a fixed-shape deterministic prefill chunk) always gets its
// turn; the watchdog fails a request that makes no progress; a request whose logits are not
// finite fails with an error while the others go on.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
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

struct Finished {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  FinishReason reason = FinishReason::kNone;
  std::string error;
  int64_t step = -1;  // the engine step after which it finished
};

class EngineGuards : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.threads = 1;
    backend_ = make_backend(o);
  }

  void make_model(ModelWeights w) {
    model_ = std::make_unique<Transformer>(*backend_, std::move(w), 512, 512);
  }
  void make_model() { make_model(dummy_weights(*backend_, tiny_test_config(), DType::kF32, 3)); }

  static Request request(std::vector<int32_t> prompt, int max_tokens, bool deterministic) {
    Request r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.deterministic = deterministic;
    r.ignore_eos = true;
    r.logprobs = true;
    r.detokenize = false;
    return r;
  }

  // Adds `requests`, steps the engine until idle (at most max_steps steps) and returns their
  // outcomes in order.
  std::vector<Finished> run(Engine& engine, const std::vector<Request>& requests,
                            int64_t max_steps = 5000) {
    std::vector<Finished> out(requests.size());
    int64_t steps = 0;
    for (size_t i = 0; i < requests.size(); ++i)
      engine.add_request(requests[i], [&, i](RequestOutput&& o) {
        Finished& f = out[i];
        f.ids.insert(f.ids.end(), o.tokens.begin(), o.tokens.end());
        for (const TokenLogprob& lp : o.logprobs) f.logprobs.push_back(lp.logprob);
        if (o.finished) {
          f.reason = o.finish_reason;
          f.error = o.error;
          f.step = steps;
        }
      });
    while (engine.step() && ++steps < max_steps) {
    }
    EXPECT_LT(steps, max_steps) << "the engine did not go idle: a request is stuck";
    return out;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Transformer> model_;
};

EngineConfig small_config() {
  EngineConfig c;
  c.mode = DeterminismMode::kDvr;
  c.num_blocks = 256;
  c.check_integrity = true;
  return c;
}

// Two deterministic sequences and a step budget of exactly one window (W 8).
EngineConfig one_window_budget() {
  EngineConfig c = small_config();
  c.window = 8;
  c.group = 2;
  c.max_num_batched_tokens = 8;
  c.max_num_seqs = 2;
  return c;
}

TEST_F(EngineGuards, BudgetBelowTheWindowIsRefusedNamingTheFlags) {
  make_model();
  // The reported livelock: W 64 with 40 tokens a step and 3 sequences.
  EngineConfig c = small_config();
  c.window = 64;
  c.max_num_batched_tokens = 40;
  c.max_num_seqs = 3;
  try {
    Engine engine(*model_, c, nullptr);
    FAIL() << "a budget of 40 tokens below W = 64 was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--window 64"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--max-num-batched-tokens 40"), std::string::npos) << msg;
  }
  // Without verification the window does not matter.
  c.mode = DeterminismMode::kGlobal;
  Engine global(*model_, c, nullptr);
  const auto out = run(global, {request({5, 6, 7}, 4, true)});
  EXPECT_EQ(out[0].reason, FinishReason::kLength);
}

TEST_F(EngineGuards, WatchdogStepsMustNotBeNegative) {
  make_model();
  EngineConfig c = small_config();
  c.max_stalled_steps = -1;
  try {
    Engine engine(*model_, c, nullptr);
    FAIL() << "--max-stalled-steps -1 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--max-stalled-steps"), std::string::npos) << e.what();
  }
}

TEST_F(EngineGuards, FixedShapePrefillChunkAboveTheBudgetStillRuns) {
  make_model();
  // Deterministic fixed-shape prefill waits for a whole chunk of budget: a --prefill-chunk
  // above --max-num-batched-tokens never fitted, and the request never started.
  EngineConfig c = small_config();
  c.verify_schedule = VerifyMode::kFixedShape;
  c.window = 4;
  c.group = 2;
  c.max_num_batched_tokens = 16;
  c.prefill_chunk = 64;
  c.max_stalled_steps = 0;  // the loop bound detects a hang here, not the watchdog
  Engine engine(*model_, c, nullptr);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(3 + i);
  const auto out = run(engine, {request(prompt, 6, true)}, 500);
  EXPECT_EQ(out[0].reason, FinishReason::kLength);
  EXPECT_EQ(out[0].ids.size(), 6u);
}

TEST_F(EngineGuards, VerificationWindowIsNotStarvedByOlderDecodeRows) {
  make_model();
  // A budget of exactly one window: when the two requests' windows are due in the same step,
  // the older one verifies and then decodes a token a step, which left the newer window one
  // token short of the budget until the older request finished. The newer request, four times
  // shorter, must finish first.
  EngineConfig c = one_window_budget();
  c.max_stalled_steps = 0;
  Engine engine(*model_, c, nullptr);
  const auto out =
      run(engine, {request({5, 6, 7, 8}, 160, true), request({9, 10, 11, 12}, 40, true)});
  ASSERT_EQ(out[0].reason, FinishReason::kLength);
  ASSERT_EQ(out[1].reason, FinishReason::kLength);
  EXPECT_LT(out[1].step, out[0].step) << "the newer request waited for the older one to finish";
}

TEST_F(EngineGuards, WatchdogFailsAStalledRequestWithAnError) {
  make_model();
  // With a budget of one window, the request whose window is not verified this step waits a
  // step: a watchdog of one step fails it (a contrived limit, to make a stall happen).
  EngineConfig c = one_window_budget();
  c.max_stalled_steps = 1;
  Engine engine(*model_, c, nullptr);
  const auto out =
      run(engine, {request({5, 6, 7, 8}, 40, true), request({9, 10, 11, 12}, 40, true)});
  int errors = 0;
  for (const Finished& f : out) {
    if (f.reason != FinishReason::kError) continue;
    ++errors;
    EXPECT_NE(f.error.find("no progress"), std::string::npos) << f.error;
    EXPECT_NE(f.error.find("--max-stalled-steps"), std::string::npos) << f.error;
  }
  EXPECT_GT(errors, 0) << "nothing was failed by the watchdog";
  EXPECT_EQ(engine.stats().requests_stalled, errors);

  // Off (0), or the default, both finish.
  for (int limit : {0, EngineConfig{}.max_stalled_steps}) {
    c.max_stalled_steps = limit;
    Engine patient(*model_, c, nullptr);
    const auto ok =
        run(patient, {request({5, 6, 7, 8}, 40, true), request({9, 10, 11, 12}, 40, true)});
    for (const Finished& f : ok) EXPECT_EQ(f.reason, FinishReason::kLength) << f.error;
    EXPECT_EQ(patient.stats().requests_stalled, 0);
  }
}

TEST_F(EngineGuards, NonFiniteLogitsFailOnlyThatRequest) {
  // Token 42's embedding holds a NaN: any request that reads it computes NaN logits.
  ModelWeights w = dummy_weights(*backend_, tiny_test_config(), DType::kF32, 3);
  const int dim = tiny_test_config().dim;
  w.embedding.ptr<float>()[42 * dim + 5] = std::numeric_limits<float>::quiet_NaN();
  make_model(std::move(w));
  for (DeterminismMode mode : {DeterminismMode::kOff, DeterminismMode::kDvr}) {
    EngineConfig c = small_config();
    c.mode = mode;
    c.window = 4;
    Engine engine(*model_, c, nullptr);
    // Greedy: a sampled token 42 would poison a healthy request (the non-deterministic one,
    // seeded at random, drew it in about one run in twenty).
    std::vector<Request> requests = {request({5, 42, 7}, 6, true), request({5, 6, 7}, 6, true),
                                     request({8, 9}, 6, false)};
    for (Request& r : requests) r.sampling.temperature = 0.0f;
    const auto out = run(engine, requests);
    EXPECT_EQ(out[0].reason, FinishReason::kError);
    EXPECT_NE(out[0].error.find("non-finite logits"), std::string::npos) << out[0].error;
    for (float lp : out[0].logprobs) EXPECT_TRUE(std::isfinite(lp) || lp == -INFINITY);
    for (size_t i : {1u, 2u}) {
      EXPECT_EQ(out[i].reason, FinishReason::kLength) << out[i].error;
      ASSERT_EQ(out[i].logprobs.size(), 6u);
      for (int32_t id : out[i].ids) EXPECT_NE(id, 42) << "the test's poisoned token was generated";
      for (float lp : out[i].logprobs) EXPECT_TRUE(std::isfinite(lp));
    }
    EXPECT_EQ(engine.stats().requests_nonfinite, 1);
  }
}

}  // namespace
}  // namespace llm42::test
