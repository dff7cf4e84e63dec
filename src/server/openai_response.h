// The JSON shapes of OpenAI responses: logprobs (the legacy completions form and the chat
// form), usage with llm42's verification counters, and the frame of a response or stream
// chunk. Pure functions; CompletionJob assembles them.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/request.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace llm42::server {

// What every response and chunk of one request carries.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;  // cmpl-... or chatcmpl-...
  int64_t created = 0;  // Unix seconds
  std::string model;
  std::string system_fingerprint;
};

// {"id", "object", "created", "model", "system_fingerprint"} for a response (`chunk` false) or
// a stream chunk.
nlohmann::json response_frame(const ResponseMeta& meta, bool chunk);

// A token as logprobs show it: its text when that is valid UTF-8, else "bytes:\xNN..." (as
// OpenAI shows partial characters), or "token_id:N" when the model has no tokenizer.
std::string token_text(const Tokenizer* tok, int32_t id);

// JSON has no infinities: a logprob of -inf is reported as -9999.0, as vLLM does. The engine
// fails a request whose logits are not finite, so NaN never reaches here; if it did, it would be
// written as null, never as a number.
double json_logprob(float lp);

// Legacy completions logprobs {tokens, token_logprobs, top_logprobs, text_offset} for `lps`;
// `text_offset` is the offset (in characters) of the first token and is advanced past them.
nlohmann::json completion_logprobs(const Tokenizer* tok, std::span<const TokenLogprob> lps,
                                   size_t& text_offset);
// Appends `more`'s arrays to `acc` (both in the legacy form).
void append_completion_logprobs(nlohmann::json& acc, const nlohmann::json& more);

// The echoed prompt's part of legacy completions logprobs: prompt token 0 with null logprob and
// null top_logprobs (it has no context), then each later prompt token with its logprob and a
// top_logprobs object holding the alternatives and the token itself. `lps` holds tokens 1..P-1.
nlohmann::json prompt_completion_logprobs(const Tokenizer* tok, std::span<const int32_t> prompt,
                                          std::span<const TokenLogprob> lps, size_t& text_offset);

// vLLM's prompt_logprobs: [null, {"<id>": {logprob, rank, decoded_token}, ...}, ...], one entry
// per prompt token; each object holds the token itself (its rank among the vocabulary) and the
// alternatives (ranks 1, 2, ...).
nlohmann::json vllm_prompt_logprobs(const Tokenizer* tok, std::span<const TokenLogprob> lps);

// Chat logprobs content entries [{token, logprob, bytes, top_logprobs: [...]}].
nlohmann::json chat_logprobs_content(const Tokenizer* tok, std::span<const TokenLogprob> lps);

struct UsageTotals {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
  VerifyStats verify;
  bool deterministic = false;  // whether this answer carries the determinism guarantee
};

// {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: {cached_tokens},
//  verification: {deterministic, windows_verified, rollbacks, tokens_rolled_back,
//                 verify_passes, recompute_rate}}
nlohmann::json usage_json(const UsageTotals& u);

// Serialises for the wire (UTF-8 kept as is; anything invalid replaced, never thrown).
std::string dump_json(const nlohmann::json& j);

}  // namespace llm42::server
