// Admission with a KV reserve (--admission-reserve): with a pool too small for every running
// request, admission always keeps blocks for the rest of the running requests' prompts; keeping
// none for their output (0) preempts running requests (and recomputes them) as outputs grow;
// reserving their remaining max_tokens (1, and auto while requests run to max_tokens) admits
// fewer at a time and preempts none, and every request still finishes. Greedy outputs are the
// same either way. Auto learns the share of max_tokens finished requests used.
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "engine/scheduler.h"
#include "engine_harness.h"
#include "test_util.h"
#include "util/error.h"

namespace llm42::test {
namespace {

class Admission : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.threads = 2;
    m_.backend = make_backend(o);
    m_.model = std::make_unique<Transformer>(
        *m_.backend, dummy_weights(*m_.backend, tiny_test_config(), DType::kF32, 3), 512, 512);
  }

  // Requests that run to max_tokens, 24-40 tokens of prompt and 40-60 of output each: 16 of
  // them need about 75 blocks of 16 positions against a pool of 40.
  std::vector<Request> requests() const {
    std::vector<Request> reqs = make_requests(16, 300, 7, 40, 60);
    for (Request& r : reqs) {
      r.ignore_eos = true;
      r.deterministic = false;
      while (r.prompt.size() < 24) r.prompt.push_back(5);
    }
    return reqs;
  }

  EngineConfig config(double reserve) const {
    EngineConfig c;
    c.mode = DeterminismMode::kOff;
    c.num_blocks = 40;
    c.block_size = 16;
    c.max_num_batched_tokens = 256;
    c.admission_reserve = reserve;
    c.check_integrity = true;
    return c;
  }

  TestModel m_;
};

TEST_F(Admission, ReserveForMaxTokensPreemptsNone) {
  const std::vector<Request> reqs = requests();
  EngineStats greedy, reserved;
  const std::vector<Outcome> a = run_workload(m_, config(0.0), reqs, Load{}, &greedy);
  const std::vector<Outcome> b = run_workload(m_, config(1.0), reqs, Load{}, &reserved);
  EXPECT_GT(greedy.preemptions, 0) << "the pool must be too small for this test to mean much";
  EXPECT_EQ(reserved.preemptions, 0);
  EXPECT_LT(reserved.fast_tokens, greedy.fast_tokens) << "no recomputed tokens";
  // Requests waited at admission for many steps; each admission counts one prefix-cache lookup
  // (a preempted request is admitted again).
  EXPECT_EQ(reserved.prefix_cache_queries, static_cast<int64_t>(reqs.size()));
  EXPECT_EQ(greedy.prefix_cache_queries, static_cast<int64_t>(reqs.size()) + greedy.preemptions);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].ids.size(), static_cast<size_t>(reqs[i].max_tokens)) << "request " << i;
    // Greedy requests: the same tokens whatever the batch (sampled ones too, by their seeds;
    // the fast lane's values may differ in the last bits across batches, so ids only).
    if (reqs[i].sampling.temperature == 0.0f) {
      EXPECT_EQ(a[i].ids, b[i].ids) << "request " << i;
    }
  }
}

TEST_F(Admission, AutoPreemptsNoneWhileRequestsRunToMaxTokens) {
  EXPECT_EQ(Engine(*m_.model, config(-1.0), nullptr).stats().admission_reserve_ratio, 1.0)
      << "published before the first step";
  const std::vector<Request> reqs = requests();
  EngineStats st;
  const std::vector<Outcome> out = run_workload(m_, config(-1.0), reqs, Load{}, &st);
  EXPECT_EQ(st.preemptions, 0);
  EXPECT_EQ(st.admission_reserve_ratio, 1.0) << "every request used all of its max_tokens";
  for (size_t i = 0; i < out.size(); ++i)
    EXPECT_EQ(out[i].ids.size(), static_cast<size_t>(reqs[i].max_tokens)) << "request " << i;
}

// Prompts of 100-180 tokens in chunks of 32 and one output token each (sampled from the
// prefill's logits: no KV beyond the prompt), four times the pool: eight first chunks fit in a
// step's budget, but with the rest of their prompts reserved at admission no running request is
// ever preempted, whatever the output reserve.
TEST_F(Admission, PromptsAreAlwaysReserved) {
  std::vector<Request> reqs = make_requests(24, 300, 11, 1, 1);
  for (Request& r : reqs) {
    r.deterministic = false;
    r.ignore_eos = true;
    r.prompt.resize(100 + r.prompt.size() * 7 % 80, 7);
  }
  EngineConfig c = config(0.0);
  c.prefill_chunk = 32;
  EngineStats st;
  const std::vector<Outcome> out = run_workload(m_, c, reqs, Load{}, &st);
  EXPECT_EQ(st.preemptions, 0);
  EXPECT_EQ(out.size(), reqs.size());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].ids.size(), 1u) << "request " << i;
}

