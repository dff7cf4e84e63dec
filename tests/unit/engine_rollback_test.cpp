// Rollback paths of the verifier (DESIGN.md §3 step 5), each checked against the canonical
// answer: mismatches at the first, a middle and the last position of a window; finishing tokens
// (stop token, max_tokens) inside a window, including ones a rollback removes; requests that
// finish with fewer than W speculative tokens; aborts while windows are being verified.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine_harness.h"
#include "test_util.h"

namespace llm42::test {
namespace {

class Rollback : public ::testing::Test {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.threads = 2;
    o.round_activations_bf16 = true;
    m_.backend = make_backend(o);
    m_.model = std::make_unique<Transformer>(
        *m_.backend, dummy_weights(*m_.backend, tiny_test_config(), DType::kF32, 5), 1024, 1024);
  }

  EngineConfig config(int window) const {
    EngineConfig c;
    c.window = window;
    c.group = 3;
    c.num_blocks = 512;
    c.max_num_batched_tokens = 256;
    c.check_integrity = true;
    return c;
  }

  std::vector<Outcome> canonical(const std::vector<Request>& reqs) {
    EngineConfig c = config(16);
    c.mode = DeterminismMode::kGlobal;
    return run_workload(m_, c, reqs, Load{.alone = true});
  }

  void expect_same(const std::vector<Outcome>& got, const std::vector<Outcome>& want,
                   const std::string& what) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(first_mismatch(got[i], want[i]), -1) << what << ": request " << i;
  }

  TestModel m_;
};

// The canonical decode threshold picks the lane of whole decode steps: at 0 a step with any
// deterministic row is canonical, but a step without one is fast (non-deterministic traffic
// alone runs at full speed). Prefill is canonical in dvr mode whatever the request.
TEST_F(Rollback, CanonicalDecodeThresholdZeroLeavesNonDeterministicStepsFast) {
  std::vector<Request> reqs = make_requests(6, 300, 21, 12, 20);
  for (Request& r : reqs) r.deterministic = false;
  EngineConfig c = config(16);
  c.canonical_decode_threshold = 0.0;
  EngineStats st;
  run_workload(m_, c, reqs, Load{}, &st);
  EXPECT_EQ(st.canonical_tokens, 0) << "no deterministic request, yet canonical work ran";
  EXPECT_EQ(st.canonical_passes, 0);
  EXPECT_GT(st.fast_passes, 0);

  reqs.front().deterministic = true;
  const std::vector<Outcome> got = run_workload(m_, c, reqs, Load{}, &st);
  EXPECT_GT(st.canonical_passes, 0);
  EXPECT_GT(st.verify.canonical_decode_tokens, 0);
  EXPECT_EQ(first_mismatch(got.front(), canonical({reqs.front()}).front()), -1);
}

TEST_F(Rollback, MismatchAtFirstMiddleAndLastPosition) {
  const auto reqs = make_requests(12, 300, 3, 30, 60);
  const auto want = canonical(reqs);
  for (int pos : {0, 7, 15}) {
    EngineConfig c = config(16);
    c.inject_mismatch_rate = 1.0;
    c.inject_mismatch_position = pos;
    EngineStats st;
    const auto got = run_workload(m_, c, reqs, Load{.background = 8, .seed = 9}, &st);
    expect_same(got, want, "forced mismatch at window position " + std::to_string(pos));
    for (const Outcome& o : got) {
      EXPECT_EQ(o.verify.rollbacks, o.verify.windows_verified) << "every window must roll back";
      // Each window commits at most pos + 1 tokens; token 0 comes from the prefill.
      EXPECT_GE(o.verify.windows_verified,
                (static_cast<int64_t>(o.ids.size()) - 1 + pos) / (pos + 1));
    }
    EXPECT_GT(st.verify.tokens_rolled_back, 0) << pos;
  }
}

TEST_F(Rollback, StopTokenInsideWindowIncludingRolledBackOnes) {
  // Make a token of each reference output a stop token: the request must end exactly at its
  // first occurrence. With a forced mismatch at window position 0, windows that contain the stop
  // token are rolled back before it (the stop disappears) until it is committed.
  auto reqs = make_requests(12, 300, 4, 40, 60);
  const auto plain = canonical(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].stop_ids = {plain[i].ids[std::min<size_t>(20, plain[i].ids.size() - 1)]};
    reqs[i].ignore_eos = true;
  }
  const auto want = canonical(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(want[i].reason, FinishReason::kStop);
    EXPECT_EQ(want[i].ids.back(), reqs[i].stop_ids[0]);
  }
  for (int pos : {-1, 0}) {
    EngineConfig c = config(16);
    c.inject_mismatch_rate = pos < 0 ? 0.0 : 1.0;
    c.inject_mismatch_position = pos;
    expect_same(run_workload(m_, c, reqs, Load{.background = 6, .seed = 10}), want,
                "stop token, injection at " + std::to_string(pos));
  }
}

