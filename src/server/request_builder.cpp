#include "server/request_builder.h"

#include <fmt/format.h>

#include <algorithm>

namespace llm42::server {

namespace {

// Refuses a text that is sure to overflow the context before spending the tokenizer on it.
void check_text_size(std::string_view text, const PromptContext& ctx, const std::string& field) {
  if (ctx.max_token_bytes == 0 || ctx.max_seq_len < 1) return;
  // A prompt leaves room for at least one completion token.
  const uint64_t at_least = text.size() / ctx.max_token_bytes;
  if (at_least <= static_cast<uint64_t>(ctx.max_seq_len - 1)) return;
  throw ApiError(400, "invalid_request_error",
                 fmt::format("this model's maximum context length is {} tokens, but the prompt "
                             "is {} bytes, which is at least {} tokens",
                             ctx.max_seq_len, text.size(), at_least),
                 field, "context_length_exceeded");
}

// Tokenizes a prompt, doing no more work than a prompt that fits the context needs: a text sure
// to overflow by its bytes is refused untokenized, and past max_seq_len - 1 tokens (a completion
// needs one) the tokenizer stops and the prompt is refused.
std::vector<int32_t> encode_prompt(std::string_view text, bool add_special,
                                   const PromptContext& ctx, const std::string& field) {
  check_text_size(text, ctx, field);
  const size_t limit =
      ctx.max_seq_len >= 1 ? static_cast<size_t>(ctx.max_seq_len - 1) : SIZE_MAX;
  std::vector<int32_t> ids = ctx.tokenizer->encode(text, add_special, true, limit);
  if (ids.size() > limit)
    throw ApiError(400, "invalid_request_error",
                   fmt::format("this model's maximum context length is {} tokens, but the prompt "
                               "is at least {} tokens (tokenizing stopped there), which leaves no "
                               "room for a completion",
                               ctx.max_seq_len, ids.size()),
                   field, "context_length_exceeded");
  return ids;
}

}  // namespace

size_t max_token_bytes(const Tokenizer& t) {
  size_t longest = 1;
  for (int32_t id = 0; id < t.vocab_size(); ++id)
    longest = std::max(longest, t.token_bytes(id, true).size());
  return 3 * longest;
}

std::string render_chat_prompt(const ApiRequest& r, const PromptContext& ctx,
                               bool continue_final_message) {
  if (ctx.chat_template == nullptr)
    throw invalid_request("messages",
                          "this model has no chat template: start the server with "
                          "--chat-template FILE or a built-in name, or use /v1/completions");
  if (ctx.tokenizer == nullptr)
    throw invalid_request("messages",
                          "this model has no tokenizer, so it cannot take chat "
                          "messages: use /v1/completions with token ids");
  std::string text;
  try {
    text = ctx.chat_template->render(r.messages, r.add_generation_prompt && !continue_final_message,
                                     r.template_vars);
  } catch (const Error& e) {
    throw invalid_request("messages",
                          fmt::format("the chat template refused the messages: {}", e.what()));
  }
  if (!continue_final_message || r.messages.empty()) return text;
  // The render ends the final message (an end-of-turn token, a newline): cut it there. Templates
  // that trim the content are matched by the trimmed content, as transformers does.
  std::string last = r.messages.back()["content"].get<std::string>();
  size_t at = text.rfind(last);
  if (at == std::string::npos) {
    const size_t b = last.find_first_not_of(" \t\r\n");
    last = b == std::string::npos ? "" : last.substr(b, last.find_last_not_of(" \t\r\n") - b + 1);
    at = text.rfind(last);
  }
  if (at == std::string::npos)
    throw invalid_request("messages",
                          "continue_final_message: the chat template's render does "
                          "not hold the final message's content, so it cannot be "
                          "continued");
  return text.substr(0, at + last.size());
}

EngineRequests build_engine_requests(const ApiRequest& r, const PromptContext& ctx) {
  EngineRequests out;
  const std::string field(prompt_field(r.endpoint));
  if (r.endpoint == Endpoint::kChatCompletions) {
    const std::string text = render_chat_prompt(r, ctx, r.continue_final_message);
    out.prompts.push_back(
        encode_prompt(text, r.add_special_tokens.value_or(false), ctx, field));
  } else {
    for (size_t i = 0; i < r.prompts.size(); ++i) {
      const PromptInput& p = r.prompts[i];
      if (p.is_ids) {
        out.prompts.push_back(p.ids);
        continue;
      }
      const std::string where = r.prompts.size() == 1 ? field : fmt::format("{}[{}]", field, i);
      if (ctx.tokenizer == nullptr)
        throw invalid_request(where, "this model has no tokenizer: send the prompt as token ids");
      out.prompts.push_back(encode_prompt(p.text, r.add_special_tokens.value_or(true), ctx, where));
    }
  }

  Request base;
  base.sampling = r.sampling;
  base.deterministic = r.deterministic;
  base.stop_ids = r.stop_token_ids;
  base.stop_strings = r.stop;
  base.ignore_eos = r.ignore_eos;
  base.min_tokens = r.min_tokens;
  base.include_stop_str_in_output = r.include_stop_str_in_output;
  base.logprobs = r.logprobs;
  base.prompt_logprobs = r.engine_prompt_logprobs();
  base.detokenize = ctx.tokenizer != nullptr;
  for (size_t p = 0; p < out.prompts.size(); ++p) {
    const int prompt_len = static_cast<int>(out.prompts[p].size());
    for (int i = 0; i < r.n; ++i) {
      Request q = base;
      q.prompt = out.prompts[p];
      // Completions default to 16 tokens (as OpenAI); chat to the rest of the context (at least
      // one, so that an over-long prompt gets the engine's context-length message).
      q.max_tokens = r.max_tokens.value_or(r.endpoint == Endpoint::kCompletions
                                               ? 16
                                               : std::max(1, ctx.max_seq_len - prompt_len));
      // Echo with max_tokens 0: the engine draws one token, which the response leaves out.
      q.max_tokens = std::max(q.max_tokens, 1);
      // Each choice samples with its own seed: seed + i, so that a seeded request with n > 1 is
      // reproducible and its choices differ.
      const bool default_seeded = r.deterministic && ctx.mode != DeterminismMode::kOff;
      if (r.sampling.seed) {
        q.sampling.seed = *r.sampling.seed + static_cast<uint64_t>(i);
      } else if (default_seeded && r.n > 1) {
        q.sampling.seed = ctx.default_seed + static_cast<uint64_t>(i);
      }
      out.choices.push_back(std::move(q));
      out.choice_prompt.push_back(static_cast<int>(p));
    }
  }
  return out;
}

ApiError engine_error(const Error& e, Endpoint endpoint) {
  const std::string msg = e.what();
  const std::string prompt(prompt_field(endpoint));
  if (msg.find("shutting down") != std::string::npos)
    return ApiError(503, "service_unavailable", "the server is shutting down");
  if (msg.find("maximum context length") != std::string::npos ||
      msg.find("KV blocks") != std::string::npos)
    return ApiError(400, "invalid_request_error", msg, prompt, "context_length_exceeded");
  std::string param;
  if (msg.size() > 1 && msg.front() == '\'') {
    param = msg.substr(1, msg.find('\'', 1) - 1);
  } else if (msg.find("stop token id") != std::string::npos) {
    param = "stop_token_ids";
  }
  if (param == "prompt") param = prompt;
  if (param == "top_logprobs" && endpoint == Endpoint::kCompletions) param = "logprobs";
  return invalid_request(param, msg);
}

}  // namespace llm42::server
