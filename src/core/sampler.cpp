#include "core/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "util/error.h"
#include "util/hash.h"

namespace llm42 {
namespace {

// max and log-sum-exp of a row, in index order.
double log_sum_exp(const float* x, int n, double* max_out) {
  double m = -INFINITY;
  for (int i = 0; i < n; ++i) m = std::max(m, static_cast<double>(x[i]));
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - m);
  if (max_out != nullptr) *max_out = m;
  return m + std::log(s);
}

// Applies presence/frequency (generated tokens) and repetition (prompt + generated) penalties.
void apply_penalties(std::vector<double>& z, const SamplingParams& p, const TokenHistory& h) {
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : h.generated) ++counts[t];
    for (const auto& [t, n] : counts) {
      if (t < 0 || t >= static_cast<int32_t>(z.size())) continue;
      z[t] -= static_cast<double>(p.frequency_penalty) * n + p.presence_penalty;
    }
  }
  if (p.repetition_penalty != 1.0f) {
    std::vector<char> seen(z.size(), 0);
    auto mark = [&](std::span<const int32_t> ids) {
      for (int32_t t : ids)
        if (t >= 0 && t < static_cast<int32_t>(z.size())) seen[t] = 1;
    };
    mark(h.prompt);
    mark(h.generated);
    const double r = p.repetition_penalty;
    for (size_t i = 0; i < z.size(); ++i)
      if (seen[i]) z[i] = z[i] > 0 ? z[i] / r : z[i] * r;
  }
}

// out.id's logprob and the `top_logprobs` best alternatives, all of log_softmax(raw logits).
void fill_logprobs(const float* logits, int vocab, int top_logprobs, SampledToken& out) {
  const double lse = log_sum_exp(logits, vocab, nullptr);
  out.logprob = static_cast<float>(static_cast<double>(logits[out.id]) - lse);
  if (top_logprobs > 0) {
    const int k = std::min(top_logprobs, vocab);
    std::vector<int32_t> ids(static_cast<size_t>(vocab));
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < k; ++i)
      out.top.emplace_back(ids[i], static_cast<float>(static_cast<double>(logits[ids[i]]) - lse));
  }
}

}  // namespace

SampledToken sample_token(const float* logits, int vocab, const SamplingParams& params,
                          uint64_t seed, int64_t position, const TokenHistory& history) {
  LLM42_ASSERT(vocab > 0);
  SampledToken out;
  std::vector<double> z(logits, logits + vocab);
  apply_penalties(z, params, history);

  if (params.greedy()) {
    int best = 0;
    for (int i = 1; i < vocab; ++i)
      if (z[i] > z[best]) best = i;  // strict: ties keep the lowest id
    out.id = best;
  } else {
    const double inv_t = 1.0 / params.temperature;
    for (double& v : z) v *= inv_t;
    // Candidate ids, sorted by (z descending, id ascending) when a filter needs the order.
    std::vector<int32_t> kept;
    const bool filtered =
        (params.top_k > 0 && params.top_k < vocab) || params.top_p < 1.0f || params.min_p > 0.0f;
    if (filtered) {
      kept.resize(static_cast<size_t>(vocab));
      std::iota(kept.begin(), kept.end(), 0);
      auto by_value = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
      const size_t k = params.top_k > 0
                           ? std::min<size_t>(static_cast<size_t>(params.top_k), kept.size())
                           : kept.size();
      std::partial_sort(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(k), kept.end(),
                        by_value);
      kept.resize(k);
      // Softmax over the kept candidates, in sorted order.
      const double zmax = z[kept[0]];
      std::vector<double> prob(kept.size());
      double total = 0.0;
      for (size_t i = 0; i < kept.size(); ++i) total += prob[i] = std::exp(z[kept[i]] - zmax);
      if (params.top_p < 1.0f) {
        double cum = 0.0;
        size_t n = 0;
        while (n < kept.size()) {
          cum += prob[n] / total;
          ++n;
          if (cum >= params.top_p) break;
        }
        kept.resize(n);
        prob.resize(n);
      }
      if (params.min_p > 0.0f) {
        // prob[0] is the largest; keep ids whose probability is at least min_p of it.
        const double threshold = params.min_p * prob[0];
        size_t n = 1;
        while (n < kept.size() && prob[n] >= threshold) ++n;
        kept.resize(n);
      }
      std::sort(kept.begin(), kept.end());
    }
    auto score = [&](int32_t i) {
      const double u =
          counter_uniform(seed, static_cast<uint64_t>(position), static_cast<uint64_t>(i));
      return z[i] - std::log(-std::log(u));
    };
    int32_t best = -1;
    double best_score = -INFINITY;
    const int n = filtered ? static_cast<int>(kept.size()) : vocab;
    for (int j = 0; j < n; ++j) {
      const int32_t i = filtered ? kept[j] : j;
      if (std::isinf(z[i]) && z[i] < 0) continue;
      const double sc = score(i);
      if (best < 0 || sc > best_score) {
        best = i;
        best_score = sc;
      }
    }
    out.id = best < 0 ? 0 : best;
  }

  fill_logprobs(logits, vocab, params.top_logprobs, out);
  return out;
}

SampledToken score_token(const float* logits, int vocab, int32_t id, int top_logprobs) {
  LLM42_ASSERT(vocab > 0 && id >= 0 && id < vocab, "token {} (vocabulary {})", id, vocab);
  SampledToken out;
  out.id = id;
  out.rank = 1;
  for (int i = 0; i < vocab; ++i) out.rank += logits[i] > logits[id] ? 1 : 0;
  fill_logprobs(logits, vocab, top_logprobs, out);
  return out;
}

}  // namespace llm42
