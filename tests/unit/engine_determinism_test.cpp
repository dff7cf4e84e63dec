// The proof of the LLM-42 protocol on the CPU backend (DESIGN.md §3, §6): deterministic requests'
// token ids and logprobs are bitwise identical across loads, arrival orders, batch limits, W and
// G, chunk sizes, cache states, preemption and injected mismatches, equal to global mode and to
// each request run alone in the canonical lane. The same workload in off mode must diverge, or
// the suite would prove nothing.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "engine_harness.h"
#include "model/checkpoint.h"
#include "test_util.h"

namespace llm42::test {
namespace {

enum class ModelKind { kDummy, kStories };

TestModel make_model(ModelKind kind, bool bf16) {
  TestModel m;
  BackendOptions o;
  o.threads = 2;
  o.round_activations_bf16 = bf16;
  m.backend = make_backend(o);
  ModelWeights w;
  if (kind == ModelKind::kDummy) {
    w = dummy_weights(*m.backend, tiny_test_config(), DType::kF32, 11);
  } else {
    const Checkpoint ckpt =
        load_checkpoint(shared_dir() + "/models/stories260K/stories260K.bin");
    w = load_weights(*m.backend, ckpt, DType::kF32);
  }
  m.model = std::make_unique<Transformer>(*m.backend, std::move(w), 2048, 2048);
  return m;
}

EngineConfig base_config() {
  EngineConfig c;
  c.mode = DeterminismMode::kDvr;
  c.window = 16;
  c.group = 4;
  c.max_num_seqs = 32;
  c.max_num_batched_tokens = 512;
  c.prefill_chunk = 64;
  c.num_blocks = 1024;
  c.check_integrity = true;
  return c;
}

struct Scenario {
  std::string name;
  EngineConfig config;
  Load load;
  bool preempts = false;  // the scenario is meant to preempt running requests
};

std::vector<Scenario> scenarios() {
  std::vector<Scenario> s;
  const EngineConfig b = base_config();
  auto with = [&](std::string name, auto edit, Load load) {
    EngineConfig c = b;
    edit(c);
    s.push_back({std::move(name), c, load});
  };
  auto none = [](EngineConfig&) {};
  with("alone", none, Load{.alone = true});
  with("heavy background load", none, Load{.background = 96, .seed = 2, .arrivals_per_step = 3});
  with("shuffled arrivals", none, Load{.background = 24, .seed = 3, .shuffle = true,
                                       .arrivals_per_step = 2});
  with("reversed arrivals", none, Load{.background = 8, .seed = 4, .reverse = true});
  with("seq cap 3, budget 40", [](EngineConfig& c) { c.max_num_seqs = 3; c.max_num_batched_tokens = 40; },
       Load{.background = 16, .seed = 5});
  with("W 4, G 2", [](EngineConfig& c) { c.window = 4; c.group = 2; },
       Load{.background = 32, .seed = 6, .arrivals_per_step = 5});
  with("W 64, G 16", [](EngineConfig& c) { c.window = 64; c.group = 16; },
       Load{.background = 32, .seed = 7, .arrivals_per_step = 5});
  with("prefill chunk 5", [](EngineConfig& c) { c.prefill_chunk = 5; },
       Load{.background = 16, .seed = 8, .arrivals_per_step = 4});
  with("no prefix cache", [](EngineConfig& c) { c.prefix_cache = false; },
       Load{.background = 16, .seed = 9});
  // No output reserve at admission: running requests outgrow the pool and are preempted.
  with("tiny KV pool (preemption)",
       [](EngineConfig& c) {
         c.num_blocks = 24;
         c.admission_reserve = 0;
       },
       Load{.background = 24, .seed = 10, .arrivals_per_step = 8});
  s.back().preempts = true;
  with("injected mismatches 40%", [](EngineConfig& c) { c.inject_mismatch_rate = 0.4; },
       Load{.background = 16, .seed = 11, .arrivals_per_step = 4});
  with("canonical decode when half deterministic",
       [](EngineConfig& c) { c.canonical_decode_threshold = 0.5; },
       Load{.background = 32, .seed = 12, .arrivals_per_step = 3});
  // CUDA's default: any deterministic row makes the step's pass canonical, and the background's
  // rows ride in it with fast attention.
  with("canonical decode on any deterministic row",
       [](EngineConfig& c) { c.canonical_decode_threshold = 0.0; },
       Load{.background = 64, .seed = 15, .arrivals_per_step = 4});
  with("background with aborts", none,
       Load{.background = 48, .seed = 13, .arrivals_per_step = 6, .abort_fraction = 0.5});
  with("global mode under load", [](EngineConfig& c) { c.mode = DeterminismMode::kGlobal; },
       Load{.background = 48, .seed = 14, .arrivals_per_step = 3});
  return s;
}

struct Param {
  ModelKind model;
  bool bf16;
};

class Determinism : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (GetParam().model == ModelKind::kStories && shared_dir().empty())
      GTEST_SKIP() << "shared test data not found (set LLM42_SHARED_DIR)";
    model_ = make_model(GetParam().model, GetParam().bf16);
    requests_ = make_requests(64, model_.model->config().vocab_size, 77, 8, 72);
    // The reference: each request alone in the canonical lane (global mode, one sequence).
    EngineConfig ref = base_config();
    ref.mode = DeterminismMode::kGlobal;
    ref.max_num_seqs = 1;
    reference_ = run_workload(model_, ref, requests_, Load{.alone = true});
  }

