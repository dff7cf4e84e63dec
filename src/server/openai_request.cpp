#include "server/openai_request.h"

#include <fmt/format.h>

#include <limits>
#include <utility>

#include "chat/template_variables.h"
#include "server/api_error.h"
#include "server/json_body.h"

namespace llm42::server {
namespace {

// Ordered, so that tool schemas keep their key order when a template writes them with tojson.
using json = nlohmann::ordered_json;

std::vector<int32_t> token_ids(const json& arr, const std::string& name) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i)
    ids.push_back(static_cast<int32_t>(json_integer(arr[i], fmt::format("{}[{}]", name, i), 0,
                                                    std::numeric_limits<int32_t>::max())));
  return ids;
}

void parse_prompt(const json& body, ApiRequest& r) {
  const json* p = json_field(body, "prompt");
  if (p == nullptr) throw invalid_request("prompt", "'prompt' is required");
  if (p->is_string()) {
    r.prompts.push_back({false, p->get<std::string>(), {}});
    return;
  }
  if (!p->is_array())
    json_type_error("prompt",
                    "a string, an array of strings, or token ids (an array of integers or "
                    "of arrays of integers)",
                    *p);
  if (p->empty()) throw invalid_request("prompt", "'prompt' must not be an empty array");
  const json& first = p->front();
  if (first.is_number()) {
    r.prompts.push_back({true, {}, token_ids(*p, "prompt")});
    return;
  }
  for (size_t i = 0; i < p->size(); ++i) {
    const json& item = (*p)[i];
    const std::string name = fmt::format("prompt[{}]", i);
    if (first.is_string()) {
      r.prompts.push_back({false, json_string(item, name), {}});
    } else if (first.is_array()) {
      if (!item.is_array()) json_type_error(name, "an array of token ids", item);
      if (item.empty()) throw invalid_request(name, fmt::format("'{}' is an empty prompt", name));
      r.prompts.push_back({true, {}, token_ids(item, name)});
    } else {
      json_type_error(name, "a string, an integer or an array of integers", item);
    }
  }
}

// Normalises one message: content becomes a string (text parts joined with "\n", as vLLM does
// for templates that expect strings). An assistant message that only calls tools may have no
// content (absent or null): like vLLM, the template sees an empty string, which templates that
// trim or concatenate the content take, where None would fail or print "None".
json parse_message(const json& m, size_t i) {
  const std::string at = fmt::format("messages[{}]", i);
  if (!m.is_object()) json_type_error(at, "an object", m);
  const json* role_v = json_field(m, "role");
  if (role_v == nullptr) throw invalid_request(at + ".role", fmt::format("'{}.role' is required", at));
  const std::string& role = json_string(*role_v, at + ".role");
  if (role != "system" && role != "developer" && role != "user" && role != "assistant" &&
      role != "tool")
    throw invalid_request(at + ".role",
                          fmt::format("'{}.role' = '{}': must be system, developer, user, "
                                      "assistant or tool",
                                      at, role));
  json out = {{"role", role}};
  const json* content = json_field(m, "content");
  const std::string content_name = at + ".content";
  if (content == nullptr) {
    if (role != "assistant")
      throw invalid_request(content_name, fmt::format("'{}' is required", content_name));
    out["content"] = "";
  } else if (content->is_string()) {
    out["content"] = *content;
  } else if (content->is_array()) {
    std::string text;
    for (size_t j = 0; j < content->size(); ++j) {
      const json& part = (*content)[j];
      const std::string pn = fmt::format("{}[{}]", content_name, j);
      if (!part.is_object()) json_type_error(pn, "an object", part);
      const json* type = json_field(part, "type");
      if (type == nullptr) throw invalid_request(pn + ".type", fmt::format("'{}.type' is required", pn));
      const std::string& t = json_string(*type, pn + ".type");
      if (t != "text")
        throw invalid_request(pn + ".type",
                              fmt::format("content parts of type '{}' are not supported: this "
                                          "server takes text only",
                                          t));
      const json* tv = json_field(part, "text");
      if (tv == nullptr) throw invalid_request(pn + ".text", fmt::format("'{}.text' is required", pn));
      if (j > 0) text += "\n";
      text += json_string(*tv, pn + ".text");
    }
    out["content"] = std::move(text);
  } else {
    json_type_error(content_name, "a string or an array of content parts", *content);
  }
  if (const json* name = json_field(m, "name")) out["name"] = json_string(*name, at + ".name");
  if (const json* calls = json_field(m, "tool_calls")) {
    if (!calls->is_array()) json_type_error(at + ".tool_calls", "an array", *calls);
    out["tool_calls"] = *calls;
  }
  if (const json* id = json_field(m, "tool_call_id"))
    out["tool_call_id"] = json_string(*id, at + ".tool_call_id");
  return out;
}

