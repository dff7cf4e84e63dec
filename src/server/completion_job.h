// One completions or chat completions request in flight: its choices (one engine request each),
// what has been committed for them, and the response or stream chunks made from it.
//
// Threads: the engine thread only pushes outputs into the job's OutputChannel; everything else
// happens on the server's event-loop thread, which drains the channel when woken.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/request.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/request_builder.h"

namespace llm42::server {

// Engine thread -> event loop: the committed outputs of one job's choices.
class OutputChannel {
 public:
  // Engine thread. Returns true when the channel was empty, i.e. when the consumer must be
  // woken; while it holds outputs a wake-up is already pending.
  bool push(int choice, RequestOutput&& out);
  // Event loop.
  std::vector<std::pair<int, RequestOutput>> take();

 private:
  std::mutex mu_;
  std::vector<std::pair<int, RequestOutput>> items_;
};

// Per choice, as observed by the event loop (for the latency metrics).
struct ChoiceTiming {
  double first_token = 0;  // when its first token arrived (0: none yet)
  double last_token = 0;
  double finished = 0;
  int completion_tokens = 0;
  // In the engine (set when the choice finishes): waiting for admission, and admission to the
  // first token; the prompt's length.
  double queue = 0, prefill = 0;
  int prompt_tokens = 0;
};

class CompletionJob {
 public:
  // `deterministic_answer`: whether the server mode gives these choices the determinism
  // guarantee (echoed in usage.verification).
  CompletionJob(const ApiRequest& req, EngineRequests&& engine_requests, ResponseMeta meta,
                const Tokenizer* tokenizer, bool deterministic_answer);

  const ResponseMeta& meta() const { return meta_; }
  bool stream() const { return stream_; }
  int num_choices() const { return static_cast<int>(choices_.size()); }
  // The requests to give the engine, one per choice (moved out by the caller once).
  std::vector<Request>& engine_requests() { return requests_; }
  std::vector<uint64_t>& engine_ids() { return engine_ids_; }
  const std::vector<uint64_t>& engine_ids() const { return engine_ids_; }
  const std::shared_ptr<OutputChannel>& channel() const { return channel_; }

  // Streaming: what goes out before any token (chat: each choice's role delta).
  std::string stream_start();
  // Applies one engine output of choice `c`, appending the SSE events it makes (streaming) to
  // `events`. Returns true when the choice finished with this output.
  bool apply(int c, RequestOutput&& out, double now, std::string& events);
  bool choice_finished(int c) const { return choices_[static_cast<size_t>(c)].finished; }
  bool all_finished() const { return n_finished_ == num_choices(); }
  // Set when a choice ended with an engine error or was aborted: the whole request fails.
  const std::optional<ApiError>& error() const { return error_; }
  const ChoiceTiming& timing(int c) const { return choices_[static_cast<size_t>(c)].timing; }

  // Streaming: the usage chunk (when asked for) and "data: [DONE]".
  std::string stream_end() const;
  // Non-streaming: the whole response.
  std::string response_body() const;
  UsageTotals usage() const;

 private:
  struct Choice {
    int prompt = 0;
    std::string text;
    std::vector<int32_t> ids;
    nlohmann::json logprobs;  // completions: legacy object; chat: content array
    size_t text_offset = 0;
    FinishReason finish = FinishReason::kNone;
    bool finished = false;
    bool started = false;  // a chunk went out (prompt_token_ids ride on the first)
    bool opened = false;   // its first output was applied (the echo went before it)
    nlohmann::json prompt_logprobs;  // vLLM's form, when asked for
    int prompt_tokens = 0, cached_tokens = 0;
    VerifyStats verify;
    ChoiceTiming timing;
  };

  nlohmann::json stream_choice(int c, const Choice& ch, const RequestOutput& out,
                               const nlohmann::json& logprobs) const;
  nlohmann::json chunk(nlohmann::json choice) const;
  // Before choice c's first output: the echoed prompt's text and logprobs go in front of it,
  // and its prompt logprobs are kept.
  void open_choice(Choice& ch, RequestOutput& out, nlohmann::json& logprobs);

  ResponseMeta meta_;
  const Tokenizer* tokenizer_;
  bool stream_, include_usage_, logprobs_, return_token_ids_, deterministic_answer_;
  bool echo_;                    // completions: the prompt goes in front of the completion
  bool prompt_only_;             // echo with max_tokens 0: the one token drawn is dropped
  bool vllm_prompt_logprobs_;    // prompt_logprobs was asked for
  std::vector<std::string> prompt_text_;  // per prompt, for echo
  int n_;
  EngineRequests engine_;
  std::vector<Request> requests_;
  std::vector<uint64_t> engine_ids_;
  std::vector<Choice> choices_;
  int n_finished_ = 0;
  std::optional<ApiError> error_;
  std::shared_ptr<OutputChannel> channel_ = std::make_shared<OutputChannel>();
};

// One server-sent event carrying `data` ("data: ...\n\n").
std::string sse_event(std::string_view data);

}  // namespace llm42::server
