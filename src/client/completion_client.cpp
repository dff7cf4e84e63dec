#include "client/completion_client.h"

#include <fmt/format.h>

#include "client/sse_parser.h"
#include "util/error.h"
#include "util/timer.h"

namespace llm42::client {
namespace {

using json = nlohmann::json;

// Appends one response's (or chunk's) first choice.
void take_choice(const json& j, CompletionResult& r, double now) {
  if (j.contains("system_fingerprint") && j["system_fingerprint"].is_string())
    r.system_fingerprint = j["system_fingerprint"].get<std::string>();
  if (j.contains("usage") && j["usage"].is_object()) r.usage = j["usage"];
  if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return;
  const json& c = j["choices"][0];
  if (c.contains("text") && c["text"].is_string()) r.text += c["text"].get<std::string>();
  int n = 0;
  if (c.contains("token_ids") && c["token_ids"].is_array()) {
    for (const json& id : c["token_ids"]) r.token_ids.push_back(id.get<int32_t>());
    n = static_cast<int>(c["token_ids"].size());
  }
  if (c.contains("logprobs") && c["logprobs"].is_object()) {
    const json& lp = c["logprobs"];
    if (lp.contains("token_logprobs"))
      for (const json& v : lp["token_logprobs"]) r.logprobs.push_back(v.is_number() ? v.get<double>() : 0.0);
    if (n == 0 && lp.contains("tokens")) n = static_cast<int>(lp["tokens"].size());
  }
  if (n == 0 && c.contains("text") && c["text"].is_string() && !c["text"].get<std::string>().empty())
    n = 1;  // a server without token ids or logprobs: count text chunks
  if (n > 0) {
    r.token_times.push_back(now);
    r.chunk_tokens.push_back(n);
  }
  if (c.contains("finish_reason") && c["finish_reason"].is_string())
    r.finish_reason = c["finish_reason"].get<std::string>();
}

std::string error_message(const std::string& body, int status) {
  try {
    const json j = json::parse(body);
    if (j.contains("error") && j["error"].contains("message"))
      return fmt::format("HTTP {}: {}", status, j["error"]["message"].get<std::string>());
  } catch (const std::exception&) {
  }
  return fmt::format("HTTP {}: {}", status, body.substr(0, 200));
}

}  // namespace

CompletionResult complete(HttpClient& client, const json& body, const std::string& api_key) {
  CompletionResult r;
  std::vector<std::pair<std::string, std::string>> headers;
  if (!api_key.empty()) headers.emplace_back("Authorization", "Bearer " + api_key);
  const bool stream = body.value("stream", false);
  r.start = now_seconds();
  try {
    SseParser sse;
    std::string raw;  // the body (a stream's first bytes only)
    bool done = false;
    auto on_event = [&](const SseEvent& e) {
      if (e.data == "[DONE]") {
        done = true;
        return;
      }
      const json j = json::parse(e.data);
      if (j.contains("error")) {
        r.error = j["error"].value("message", std::string("error event"));
        return;
      }
      take_choice(j, r, now_seconds());
    };
    const HttpResponse resp = client.request(
        "POST", "/v1/completions", body.dump(), headers, [&](std::string_view data) {
          // A stream that fails before it starts is a JSON error body, so keep the start of it.
          if (!stream || raw.size() < 4096) raw.append(data);
          if (stream) sse.feed(data, on_event);
          return true;
        });
    r.status = resp.status;
    r.end = now_seconds();
    if (resp.status != 200) {
      r.error = error_message(raw, resp.status);
      return r;
    }
    if (stream) {
      if (r.error.empty() && !done) r.error = "the stream ended without [DONE]";
    } else {
      take_choice(json::parse(raw), r, r.end);
    }
  } catch (const std::exception& e) {
    r.error = e.what();
    r.end = now_seconds();
    return r;
  }
  r.completion_tokens = static_cast<int>(r.token_ids.size());
  if (r.usage.is_object() && r.usage.contains("completion_tokens"))
    r.completion_tokens = r.usage["completion_tokens"].get<int>();
  r.ok = r.error.empty();
  return r;
}

nlohmann::json first_served_model(const Url& url, const std::string& api_key) {
  HttpClient client(url, 30);
  std::vector<std::pair<std::string, std::string>> headers;
  if (!api_key.empty()) headers.emplace_back("Authorization", "Bearer " + api_key);
  const HttpResponse r = client.request("GET", "/v1/models", "", headers);
  if (r.status != 200) fail("{}/v1/models: HTTP {}: {}", url.str(), r.status, r.body);
  const nlohmann::json j = nlohmann::json::parse(r.body);
  if (!j.contains("data") || j["data"].empty()) fail("{}/v1/models: no model", url.str());
  return j["data"][0];
}

}  // namespace llm42::client
