#include "engine_harness.h"

#include <algorithm>
#include <numeric>

namespace llm42::test {

std::vector<Request> make_requests(int n, int vocab, uint32_t seed, int max_tokens_lo,
                                   int max_tokens_hi) {
  std::mt19937 rng(seed);
  std::vector<Request> out;
  for (int i = 0; i < n; ++i) {
    Request r;
    const int len = 1 + static_cast<int>(rng() % 40);
    r.prompt.push_back(1);
    for (int j = 1; j < len; ++j) r.prompt.push_back(3 + static_cast<int32_t>(rng() % (vocab - 3)));
    r.max_tokens = max_tokens_lo + static_cast<int>(rng() % (max_tokens_hi - max_tokens_lo + 1));
    r.deterministic = true;
    r.logprobs = true;
    if (i % 2 == 1) {
      r.sampling.temperature = 0.7f + 0.1f * static_cast<float>(i % 5);
      r.sampling.seed = 1000 + i;
      if (i % 3 == 0) r.sampling.top_p = 0.9f;
      if (i % 5 == 0) r.sampling.top_k = 40;
      if (i % 7 == 0) r.sampling.min_p = 0.05f;
    } else {
      r.sampling.temperature = 0.0f;
      if (i % 4 == 0) r.sampling.frequency_penalty = 0.3f;
    }
    out.push_back(std::move(r));
  }
  return out;
}

EngineConfig small_engine_config(DeterminismMode mode) {
  EngineConfig c;
  c.mode = mode;
  c.window = 8;
  c.group = 4;
  c.max_num_seqs = 16;
  c.max_num_batched_tokens = 256;
  c.prefill_chunk = 24;
  c.num_blocks = 1024;
  c.check_integrity = true;
  return c;
}

int count_differing(const std::vector<Outcome>& got, const std::vector<Outcome>& ref,
                    std::string* first) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const int at = first_mismatch(got[i], ref[i]);
    if (at >= 0 && bad++ == 0 && first != nullptr)
      *first = "request " + std::to_string(i) + " first differs at output " + std::to_string(at);
  }
  return bad;
}

void append_output(Outcome& oc, const RequestOutput& o) {
  oc.ids.insert(oc.ids.end(), o.tokens.begin(), o.tokens.end());
  for (const TokenLogprob& lp : o.logprobs) oc.logprobs.push_back(lp.logprob);
  oc.text += o.text;
  if (o.finished) {
    oc.reason = o.finish_reason;
    oc.verify = o.verify;
  }
}

std::vector<Outcome> run_workload(TestModel& m, const EngineConfig& config,
                                  const std::vector<Request>& requests, const Load& load,
                                  EngineStats* stats_out,
                                  const std::function<void(Engine&)>& per_step) {
  std::vector<Outcome> outcomes(requests.size());
  const int vocab = m.config().vocab_size;
  auto collect = [&outcomes](size_t i) {
    return [&outcomes, i](RequestOutput&& o) { append_output(outcomes[i], o); };
  };

  if (load.alone) {
    for (size_t i = 0; i < requests.size(); ++i) {
      const std::unique_ptr<Engine> engine = m.engine(config);
      engine->add_request(requests[i], collect(i));
      engine->run_until_idle();
    }
    return outcomes;
  }

  const std::unique_ptr<Engine> owned_engine = m.engine(config);
  Engine& engine = *owned_engine;
  std::mt19937 rng(load.seed);
  // Arrival list: indices >= 0 are the given requests, -1 a background request.
  std::vector<int> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  if (load.reverse) std::reverse(order.begin(), order.end());
  if (load.shuffle) std::shuffle(order.begin(), order.end(), rng);
  for (int b = 0; b < load.background; ++b) {
    const size_t at = rng() % (order.size() + 1);
    order.insert(order.begin() + static_cast<std::ptrdiff_t>(at), -1);
  }
  std::map<int64_t, std::vector<uint64_t>> aborts_at_step;  // step -> ids
  int64_t step = 0;
  size_t next = 0;
  while (true) {
    for (int k = 0; k < load.arrivals_per_step && next < order.size(); ++k, ++next) {
      const int idx = order[next];
      if (idx >= 0) {
        engine.add_request(requests[static_cast<size_t>(idx)], collect(static_cast<size_t>(idx)));
        continue;
      }
      Request r;
      const int len = 1 + static_cast<int>(rng() % 60);
      for (int j = 0; j < len; ++j) r.prompt.push_back(3 + static_cast<int32_t>(rng() % (vocab - 3)));
      r.max_tokens = 1 + static_cast<int>(rng() % 80);
      r.sampling.temperature = rng() % 2 ? 0.0f : 0.9f;
      r.logprobs = rng() % 2 == 0;
      const uint64_t id = engine.add_request(std::move(r), nullptr);
      if (std::uniform_real_distribution<double>(0, 1)(rng) < load.abort_fraction)
        aborts_at_step[step + 1 + static_cast<int64_t>(rng() % 20)].push_back(id);
    }
    if (auto it = aborts_at_step.find(step); it != aborts_at_step.end())
      for (uint64_t id : it->second) engine.abort(id);
    const bool more = engine.step();
    if (per_step) per_step(engine);
    ++step;
    if (!more && next >= order.size() && aborts_at_step.upper_bound(step) == aborts_at_step.end())
      break;
  }
  if (stats_out != nullptr) *stats_out = engine.stats();
  return outcomes;
}

}  // namespace llm42::test
