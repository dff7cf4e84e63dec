// Drives an Engine through workloads for the determinism and rollback tests: deterministic
// requests whose outputs are compared bitwise, background traffic, arrival orders and aborts.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace llm42::test {

struct Outcome {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  std::string text;
  FinishReason reason = FinishReason::kNone;
  VerifyStats verify;
  bool operator==(const Outcome& o) const {
    return ids == o.ids && reason == o.reason && text == o.text &&
           logprobs.size() == o.logprobs.size() &&
           std::memcmp(logprobs.data(), o.logprobs.data(), logprobs.size() * 4) == 0;
  }
};

// Position of the first differing token (or logprob) between two outcomes, -1 when equal.
inline int first_mismatch(const Outcome& a, const Outcome& b) {
  const size_t n = std::min(a.ids.size(), b.ids.size());
  for (size_t i = 0; i < n; ++i) {
    if (a.ids[i] != b.ids[i]) return static_cast<int>(i);
    if (i < a.logprobs.size() && i < b.logprobs.size() &&
        std::memcmp(&a.logprobs[i], &b.logprobs[i], 4) != 0)
      return static_cast<int>(i);
  }
  return a == b ? -1 : static_cast<int>(n);
}

struct TestModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Transformer> model;
  std::unique_ptr<Tokenizer> tokenizer;
  // Tensor-parallel ranks (parallel/model_loader.h): used instead of backend and model when set.
  std::unique_ptr<ParallelModel> parallel;

  const ModelConfig& config() const { return parallel ? parallel->config() : model->config(); }
  std::unique_ptr<Engine> engine(const EngineConfig& c) const {
    return parallel ? std::make_unique<Engine>(*parallel, c, tokenizer.get())
                    : std::make_unique<Engine>(*model, c, tokenizer.get());
  }
};

// How requests arrive in one run.
struct Load {
  int background = 0;            // non-deterministic background requests
  uint32_t seed = 1;             // background content and arrival shuffling
  bool shuffle = false;          // deterministic requests in a random order
  bool reverse = false;          // deterministic requests in reverse order
  int arrivals_per_step = 1000;  // requests added between two engine steps
  double abort_fraction = 0.0;   // of background requests, aborted a few steps after arrival
  bool alone = false;            // each deterministic request runs by itself
};

// Appends one streamed output of a request to its outcome.
void append_output(Outcome& oc, const RequestOutput& o);

// Runs `requests` (deterministic or not, as given) under `load` and returns their outcomes in
// the order given. Background requests are drawn from the load's seed.
std::vector<Outcome> run_workload(TestModel& m, const EngineConfig& config,
                                  const std::vector<Request>& requests, const Load& load,
                                  EngineStats* stats_out = nullptr,
                                  const std::function<void(Engine&)>& per_step = nullptr);

// A small engine for the tensor-parallel tests (CPU and CUDA): W 8, G 4, 16 sequences, a
// budget of 256 tokens, prompts in chunks of 24, integrity checked every step.
EngineConfig small_engine_config(DeterminismMode mode);

// How many outcomes differ from their reference (ids or logprob bits); `first` describes the
// first one.
int count_differing(const std::vector<Outcome>& got, const std::vector<Outcome>& ref,
                    std::string* first);

// 64-ish deterministic requests: greedy and seeded sampling, varied lengths.
std::vector<Request> make_requests(int n, int vocab, uint32_t seed, int max_tokens_lo,
                                   int max_tokens_hi);

}  // namespace llm42::test
