#include "server/completion_job.h"

#include <fmt/format.h>

namespace llm42::server {

using json = nlohmann::json;

bool OutputChannel::push(int choice, RequestOutput&& out) {
  std::lock_guard<std::mutex> lock(mu_);
  items_.emplace_back(choice, std::move(out));
  return items_.size() == 1;
}

std::vector<std::pair<int, RequestOutput>> OutputChannel::take() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(items_, {});
}

std::string sse_event(std::string_view data) { return fmt::format("data: {}\n\n", data); }

CompletionJob::CompletionJob(const ApiRequest& req, EngineRequests&& engine_requests,
                             ResponseMeta meta, const Tokenizer* tokenizer,
                             bool deterministic_answer)
    : meta_(std::move(meta)),
      tokenizer_(tokenizer),
      stream_(req.stream),
      include_usage_(req.include_usage),
      logprobs_(req.logprobs),
      return_token_ids_(req.return_token_ids),
      deterministic_answer_(deterministic_answer),
      echo_(req.echo),
      prompt_only_(req.echo && req.max_tokens == 0),
      vllm_prompt_logprobs_(req.prompt_logprobs.has_value()),
      n_(req.n),
      engine_(std::move(engine_requests)) {
  requests_ = std::move(engine_.choices);
  if (echo_) {
    // The prompt as sent: its text, or the text of its token ids.
    for (size_t p = 0; p < engine_.prompts.size(); ++p) {
      const PromptInput& in = req.prompts[p];
      prompt_text_.push_back(!in.is_ids            ? in.text
                             : tokenizer_ != nullptr ? tokenizer_->decode(engine_.prompts[p])
                                                     : std::string());
    }
  }
  choices_.resize(requests_.size());
  for (size_t c = 0; c < choices_.size(); ++c) {
    choices_[c].prompt = engine_.choice_prompt[c];
    choices_[c].prompt_tokens = static_cast<int>(engine_.prompts[engine_.choice_prompt[c]].size());
  }
}

json CompletionJob::chunk(json choice) const {
  json j = response_frame(meta_, true);
  j["choices"] = json::array({std::move(choice)});
  if (include_usage_) j["usage"] = nullptr;
  return j;
}

std::string CompletionJob::stream_start() {
  if (meta_.endpoint != Endpoint::kChatCompletions) return {};
  std::string events;
  for (int c = 0; c < num_choices(); ++c) {
    Choice& ch = choices_[static_cast<size_t>(c)];
    json choice = {{"index", c},
                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                   {"logprobs", nullptr},
                   {"finish_reason", nullptr}};
    if (return_token_ids_) choice["prompt_token_ids"] = engine_.prompts[ch.prompt];
    ch.started = true;
    events += sse_event(dump_json(chunk(std::move(choice))));
  }
  return events;
}

json CompletionJob::stream_choice(int c, const Choice& ch, const RequestOutput& out,
                                 const json& logprobs) const {
  json choice = {{"index", c}};
  if (meta_.endpoint == Endpoint::kChatCompletions) {
    choice["delta"] = out.text.empty() ? json::object() : json{{"content", out.text}};
  } else {
    choice["text"] = out.text;
  }
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = nullptr;
  if (out.finished) choice["finish_reason"] = std::string(finish_reason_name(out.finish_reason));
  if (return_token_ids_) {
    choice["token_ids"] = out.tokens;
    if (!ch.started) choice["prompt_token_ids"] = engine_.prompts[ch.prompt];
  }
  return choice;
}

