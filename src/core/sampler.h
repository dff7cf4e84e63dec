// The sampler (DESIGN.md §3): a pure function of (logits, parameters, seed, absolute position,
// token history). Both lanes and both verification schedules call it with the same arguments,
// so a token depends only on its logits.
//
//   greedy:  argmax of the penalized logits, ties to the lowest id.
//   sampled: z = penalized logits / temperature; keep top-k, then top-p (smallest prefix of the
//            sorted distribution reaching p), then min-p (p >= min_p * p_max); pick
//            argmax(z_i + g_i) over the kept ids, g_i = -log(-log(u)) with u a counter-based
//            uniform of (seed, position, i). This is an exact sample of the filtered softmax.
//
// Logprobs are of the model's own distribution: log_softmax of the raw logits (before
// penalties, temperature and filters), accumulated in double in index order.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "core/sampling_params.h"

namespace llm42 {

// Token history a penalty needs: prompt ids and the generated ids before this position.
struct TokenHistory {
  std::span<const int32_t> prompt;
  std::span<const int32_t> generated;
};

struct SampledToken {
  int32_t id = -1;
  float logprob = 0.0f;  // of `id` under log_softmax(raw logits)
  int32_t rank = 0;      // score_token: 1 + the ids with a larger raw logit; 0 when not computed
  std::vector<std::pair<int32_t, float>> top;  // top_logprobs alternatives, best first
};

// Whether t was sampled from finite logits. A NaN or +Inf logit (or a row of -Inf) makes the
// row's log-sum-exp, and so t's logprob, NaN or +Inf, on every backend's sampler.
inline bool from_finite_logits(const SampledToken& t) { return t.logprob <= 0.0f; }

// Samples the token at absolute `position` from one row of `vocab` logits.
SampledToken sample_token(const float* logits, int vocab, const SamplingParams& params,
                          uint64_t seed, int64_t position, const TokenHistory& history);

// A given token (a prompt token) with its logprob, rank and `top_logprobs` alternatives: nothing
// is drawn; the logprob is computed exactly as sample_token computes a drawn token's.
SampledToken score_token(const float* logits, int vocab, int32_t id, int top_logprobs);

}  // namespace llm42
