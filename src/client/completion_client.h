// One /v1/completions request from `check` or `bench serve`, streamed or not, reduced to what
// they compare and measure: token ids (the server's return_token_ids extension), logprobs,
// text, usage, and when each piece arrived.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/http_client.h"

namespace llm42::client {

struct CompletionResult {
  bool ok = false;
  int status = 0;
  std::string error;  // why not ok
  std::vector<int32_t> token_ids;
  std::vector<double> logprobs;  // one per token, when asked for
  std::string text;
  std::string finish_reason;
  std::string system_fingerprint;
  nlohmann::json usage;  // null when the server sent none
  int completion_tokens = 0;  // from usage, else the ids received
  // Seconds on the steady clock: request sent, each chunk with tokens received, done.
  double start = 0;
  std::vector<double> token_times;  // one per chunk that carried tokens
  std::vector<int> chunk_tokens;    // tokens in that chunk
  double end = 0;
};

// Sends `body` to POST /v1/completions (streamed when body["stream"] is true) on `client` and
// collects the first choice. Never throws: failures come back with ok = false.
CompletionResult complete(HttpClient& client, const nlohmann::json& body,
                          const std::string& api_key);

// The first entry of the server's GET /v1/models (its "id" is the model name). Throws
// llm42::Error naming the URL when the server answers with an error or lists no model.
nlohmann::json first_served_model(const Url& url, const std::string& api_key);

}  // namespace llm42::client