  int count_mismatches(const std::vector<Outcome>& got, std::string* first) const {
    int bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const int at = first_mismatch(got[i], reference_[i]);
      if (at < 0) continue;
      if (bad++ == 0 && first != nullptr)
        *first = fmt::format("request {} first differs at output position {} ({} vs {} tokens)",
                             i, at, got[i].ids.size(), reference_[i].ids.size());
    }
    return bad;
  }

  TestModel model_;
  std::vector<Request> requests_;
  std::vector<Outcome> reference_;
};

TEST_P(Determinism, IdenticalAcrossScenarios) {
  for (const Scenario& sc : scenarios()) {
    EngineStats stats;
    const std::vector<Outcome> got = run_workload(model_, sc.config, requests_, sc.load, &stats);
    std::string first;
    const int bad = count_mismatches(got, &first);
    EXPECT_EQ(bad, 0) << "scenario '" << sc.name << "': " << bad << " of " << got.size()
                      << " deterministic requests differ; " << first;
    EXPECT_EQ(stats.kv_blocks_used, 0) << sc.name << ": KV blocks still held at the end";
    if (sc.preempts) {
      EXPECT_GT(stats.preemptions, 0) << sc.name << ": nothing was preempted";
    }
    if (sc.config.mode == DeterminismMode::kDvr && sc.load.background > 0) {
      EXPECT_GT(stats.mixed_passes, 0) << sc.name << ": no pass mixed the two lanes";
    }
  }
}

TEST_P(Determinism, PrefixCacheWarm) {
  // The same workload twice on one engine: the second run is served from a warm prefix cache.
  EngineConfig c = base_config();
  TestModel& m = model_;
  Engine engine(*m.model, c, nullptr);
  std::vector<Outcome> second(requests_.size());
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < requests_.size(); ++i) {
      engine.add_request(requests_[i], [&, i, pass](RequestOutput&& o) {
        if (pass == 1) append_output(second[i], o);
      });
    }
    engine.run_until_idle();
  }
  EXPECT_GT(engine.stats().prefix_cache_hits, 0);
  std::string first;
  EXPECT_EQ(count_mismatches(second, &first), 0) << first;
}

TEST_P(Determinism, FastLaneKvSharedOnlyAmongNonDeterministicRequests) {
  // In dvr mode the non-deterministic twins of the requests prefill with fast attention and
  // publish fast-lane blocks: a second round of twins must reuse them, and the deterministic
  // requests that follow must not (their answer stays the canonical one).
  EngineConfig c = base_config();
  Engine engine(*model_.model, c, nullptr);
  std::vector<Request> twins = requests_;
  for (Request& r : twins) r.deterministic = false;
  auto round = [&](const std::vector<Request>& reqs, std::vector<Outcome>* outcomes) {
    int64_t cached = 0;
    for (size_t i = 0; i < reqs.size(); ++i) {
      engine.add_request(reqs[i], [&, i](RequestOutput&& o) {
        if (outcomes != nullptr) append_output((*outcomes)[i], o);
        if (o.finished) cached += o.cached_tokens;
      });
    }
    engine.run_until_idle();
    return cached;
  };
  EXPECT_EQ(round(twins, nullptr), 0);
  EXPECT_GT(round(twins, nullptr), 0) << "fast-lane blocks were not reused";
  std::vector<Outcome> got(requests_.size());
  EXPECT_EQ(round(requests_, &got), 0) << "a deterministic request reused fast-lane blocks";
  std::string first;
  EXPECT_EQ(count_mismatches(got, &first), 0) << first;
  EXPECT_GT(engine.stats().fast_tokens, 0);
}