void parse_messages(const json& body, ApiRequest& r) {
  const json* m = json_field(body, "messages");
  if (m == nullptr) throw invalid_request("messages", "'messages' is required");
  if (!m->is_array()) json_type_error("messages", "an array", *m);
  if (m->empty()) throw invalid_request("messages", "'messages' must contain at least one message");
  r.messages = json::array();
  for (size_t i = 0; i < m->size(); ++i) r.messages.push_back(parse_message((*m)[i], i));
  r.prompts.push_back({});  // one prompt, rendered from the messages later

  if (const json* v = json_field(body, "response_format")) {
    if (!v->is_object()) json_type_error("response_format", "an object", *v);
    const json* t = json_field(*v, "type");
    const std::string type = t == nullptr ? "text" : json_string(*t, "response_format.type");
    if (type != "text")
      throw invalid_request("response_format",
                            fmt::format("response_format type '{}' is not supported (only "
                                        "'text')",
                                        type));
  }
  if (const json* v = json_field(body, "tools")) {
    if (!v->is_array()) json_type_error("tools", "an array", *v);
    r.template_vars["tools"] = *v;
  }
  std::string tool_choice = "auto";
  if (const json* v = json_field(body, "tool_choice")) {
    if (!(v->is_string() && (*v == "none" || *v == "auto")))
      throw invalid_request("tool_choice",
                            "only 'none' and 'auto' are supported: this server does not force "
                            "tool calls");
    tool_choice = v->get<std::string>();
  }
  // With 'auto' the client expects tool calls parsed out of the answer, which this server does
  // not do: the calls would come back as plain text.
  if (const json* v = json_field(body, "tools");
      v != nullptr && !v->empty() && tool_choice == "auto")
    throw invalid_request("tools",
                          "'tools' with tool_choice 'auto' is not supported: this server does "
                          "not parse tool calls out of answers; pass tool_choice 'none' to "
                          "show the tools to the model only");
  for (const char* legacy : {"functions", "function_call"})
    if (json_field(body, legacy) != nullptr)
      throw invalid_request(legacy, fmt::format("'{}' is not supported: this server does not "
                                                "parse tool calls out of answers",
                                                legacy));
  if (const json* v = json_field(body, "chat_template_kwargs")) {
    if (!v->is_object()) json_type_error("chat_template_kwargs", "an object", *v);
    for (const auto& [k, val] : v->items()) {
      if (jinja::is_reserved_variable(k))
        throw invalid_request(
            "chat_template_kwargs",
            fmt::format("'chat_template_kwargs' may not set '{}': the server sets it (from the "
                        "request's own fields or the model's tokenizer config)",
                        k));
      r.template_vars[k] = val;
    }
  }
  const json* add_gen = json_field(body, "add_generation_prompt");
  if (add_gen != nullptr) r.add_generation_prompt = json_bool(*add_gen, "add_generation_prompt");
  if (const json* v = json_field(body, "continue_final_message"))
    r.continue_final_message = json_bool(*v, "continue_final_message");
  // As vLLM: only an add_generation_prompt the body sets conflicts, not its default (true).
  if (r.continue_final_message && add_gen != nullptr && r.add_generation_prompt)
    throw invalid_request("continue_final_message",
                          "'continue_final_message' and 'add_generation_prompt' cannot both be "
                          "true");
}

void parse_stop(const json& body, const RequestLimits& limits, ApiRequest& r) {
  if (const json* v = json_field(body, "stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      if (static_cast<int>(v->size()) > limits.max_stop)
        throw invalid_request("stop", fmt::format("'stop' has {} sequences: at most {} are "
                                                  "accepted",
                                                  v->size(), limits.max_stop));
      for (size_t i = 0; i < v->size(); ++i)
        r.stop.push_back(json_string((*v)[i], fmt::format("stop[{}]", i)));
    } else {
      json_type_error("stop", "a string or an array of strings", *v);
    }
    for (const std::string& s : r.stop)
      if (s.empty()) throw invalid_request("stop", "'stop' contains an empty string");
  }
  if (const json* v = json_field(body, "stop_token_ids")) {
    if (!v->is_array()) json_type_error("stop_token_ids", "an array of integers", *v);
    r.stop_token_ids = token_ids(*v, "stop_token_ids");
  }
}

