// What a client asks of the engine, and what the engine streams back.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/sampling_params.h"

namespace llm42 {

struct Request {
  std::vector<int32_t> prompt;  // token ids
  SamplingParams sampling;
  bool deterministic = false;
  int max_tokens = 16;
  std::vector<int32_t> stop_ids;            // finish after any of these (kept in the output)
  std::vector<std::string> stop_strings;    // finish when the text contains one (cut from text)
  bool include_stop_str_in_output = false;  // keep the stop string that matched in the text
  bool ignore_eos = false;
  // EOS, stop token ids and stop strings finish the request only from this many output tokens
  // on (the tokens are committed all the same; a stop string must end in the text of a token at
  // or past it).
  int min_tokens = 0;

  // Whether output token `index` (from 0) may finish the request by EOS or a stop.
  bool may_stop_at(int index) const { return index + 1 >= min_tokens; }
  bool logprobs = false;  // return the logprob of every token
  // >= 0: return the logprob of every prompt token from the second on (the first has no
  // context), with this many top alternatives (at most kMaxTopLogprobs) and its rank. They come
  // from the prefill's logits: the canonical lane's for a deterministic request, so they are
  // the logprobs those tokens would get as output. The prompt is then computed whole (no
  // prefix-cache reuse).
  int prompt_logprobs = -1;
  bool scores_prompt() const { return prompt_logprobs >= 0; }
  bool detokenize = true;  // produce text deltas (needs the engine's tokenizer)
};

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
std::string_view finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error"

// Verification counters of one request (or of the whole engine).
struct VerifyStats {
  int64_t windows_verified = 0;  // verification windows this request went through
  int64_t rollbacks = 0;         // windows that ended with a mismatch
  int64_t tokens_rolled_back = 0;
  int64_t verify_passes = 0;            // passes this request took part in
  int64_t verify_tokens = 0;            // tokens it contributed to them
  int64_t canonical_decode_tokens = 0;  // committed straight from canonical-lane decode steps

  VerifyStats& operator+=(const VerifyStats& o) {
    windows_verified += o.windows_verified;
    rollbacks += o.rollbacks;
    tokens_rolled_back += o.tokens_rolled_back;
    verify_passes += o.verify_passes;
    verify_tokens += o.verify_tokens;
    canonical_decode_tokens += o.canonical_decode_tokens;
    return *this;
  }
};

struct TokenLogprob {
  int32_t id = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // top_logprobs alternatives
  int32_t rank = 0;  // prompt tokens: 1 + the ids more likely than it; 0 when not computed
};

// One delta of committed output. Deltas of one request arrive in order; the last one has
// finished = true.
struct RequestOutput {
  uint64_t request_id = 0;
  std::vector<int32_t> tokens;         // newly committed
  std::vector<TokenLogprob> logprobs;  // one per token when Request::logprobs
  // Request::prompt_logprobs: prompt tokens 1..P-1, in the request's first output (before any
  // token; a request that fails before its prompt is computed gets none).
  std::vector<TokenLogprob> prompt_logprobs;
  std::string text;  // newly complete text (never half a UTF-8 character)
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  std::string error;  // when finish_reason == kError
  int prompt_tokens = 0;
  int completion_tokens = 0;  // committed so far
  int cached_tokens = 0;      // prompt tokens served from the prefix cache
  VerifyStats verify;
  double first_token_time = 0;  // seconds since epoch-independent steady clock
  double arrival_time = 0;
  double scheduled_time = 0;  // first admitted to the running batch (0: not yet)
};

using OutputCallback = std::function<void(RequestOutput&&)>;

}  // namespace llm42
