#include "server/tokenize_api.h"

#include <fmt/format.h>

#include <limits>

#include "server/api_error.h"
#include "server/json_body.h"

namespace llm42::server {
namespace {

using json = nlohmann::json;
using Body = nlohmann::ordered_json;  // as json_body reads it

const Tokenizer& need_tokenizer(const TokenizeContext& c, const std::string& field) {
  if (c.prompt.tokenizer == nullptr)
    throw invalid_request(field,
                          "this model has no tokenizer, so the server cannot tokenize or "
                          "detokenize: start it with --tokenizer PATH");
  return *c.prompt.tokenizer;
}

void check_model(const Body& body, const TokenizeContext& c) {
  if (const Body* v = json_field(body, "model")) {
    const std::string& model = json_string(*v, "model");
    if (model != c.served_model_name) throw model_not_found(model, c.served_model_name);
  }
}

bool flag(const Body& body, const char* name, bool default_value) {
  const Body* v = json_field(body, name);
  return v == nullptr ? default_value : json_bool(*v, name);
}

// A special token's text, or null.
json token_text(const Tokenizer& t, int32_t id) {
  if (id < 0 || id >= t.vocab_size()) return nullptr;
  return t.token_bytes(id, true);
}

}  // namespace

json tokenize_response(std::string_view body_text, const TokenizeContext& c) {
  const Body body = parse_json_object(body_text, c.limits.max_json_depth);
  check_model(body, c);
  const bool chat = json_field(body, "messages") != nullptr;
  const Tokenizer& tok = need_tokenizer(c, chat ? "messages" : "prompt");
  std::vector<int32_t> ids;
  if (chat) {
    // The messages, template variables, add_generation_prompt, continue_final_message and
    // add_special_tokens as /v1/chat/completions reads them.
    const ApiRequest r = api_request_from_json(body, Endpoint::kChatCompletions, c.limits);
    ids = tok.encode(render_chat_prompt(r, c.prompt, r.continue_final_message),
                     r.add_special_tokens.value_or(false), true);
  } else {
    const Body* prompt = json_field(body, "prompt");
    if (prompt == nullptr)
      throw invalid_request("prompt", "'prompt' (a string) or 'messages' is required");
    ids = tok.encode(json_string(*prompt, "prompt"), flag(body, "add_special_tokens", true), true);
  }
  json token_strs = nullptr;
  if (flag(body, "return_token_strs", false)) {
    token_strs = json::array();
    for (int32_t id : ids) token_strs.push_back(tok.token_bytes(id, true));
  }
  return {{"count", ids.size()},
          {"max_model_len", c.prompt.max_seq_len},
          {"tokens", ids},
          {"token_strs", std::move(token_strs)}};
}

json detokenize_response(std::string_view body_text, const TokenizeContext& c) {
  const Body body = parse_json_object(body_text, c.limits.max_json_depth);
  check_model(body, c);
  const Tokenizer& tok = need_tokenizer(c, "tokens");
  const Body* tokens = json_field(body, "tokens");
  if (tokens == nullptr)
    throw invalid_request("tokens", "'tokens' (an array of token ids) is required");
  if (!tokens->is_array())
    throw invalid_request("tokens", "'tokens' must be an array of token ids");
  std::vector<int32_t> ids;
  ids.reserve(tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) {
    const std::string name = fmt::format("tokens[{}]", i);
    const int64_t id = json_integer((*tokens)[i], name, std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max());
    if (id < 0 || id >= tok.vocab_size())
      throw invalid_request("tokens",
                            fmt::format("'{}' = {} is not a token id: the vocabulary "
                                        "has {} tokens (0..{})",
                                        name, id, tok.vocab_size(), tok.vocab_size() - 1));
    ids.push_back(static_cast<int32_t>(id));
  }
  // Special tokens are kept, as Hugging Face's decode does by default (and vLLM's detokenize).
  return {{"prompt", tok.decode(ids, false)}};
}

json tokenizer_info(const TokenizeContext& c) {
  const Tokenizer& tok = need_tokenizer(c, "");
  // Whether add_special_tokens puts BOS first, as the tokenizer's post-processor decides.
  const std::vector<int32_t> with = tok.encode("a", true, false);
  const bool add_bos =
      with.size() > tok.encode("a", false, false).size() && with[0] == tok.bos_id();
  return {
      {"tokenizer_class", std::string(tok.kind())},
      {"bos_token", token_text(tok, tok.bos_id())},
      {"eos_token", tok.eos_ids().empty() ? json(nullptr) : token_text(tok, tok.eos_ids()[0])},
      // llm42 does not pad prompts, and none of its tokenizer loaders reads a pad token.
      {"pad_token", nullptr},
      {"add_bos_token", add_bos},
      {"chat_template",
       c.prompt.chat_template == nullptr ? json(nullptr) : json(c.prompt.chat_template->source())},
      {"model_max_length", c.prompt.max_seq_len},
      {"vocab_size", tok.vocab_size()}};
}

}  // namespace llm42::server