// Auto learns from requests that stop early: a second wave of requests that run to max_tokens
// is then admitted more at a time than with R = 1 (and preempted when the guess was wrong),
// and every request still finishes with its max_tokens.
TEST_F(Admission, AutoAdmitsMoreAfterEarlyStops) {
  auto peak_running = [&](double reserve, EngineStats* st) {
    Engine engine(*m_.model, config(reserve), nullptr);
    std::vector<Request> early = requests();
    for (Request& r : early) {
      r.stop_ids.clear();
      for (int32_t t = 0; t < 300; ++t) r.stop_ids.push_back(t);  // any first token stops it
    }
    for (const Request& r : early) engine.add_request(r, [](RequestOutput&&) {});
    engine.run_until_idle();
    if (reserve < 0) {
      EXPECT_LT(engine.stats().admission_reserve_ratio, 0.1) << "one token of 40-60 used";
    }
    const std::vector<Request> full = requests();
    std::vector<int> n_out(full.size(), 0);
    for (size_t i = 0; i < full.size(); ++i)
      engine.add_request(
          full[i], [&, i](RequestOutput&& o) { n_out[i] += static_cast<int>(o.tokens.size()); });
    int peak = 0;
    while (engine.step()) peak = std::max(peak, engine.stats().running);
    for (size_t i = 0; i < full.size(); ++i)
      EXPECT_EQ(n_out[i], full[i].max_tokens) << "request " << i;
    *st = engine.stats();
    return peak;
  };
  EngineStats learned, fixed;
  const int peak_auto = peak_running(-1.0, &learned);
  const int peak_one = peak_running(1.0, &fixed);
  EXPECT_GT(peak_auto, peak_one) << "auto should have learned that requests stop early";
  EXPECT_EQ(fixed.preemptions, 0);
  EXPECT_GT(learned.admission_reserve_ratio, 0.5) << "the second wave ran to max_tokens";
}

TEST(AdmissionRatio, AutoFollowsTheShareFinishedRequestsUsed) {
  BlockManager blocks(40, 16, true);
  EngineConfig c;
  Scheduler auto_sched(c, blocks);
  EXPECT_EQ(auto_sched.reserve_ratio(), 1.0) << "auto starts where nothing is preempted";
  Sequence s;
  s.req.max_tokens = 100;
  s.n_committed = 10;
  for (int i = 0; i < 100; ++i) auto_sched.on_finished(s);
  EXPECT_NEAR(auto_sched.reserve_ratio(), 0.1, 0.01);
  // max_tokens beyond the cap counts as the cap: 4096 of 10,000 used is all of it.
  s.req.max_tokens = 10000;
  s.n_committed = 5000;
  for (int i = 0; i < 100; ++i) auto_sched.on_finished(s);
  EXPECT_NEAR(auto_sched.reserve_ratio(), 1.0, 0.01);
  // Weighed by tokens: short requests that run to max_tokens (16 of 16) beside long ones that
  // stop early (100 of 1,000) reserve about a tenth, not the half a plain average would give.
  Sequence shortr, longr;
  shortr.req.max_tokens = shortr.n_committed = 16;
  longr.req.max_tokens = 1000;
  longr.n_committed = 100;
  for (int i = 0; i < 100; ++i) {
    auto_sched.on_finished(shortr);
    auto_sched.on_finished(longr);
  }
  EXPECT_NEAR(auto_sched.reserve_ratio(), 116.0 / 1016.0, 0.01);

  EngineConfig fixed_c;
  fixed_c.admission_reserve = 0.25;
  Scheduler fixed(fixed_c, blocks);
  s.n_committed = 1;
  fixed.on_finished(s);
  EXPECT_EQ(fixed.reserve_ratio(), 0.25);
}

TEST_F(Admission, ReserveOutsideZeroToOneIsRefused) {
  for (double r : {-0.1, -2.0, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    EngineConfig c = config(r);
    try {
      c.validate();
      ADD_FAILURE() << "reserve " << r << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--admission-reserve"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace llm42::test
