// The body of POST /v1/completions and /v1/chat/completions, parsed and validated.
//
// Parsing is pure (no model, tokenizer or engine): every error is an ApiError naming the field,
// as OpenAI does ("'top_p' must be in (0, 1]", param "top_p"), so it can be fuzzed on its own.
// Fields OpenAI defines but llm42 does not implement (suffix, logit_bias, best_of > n,
// structured response formats, forced tool calls, non-text message parts) are refused with a 400
// that says so, rather than silently ignored; fields unknown to OpenAI are ignored, as vLLM does.
// Extensions, named as vLLM names them: top_k, min_p, repetition_penalty, ignore_eos,
// stop_token_ids, return_token_ids, add_special_tokens, add_generation_prompt,
// continue_final_message, chat_template_kwargs, prompt_logprobs; and llm42's own
// `deterministic` (alias `is_deterministic`). Completions' `echo` (with `max_tokens` 0 allowed) as
// OpenAI's legacy API.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/sampling_params.h"

namespace llm42::server {

enum class Endpoint { kCompletions, kChatCompletions };

// The field that holds the prompt: "prompt" or "messages".
std::string_view prompt_field(Endpoint e);

struct RequestLimits {
  int max_n = 16;         // choices per prompt
  int max_choices = 256;  // prompts x n in one request
  int max_stop = 16;      // stop strings (OpenAI allows 4)
  int max_top_logprobs = 20;
  int max_json_depth = 64;  // nesting of arrays and objects in the body
};

// One prompt of a completions request: text, or token ids.
struct PromptInput {
  bool is_ids = false;
  std::string text;
  std::vector<int32_t> ids;
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::optional<std::string> model;

  std::vector<PromptInput> prompts;  // completions: one or more
  // Chat: [{role, content (string or null), name, tool_calls, tool_call_id}], and the extra
  // template variables (tools, chat_template_kwargs). Key order is kept as sent.
  nlohmann::ordered_json messages;
  nlohmann::ordered_json template_vars = nlohmann::ordered_json::object();
  bool add_generation_prompt = true;  // chat
  // Chat: the prompt ends inside the final message, which the model continues (not with
  // add_generation_prompt true).
  bool continue_final_message = false;
  std::optional<bool> add_special_tokens;  // unset: completions true, chat false (the template
                                           // writes BOS itself)

  std::optional<int> max_tokens;  // unset: completions 16, chat the rest of the context;
                                  // 0 only with echo (the prompt alone comes back)
  SamplingParams sampling;        // temperature default 1, as OpenAI
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  int n = 1;
  bool ignore_eos = false;
  int min_tokens = 0;
  bool include_stop_str_in_output = false;
  bool deterministic = false;
  bool deterministic_set = false;  // the body said (else the server's default applies)
  bool echo = false;               // completions: the prompt comes back before the completion
  // vLLM's prompt_logprobs: the logprob of every prompt token with this many alternatives.
  std::optional<int> prompt_logprobs;

  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // completions: logprobs != null; chat: logprobs == true
  // The prompt-logprob alternatives the engine computes (-1: none): prompt_logprobs, and with
  // echo + logprobs the completions' logprobs count.
  int engine_prompt_logprobs() const;
  bool return_token_ids = false;
};

// Parses and validates a request body. Throws ApiError (400, or 413 never: the HTTP layer
// enforces the size) naming the field at fault.
ApiRequest parse_api_request(std::string_view body, Endpoint endpoint,
                             const RequestLimits& limits = {});
// The same for a body parse_json_object (json_body.h) has already read.
ApiRequest api_request_from_json(const nlohmann::ordered_json& body, Endpoint endpoint,
                                 const RequestLimits& limits = {});

}  // namespace llm42::server
