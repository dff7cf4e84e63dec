// vLLM's tokenizer endpoints, which evaluation harnesses (lm-evaluation-harness's
// tokenizer_backend=remote) use to tokenize with the server's own tokenizer:
//
//   POST /tokenize        {"prompt": str, "add_special_tokens"?: bool = true, "return_token_strs"?}
//                         or {"messages": [...], "add_generation_prompt"?: bool = true,
//                             "continue_final_message"?: bool = false,
//                             "add_special_tokens"?: bool = false, "chat_template_kwargs"?, ...}
//                         -> {"count", "max_model_len", "tokens", "token_strs": [str] | null}
//   POST /detokenize      {"tokens": [int]} -> {"prompt": str}
//   GET  /tokenizer_info  -> {"tokenizer_class", "eos_token", "bos_token", "pad_token",
//                             "chat_template", "model_max_length", "vocab_size",
//                             "add_bos_token"}
//
// The chat form renders and tokenizes exactly as /v1/chat/completions does (the same
// render_chat_prompt), so its count is that request's prompt_tokens. A prompt longer than the
// context is still tokenized: its count says by how much it is over. Each function is pure (a
// body in, a response body out) and throws ApiError naming the field at fault.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "server/openai_request.h"
#include "server/request_builder.h"

namespace llm42::server {

struct TokenizeContext {
  PromptContext prompt;  // tokenizer (null: every endpoint answers 400), template, max_seq_len
  std::string served_model_name;  // a request's `model`, when given, must be this
  RequestLimits limits;
};

nlohmann::json tokenize_response(std::string_view body, const TokenizeContext& c);
nlohmann::json detokenize_response(std::string_view body, const TokenizeContext& c);
nlohmann::json tokenizer_info(const TokenizeContext& c);

}  // namespace llm42::server