void parse_sampling(const json& body, const RequestLimits& limits, ApiRequest& r) {
  SamplingParams& s = r.sampling;
  if (const json* v = json_field(body, "temperature"))
    s.temperature = static_cast<float>(json_number(*v, "temperature", 0.0, 2.0, "[0, 2]"));
  if (const json* v = json_field(body, "top_p")) {
    s.top_p = static_cast<float>(json_number(*v, "top_p", 0.0, 1.0, "(0, 1]"));
    if (s.top_p <= 0.0f) throw invalid_request("top_p", "'top_p' must be in (0, 1]");
  }
  if (const json* v = json_field(body, "top_k")) {
    // -1 means off, as in vLLM.
    s.top_k = static_cast<int>(json_integer(*v, "top_k", -1, std::numeric_limits<int32_t>::max()));
    if (s.top_k < 0) s.top_k = 0;
  }
  if (const json* v = json_field(body, "min_p"))
    s.min_p = static_cast<float>(json_number(*v, "min_p", 0.0, 1.0, "[0, 1]"));
  if (const json* v = json_field(body, "presence_penalty"))
    s.presence_penalty =
        static_cast<float>(json_number(*v, "presence_penalty", -2.0, 2.0, "[-2, 2]"));
  if (const json* v = json_field(body, "frequency_penalty"))
    s.frequency_penalty =
        static_cast<float>(json_number(*v, "frequency_penalty", -2.0, 2.0, "[-2, 2]"));
  if (const json* v = json_field(body, "repetition_penalty")) {
    s.repetition_penalty =
        static_cast<float>(json_number(*v, "repetition_penalty", 0.0, 10.0, "(0, 10]"));
    if (s.repetition_penalty <= 0.0f)
      throw invalid_request("repetition_penalty", "'repetition_penalty' must be in (0, 10]");
  }
  if (const json* v = json_field(body, "seed")) {
    // Any 64-bit integer; negative seeds are reinterpreted, not rejected.
    if (v->is_number_unsigned()) {
      s.seed = v->get<uint64_t>();
    } else {
      s.seed = static_cast<uint64_t>(json_integer(*v, "seed", std::numeric_limits<int64_t>::min(),
                                                  std::numeric_limits<int64_t>::max()));
    }
  }
  const int max_lp = limits.max_top_logprobs;
  if (r.endpoint == Endpoint::kCompletions) {
    if (const json* v = json_field(body, "logprobs")) {
      s.top_logprobs = static_cast<int>(json_integer(*v, "logprobs", 0, max_lp));
      r.logprobs = true;
    }
  } else {
    if (const json* v = json_field(body, "logprobs")) r.logprobs = json_bool(*v, "logprobs");
    if (const json* v = json_field(body, "top_logprobs")) {
      s.top_logprobs = static_cast<int>(json_integer(*v, "top_logprobs", 0, max_lp));
      if (!r.logprobs)
        throw invalid_request("top_logprobs", "'top_logprobs' requires 'logprobs': true");
    }
  }
}

void parse_unsupported(const json& body, const ApiRequest& r) {
  if (const json* v = json_field(body, "echo");
      v != nullptr && r.endpoint == Endpoint::kChatCompletions && json_bool(*v, "echo"))
    throw invalid_request("echo", "'echo' is only supported by /v1/completions");
  if (const json* v = json_field(body, "suffix");
      v != nullptr && !json_string(*v, "suffix").empty())
    throw invalid_request("suffix", "'suffix' is not supported");
  if (const json* v = json_field(body, "best_of");
      v != nullptr && json_integer(*v, "best_of", 1, 1 << 20) != r.n)
    throw invalid_request("best_of", "'best_of' is not supported (other than equal to 'n')");
  if (const json* v = json_field(body, "logit_bias")) {
    if (!v->is_object()) json_type_error("logit_bias", "an object", *v);
    if (!v->empty()) throw invalid_request("logit_bias", "'logit_bias' is not supported");
  }
  // vLLM's extensions that change what is generated or returned: refused rather than ignored
  // when given a value other than their default.
  for (const char* name :
       {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend",
        "guided_whitespace_pattern", "structured_outputs", "allowed_token_ids",
        "bad_words", "logits_processors", "truncate_prompt_tokens"}) {
    const json* v = json_field(body, name);
    if (v != nullptr && !(v->is_array() && v->empty()))
      throw invalid_request(name, fmt::format("'{}' is not supported", name));
  }
  for (const auto& [name, default_value] :
       {std::pair{"skip_special_tokens", true}, std::pair{"spaces_between_special_tokens", true},
        std::pair{"use_beam_search", false}}) {
    if (const json* v = json_field(body, name);
        v != nullptr && json_bool(*v, name) != default_value)
      throw invalid_request(name, fmt::format("'{}' = {} is not supported", name, v->dump()));
  }
}

}  // namespace