bool CompletionJob::apply(int c, RequestOutput&& out, double now, std::string& events) {
  Choice& ch = choices_[static_cast<size_t>(c)];
  if (ch.finished) return false;
  if (!out.tokens.empty()) {
    if (ch.timing.first_token == 0) ch.timing.first_token = now;
    ch.timing.last_token = now;
  }
  ch.timing.completion_tokens = out.completion_tokens;
  if (out.finished) {
    ch.finished = true;
    ch.finish = out.finish_reason;
    ch.timing.finished = now;
    ch.timing.prompt_tokens = out.prompt_tokens;
    if (out.scheduled_time > 0) {
      ch.timing.queue = out.scheduled_time - out.arrival_time;
      if (out.first_token_time > 0) ch.timing.prefill = out.first_token_time - out.scheduled_time;
    }
    ch.cached_tokens = out.cached_tokens;
    ch.verify = out.verify;
    ++n_finished_;
    if (out.finish_reason == FinishReason::kError && !error_) {
      error_ = ApiError(500, "server_error", fmt::format("the engine failed: {}", out.error));
    } else if (out.finish_reason == FinishReason::kAbort && !error_) {
      error_ = ApiError(503, "service_unavailable",
                        "the request was aborted: the server is shutting down");
    }
  }
  if (error_) return out.finished;
  if (prompt_only_) {
    out.tokens.clear();
    out.logprobs.clear();
    out.text.clear();
    ch.timing.completion_tokens = 0;
  }

  // This output's logprobs: chat {"content": [...]}, completions the legacy arrays.
  const bool chat = meta_.endpoint == Endpoint::kChatCompletions;
  json lp = nullptr;
  if (!ch.opened) open_choice(ch, out, lp);
  if (logprobs_ && !out.logprobs.empty()) {
    if (chat) {
      lp = {{"content", chat_logprobs_content(tokenizer_, out.logprobs)}};
      if (ch.logprobs.is_null()) ch.logprobs = json::array();
      for (const json& e : lp["content"]) ch.logprobs.push_back(e);
    } else {
      const json more = completion_logprobs(tokenizer_, out.logprobs, ch.text_offset);
      append_completion_logprobs(lp, more);
      append_completion_logprobs(ch.logprobs, more);
    }
  }
  if (stream_) {
    // An output that carries nothing the client asked for (text held back for a stop string,
    // say) makes no chunk, unless it is the last.
    const bool carries = !out.text.empty() || out.finished || !lp.is_null() ||
                         ((logprobs_ || return_token_ids_) && !out.tokens.empty());
    if (carries) {
      json choice = stream_choice(c, ch, out, lp);
      if (!ch.started && !ch.prompt_logprobs.is_null()) choice["prompt_logprobs"] = ch.prompt_logprobs;
      events += sse_event(dump_json(chunk(std::move(choice))));
      ch.started = true;
    }
  }
  ch.text += out.text;
  ch.ids.insert(ch.ids.end(), out.tokens.begin(), out.tokens.end());
  return out.finished;
}

void CompletionJob::open_choice(Choice& ch, RequestOutput& out, json& logprobs) {
  ch.opened = true;
  const std::vector<int32_t>& prompt = engine_.prompts[static_cast<size_t>(ch.prompt)];
  if (vllm_prompt_logprobs_) ch.prompt_logprobs = vllm_prompt_logprobs(tokenizer_, out.prompt_logprobs);
  if (!echo_) return;
  out.text = prompt_text_[static_cast<size_t>(ch.prompt)] + out.text;
  if (logprobs_) {
    logprobs = prompt_completion_logprobs(tokenizer_, prompt, out.prompt_logprobs, ch.text_offset);
    append_completion_logprobs(ch.logprobs, logprobs);
  }
}

UsageTotals CompletionJob::usage() const {
  UsageTotals u;
  u.deterministic = deterministic_answer_;
  for (size_t c = 0; c < choices_.size(); ++c) {
    const Choice& ch = choices_[c];
    // The prompt is counted once per prompt (the first choice of each), as OpenAI does.
    if (c % static_cast<size_t>(n_) == 0) {
      u.prompt_tokens += ch.prompt_tokens;
      u.cached_tokens += ch.cached_tokens;
    }
    u.completion_tokens += ch.timing.completion_tokens;
    u.verify.windows_verified += ch.verify.windows_verified;
    u.verify.rollbacks += ch.verify.rollbacks;
    u.verify.tokens_rolled_back += ch.verify.tokens_rolled_back;
    u.verify.verify_passes += ch.verify.verify_passes;
    u.verify.verify_tokens += ch.verify.verify_tokens;
    u.verify.canonical_decode_tokens += ch.verify.canonical_decode_tokens;
  }
  return u;
}

std::string CompletionJob::stream_end() const {
  std::string events;
  if (include_usage_) {
    json j = response_frame(meta_, true);
    j["choices"] = json::array();
    j["usage"] = usage_json(usage());
    events += sse_event(dump_json(j));
  }
  events += sse_event("[DONE]");
  return events;
}

std::string CompletionJob::response_body() const {
  const bool chat = meta_.endpoint == Endpoint::kChatCompletions;
  json j = response_frame(meta_, false);
  json choices = json::array();
  for (size_t c = 0; c < choices_.size(); ++c) {
    const Choice& ch = choices_[c];
    json choice = {{"index", c}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", ch.text}};
      choice["logprobs"] =
          logprobs_ ? json{{"content", ch.logprobs.is_null() ? json::array() : ch.logprobs}}
                    : json(nullptr);
    } else {
      choice["text"] = ch.text;
      choice["logprobs"] = ch.logprobs;
      if (vllm_prompt_logprobs_) choice["prompt_logprobs"] = ch.prompt_logprobs;
    }
    choice["finish_reason"] = std::string(finish_reason_name(ch.finish));
    if (return_token_ids_) {
      choice["token_ids"] = ch.ids;
      if (!chat) choice["prompt_token_ids"] = engine_.prompts[ch.prompt];
    }
    choices.push_back(std::move(choice));
  }
  j["choices"] = std::move(choices);
  if (return_token_ids_ && chat) j["prompt_token_ids"] = engine_.prompts[0];
  if (vllm_prompt_logprobs_ && chat && !choices_.empty())
    j["prompt_logprobs"] = choices_.front().prompt_logprobs;
  j["usage"] = usage_json(usage());
  return dump_json(j);
}

}  // namespace llm42::server