TEST_P(Determinism, OffModeDiverges) {
  // The same workload in off mode, under load: some requests must differ from the canonical
  // answer, or the scenarios above prove nothing.
  EngineConfig c = base_config();
  c.mode = DeterminismMode::kOff;
  int diverged = 0;
  for (uint32_t seed : {21u, 22u, 23u}) {
    const auto got = run_workload(model_, c, requests_,
                                  Load{.background = 48, .seed = seed, .arrivals_per_step = 3});
    diverged = std::max(diverged, count_mismatches(got, nullptr));
  }
  EXPECT_GT(diverged, 0) << "off mode never diverged: the workload cannot expose nondeterminism";
  std::printf("off mode: %d of %zu requests diverged from the canonical answer\n", diverged,
              requests_.size());
}

TEST_P(Determinism, FastLaneValuesWouldBeCaught) {
  // The comparison is sensitive to any fast-lane value reaching a client: with verification
  // reduced to "accept everything" (--verify-no-rollback), committed logprobs come from the fast
  // lane and the suite must fail; with real verification it must pass under the same load.
  // Natural token rollbacks are counted and reported (they need a near-tie in the logits).
  int64_t windows = 0, rollbacks = 0;
  for (bool no_rollback : {true, false}) {
    EngineStats stats;
    EngineConfig c = base_config();
    c.window = 32;
    // Few rows per decode step: the fast lane then splits K, as GPU libraries do for small
    // batches, so its rounding differs from the canonical lane's.
    c.max_num_seqs = 4;
    c.verify_no_rollback = no_rollback;
    const auto got = run_workload(model_, c, requests_,
                                  Load{.background = 32, .seed = 31, .arrivals_per_step = 2},
                                  &stats);
    const int bad = count_mismatches(got, nullptr);
    if (no_rollback) {
      EXPECT_GT(bad, 0) << "fast-lane values went unnoticed: the comparison proves nothing";
    } else {
      EXPECT_EQ(bad, 0);
      windows = stats.verify.windows_verified;
      rollbacks = stats.verify.rollbacks;
    }
  }
  std::printf("dvr: %lld windows verified, %lld natural rollbacks\n",
              static_cast<long long>(windows), static_cast<long long>(rollbacks));
}

TEST_P(Determinism, FixedShapeIsDeterministicWithinOneConfiguration) {
  EngineConfig c = base_config();
  c.verify_schedule = VerifyMode::kFixedShape;
  c.window = 8;
  c.group = 4;
  const auto a = run_workload(model_, c, requests_, Load{.background = 32, .seed = 41,
                                                         .arrivals_per_step = 3});
  const auto b = run_workload(model_, c, requests_, Load{.background = 8, .seed = 42,
                                                         .shuffle = true});
  int bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const int at = first_mismatch(a[i], b[i]);
    if (at < 0) continue;
    ++bad;
    ADD_FAILURE() << "request " << i << " differs at output position " << at << " ("
                  << a[i].ids.size() << " vs " << b[i].ids.size() << " tokens): ids "
                  << a[i].ids[at] << " vs " << b[i].ids[at] << ", logprobs " << a[i].logprobs[at]
                  << " vs " << b[i].logprobs[at] << ", windows " << a[i].verify.windows_verified
                  << " vs " << b[i].verify.windows_verified;
  }
  EXPECT_EQ(bad, 0) << "fixed-shape verification differed between two loads";
}

INSTANTIATE_TEST_SUITE_P(
    Models, Determinism,
    ::testing::Values(Param{ModelKind::kDummy, false}, Param{ModelKind::kDummy, true},
                      Param{ModelKind::kStories, false}, Param{ModelKind::kStories, true}),
    [](const ::testing::TestParamInfo<Param>& p) {
      return std::string(p.param.model == ModelKind::kDummy ? "Dummy" : "Stories260K") +
             (p.param.bf16 ? "Bf16" : "Fp32");
    });

}  // namespace
}  // namespace llm42::test
