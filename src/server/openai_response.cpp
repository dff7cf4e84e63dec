#include "server/openai_response.h"

#include <fmt/format.h>

#include <cmath>

#include "tokenizer/utf8.h"

namespace llm42::server {

using json = nlohmann::json;

json response_frame(const ResponseMeta& meta, bool chunk) {
  const bool chat = meta.endpoint == Endpoint::kChatCompletions;
  const char* object = chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                            : "text_completion";
  return {{"id", meta.id},
          {"object", object},
          {"created", meta.created},
          {"model", meta.model},
          {"system_fingerprint", meta.system_fingerprint}};
}

std::string token_text(const Tokenizer* tok, int32_t id) {
  if (tok == nullptr) return fmt::format("token_id:{}", id);
  std::string bytes = tok->token_bytes(id, true);
  if (utf8::is_valid(bytes)) return bytes;
  std::string out = "bytes:";
  for (unsigned char c : bytes) out += fmt::format("\\x{:02x}", c);
  return out;
}

double json_logprob(float lp) {
  // Only -inf has a stand-in; NaN stays NaN, which JSON writes as null, never as a number.
  return std::isinf(lp) && lp < 0 ? -9999.0 : static_cast<double>(lp);
}

namespace {

// Characters (code points) of valid UTF-8 text: the bytes that do not continue a character.
size_t char_count(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

// The legacy arrays with no token yet.
json empty_legacy_logprobs() {
  return {{"tokens", json::array()},
          {"token_logprobs", json::array()},
          {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
}

// Appends token `id` to legacy arrays: its text, its offset (advanced past it), and with `lp`
// its logprob and a top_logprobs object of the alternatives (and the token itself when
// `token_in_top`); without `lp` (a prompt's first token, which has no context) both are null.
void append_token(json& acc, const Tokenizer* tok, int32_t id, const TokenLogprob* lp,
                  bool token_in_top, size_t& text_offset) {
  std::string text = token_text(tok, id);
  acc["text_offset"].push_back(text_offset);
  text_offset += char_count(text);
  acc["tokens"].push_back(std::move(text));
  if (lp == nullptr) {
    acc["token_logprobs"].push_back(nullptr);
    acc["top_logprobs"].push_back(nullptr);
    return;
  }
  acc["token_logprobs"].push_back(json_logprob(lp->logprob));
  json top = json::object();
  for (const auto& [alt, l] : lp->top) top[token_text(tok, alt)] = json_logprob(l);
  if (token_in_top) top[token_text(tok, lp->id)] = json_logprob(lp->logprob);
  acc["top_logprobs"].push_back(std::move(top));
}

}  // namespace

json completion_logprobs(const Tokenizer* tok, std::span<const TokenLogprob> lps,
                         size_t& text_offset) {
  json acc = empty_legacy_logprobs();
  for (const TokenLogprob& lp : lps) append_token(acc, tok, lp.id, &lp, false, text_offset);
  return acc;
}

json prompt_completion_logprobs(const Tokenizer* tok, std::span<const int32_t> prompt,
                                std::span<const TokenLogprob> lps, size_t& text_offset) {
  json acc = empty_legacy_logprobs();
  for (size_t i = 0; i < prompt.size(); ++i)
    append_token(acc, tok, prompt[i], i == 0 || i - 1 >= lps.size() ? nullptr : &lps[i - 1], true,
                 text_offset);
  return acc;
}

json vllm_prompt_logprobs(const Tokenizer* tok, std::span<const TokenLogprob> lps) {
  json out = json::array({nullptr});
  for (const TokenLogprob& lp : lps) {
    json e = json::object();
    auto add = [&](int32_t id, float l, int rank) {
      e[std::to_string(id)] = {
          {"logprob", json_logprob(l)}, {"rank", rank}, {"decoded_token", token_text(tok, id)}};
    };
    add(lp.id, lp.logprob, lp.rank);
    for (size_t j = 0; j < lp.top.size(); ++j)
      if (lp.top[j].first != lp.id) add(lp.top[j].first, lp.top[j].second, static_cast<int>(j) + 1);
    out.push_back(std::move(e));
  }
  return out;
}

void append_completion_logprobs(json& acc, const json& more) {
  if (acc.is_null()) {
    acc = more;
    return;
  }
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
    for (const json& v : more[key]) acc[key].push_back(v);
}

json chat_logprobs_content(const Tokenizer* tok, std::span<const TokenLogprob> lps) {
  auto entry = [&](int32_t id, float l) {
    std::string text = token_text(tok, id);
    json bytes = json::array();
    const std::string raw = tok == nullptr ? text : tok->token_bytes(id, true);
    for (unsigned char c : raw) bytes.push_back(c);
    return json{{"token", std::move(text)}, {"logprob", json_logprob(l)}, {"bytes", bytes}};
  };
  json content = json::array();
  for (const TokenLogprob& lp : lps) {
    json e = entry(lp.id, lp.logprob);
    json top = json::array();
    for (const auto& [id, l] : lp.top) top.push_back(entry(id, l));
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return content;
}

json usage_json(const UsageTotals& u) {
  const VerifyStats& v = u.verify;
  const double recompute =
      u.completion_tokens == 0 ? 0.0
                               : static_cast<double>(v.tokens_rolled_back) / u.completion_tokens;
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"verification",
           {{"deterministic", u.deterministic},
            {"windows_verified", v.windows_verified},
            {"rollbacks", v.rollbacks},
            {"tokens_rolled_back", v.tokens_rolled_back},
            {"verify_passes", v.verify_passes},
            {"recompute_rate", recompute}}}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace llm42::server