TEST_F(Rollback, MaxTokensInsideWindowAndShortTails) {
  auto reqs = make_requests(16, 300, 5, 2, 40);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].max_tokens = std::vector<int>{1, 2, 5, 15, 16, 17, 21, 33}[i % 8];
    reqs[i].ignore_eos = true;
  }
  const auto want = canonical(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(static_cast<int>(want[i].ids.size()), reqs[i].max_tokens);
    EXPECT_EQ(want[i].reason, FinishReason::kLength);
  }
  for (int window : {4, 16, 64}) {
    expect_same(run_workload(m_, config(window), reqs, Load{.background = 10, .seed = 11}), want,
                "max_tokens with W " + std::to_string(window));
  }
}

TEST_F(Rollback, AbortsDuringVerification) {
  // The engine runs on its own thread; aborts arrive at arbitrary moments, some while windows
  // are being verified. Aborted requests end with kAbort; the others keep their canonical
  // answers; every block is free at the end.
  auto reqs = make_requests(24, 300, 6, 40, 80);
  const auto want = canonical(reqs);
  EngineConfig c = config(8);
  c.inject_mismatch_rate = 0.5;
  Engine engine(*m_.model, c, nullptr);
  std::vector<Outcome> got(reqs.size());
  std::atomic<int> done{0};
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < reqs.size(); ++i) {
    ids.push_back(engine.add_request(reqs[i], [&, i](RequestOutput&& o) {
      got[i].ids.insert(got[i].ids.end(), o.tokens.begin(), o.tokens.end());
      for (const auto& lp : o.logprobs) got[i].logprobs.push_back(lp.logprob);
      if (o.finished) {
        got[i].reason = o.finish_reason;
        ++done;
      }
    }));
  }
  engine.start();
  for (size_t i = 0; i < reqs.size(); i += 3) {
    engine.wait_for_step();
    engine.abort(ids[i]);
  }
  while (done.load() < static_cast<int>(reqs.size()))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  engine.stop(true);
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (got[i].reason == FinishReason::kAbort) {
      // What was streamed before the abort is a prefix of the canonical answer.
      ASSERT_LE(got[i].ids.size(), want[i].ids.size());
      EXPECT_TRUE(std::equal(got[i].ids.begin(), got[i].ids.end(), want[i].ids.begin())) << i;
    } else {
      EXPECT_EQ(first_mismatch(got[i], want[i]), -1) << i;
    }
  }
  EXPECT_GT(engine.stats().requests_aborted, 0);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_F(Rollback, RandomArrivalsAbortsAndPreemptionKeepBlocksConsistent) {
  // Randomized: arrivals, aborts and preemptions (tiny pool), check_integrity after every step,
  // and every KV block free at the end.
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    EngineConfig c = config(8);
    c.num_blocks = 20;
    c.max_num_seqs = 6;
    c.admission_reserve = 0;  // no output reserve: running requests outgrow the pool
    c.canonical_decode_threshold = seed % 2 ? 0.5 : 1.01;
    c.inject_mismatch_rate = 0.3;
    auto reqs = make_requests(20, 300, 100 + seed, 5, 60);
    const auto want = canonical(reqs);
    int steps = 0;
    EngineStats final_stats;
    const auto got = run_workload(
        m_, c, reqs,
        Load{.background = 40, .seed = seed, .shuffle = true, .arrivals_per_step = 2,
             .abort_fraction = 0.4},
        &final_stats, [&](Engine& e) {
          ++steps;
          const EngineStats st = e.stats();
          ASSERT_LE(st.kv_blocks_used, st.kv_blocks_total);
        });
    expect_same(got, want, "randomized seed " + std::to_string(seed));
    EXPECT_GT(steps, 10);
    EXPECT_GT(final_stats.preemptions, 0) << "the pool was meant to force preemption";
    EXPECT_GT(final_stats.requests_aborted, 0);
    EXPECT_EQ(final_stats.kv_blocks_used, 0);
  }
}

}  // namespace
}  // namespace llm42::test