int ApiRequest::engine_prompt_logprobs() const {
  int n = prompt_logprobs.value_or(-1);
  if (echo && logprobs) n = std::max(n, sampling.top_logprobs);
  return n;
}

std::string_view prompt_field(Endpoint e) {
  return e == Endpoint::kCompletions ? "prompt" : "messages";
}

ApiRequest parse_api_request(std::string_view body, Endpoint endpoint,
                             const RequestLimits& limits) {
  return api_request_from_json(parse_json_object(body, limits.max_json_depth), endpoint, limits);
}

ApiRequest api_request_from_json(const json& body, Endpoint endpoint, const RequestLimits& limits) {
  ApiRequest r;
  r.endpoint = endpoint;
  if (const json* v = json_field(body, "model")) r.model = json_string(*v, "model");
  if (endpoint == Endpoint::kCompletions) {
    parse_prompt(body, r);
  } else {
    parse_messages(body, r);
  }
  if (const json* v = json_field(body, "add_special_tokens"))
    r.add_special_tokens = json_bool(*v, "add_special_tokens");

  const int int_max = std::numeric_limits<int32_t>::max();
  if (endpoint == Endpoint::kCompletions)
    if (const json* v = json_field(body, "echo")) r.echo = json_bool(*v, "echo");
  if (const json* v = json_field(body, "max_tokens")) {
    r.max_tokens = static_cast<int>(json_integer(*v, "max_tokens", 0, int_max));
    if (*r.max_tokens == 0 && !r.echo)
      throw invalid_request("max_tokens",
                            "'max_tokens' = 0 must be at least 1 (0 is allowed with 'echo')");
  }
  if (const json* v = json_field(body, "max_completion_tokens"))
    r.max_tokens = static_cast<int>(json_integer(*v, "max_completion_tokens", 1, int_max));
  if (const json* v = json_field(body, "n"))
    r.n = static_cast<int>(json_integer(*v, "n", 1, limits.max_n));
  if (static_cast<int64_t>(r.prompts.size()) * r.n > limits.max_choices)
    throw invalid_request("n", fmt::format("{} prompts x n = {} choices: at most {} per request",
                                           r.prompts.size(), r.n, limits.max_choices));
  parse_sampling(body, limits, r);
  parse_stop(body, limits, r);
  parse_unsupported(body, r);
  if (const json* v = json_field(body, "prompt_logprobs"); v != nullptr && !v->is_null())
    r.prompt_logprobs =
        static_cast<int>(json_integer(*v, "prompt_logprobs", 0, limits.max_top_logprobs));

  if (const json* v = json_field(body, "ignore_eos")) r.ignore_eos = json_bool(*v, "ignore_eos");
  if (const json* v = json_field(body, "min_tokens")) {
    r.min_tokens = static_cast<int>(json_integer(*v, "min_tokens", 0, int_max));
    if (r.max_tokens && r.min_tokens > *r.max_tokens)
      throw invalid_request("min_tokens", fmt::format("'min_tokens' = {} is more than "
                                                      "'max_tokens' = {}",
                                                      r.min_tokens, *r.max_tokens));
  }
  if (const json* v = json_field(body, "include_stop_str_in_output"))
    r.include_stop_str_in_output = json_bool(*v, "include_stop_str_in_output");
  const json* det = json_field(body, "deterministic");
  const json* det_alias = json_field(body, "is_deterministic");
  r.deterministic_set = det != nullptr || det_alias != nullptr;
  if (det != nullptr) r.deterministic = json_bool(*det, "deterministic");
  if (det_alias != nullptr) {
    const bool alias = json_bool(*det_alias, "is_deterministic");
    if (det != nullptr && alias != r.deterministic)
      throw invalid_request("is_deterministic",
                            "'deterministic' and 'is_deterministic' disagree: give one");
    r.deterministic = alias;
  }
  if (const json* v = json_field(body, "return_token_ids"))
    r.return_token_ids = json_bool(*v, "return_token_ids");
  if (const json* v = json_field(body, "stream")) r.stream = json_bool(*v, "stream");
  if (const json* v = json_field(body, "stream_options")) {
    if (!r.stream)
      throw invalid_request("stream_options",
                            "'stream_options' is only allowed when 'stream' is true");
    if (!v->is_object()) json_type_error("stream_options", "an object", *v);
    if (const json* u = json_field(*v, "include_usage"))
      r.include_usage = json_bool(*u, "stream_options.include_usage");
  }
  if (const json* v = json_field(body, "user")) json_string(*v, "user");
  return r;
}

}  // namespace llm42::server
