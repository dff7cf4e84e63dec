// CompletionJob: engine outputs become OpenAI responses and stream chunks of the right shape
// (the role delta first in chat, finish_reason on the last content chunk, the usage chunk with
// empty choices, [DONE]), logprobs in both formats, errors and aborts.
#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/completion_job.h"
#include "server/openai_request.h"
#include "server/request_builder.h"
#include "tokenizer/tokenizer.h"

namespace llm42::server {
namespace {

using json = nlohmann::json;

// Token i is the letter 'a' + i % 26, except 100: the first byte of "é" (not valid UTF-8 alone).
class LetterTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool, bool, size_t) const override {
    std::vector<int32_t> ids;
    for (char c : text) ids.push_back(c - 'a');
    return ids;
  }
  std::string token_bytes(int32_t id, bool) const override {
    if (id == 100) return "\xc3";
    return std::string(1, static_cast<char>('a' + id % 26));
  }
  std::string decode(const std::vector<int32_t>& ids, bool) const override {
    std::string s;
    for (int32_t id : ids) s += token_bytes(id, false);
    return s;
  }
  int vocab_size() const override { return 128; }
  std::optional<int32_t> token_id(std::string_view) const override { return std::nullopt; }
  bool is_special(int32_t) const override { return false; }
};

ResponseMeta meta(Endpoint e) {
  ResponseMeta m;
  m.endpoint = e;
  m.id = e == Endpoint::kCompletions ? "cmpl-1" : "chatcmpl-1";
  m.created = 1700000000;
  m.model = "m";
  m.system_fingerprint = "fp";
  return m;
}

CompletionJob make_job(const std::string& body, Endpoint e, const Tokenizer* tok) {
  const ApiRequest r = parse_api_request(body, e);
  EngineRequests er;
  er.prompts = {{1, 2, 3}};
  for (int i = 0; i < r.n; ++i) {
    er.choices.emplace_back();
    er.choice_prompt.push_back(0);
  }
  return CompletionJob(r, std::move(er), meta(e), tok, true);
}

RequestOutput output(std::vector<int32_t> ids, std::string text, bool finished = false,
                     FinishReason reason = FinishReason::kNone) {
  RequestOutput o;
  o.tokens = std::move(ids);
  for (int32_t id : o.tokens) o.logprobs.push_back({id, -0.5f, {{id, -0.5f}, {7, -1.25f}}});
  o.text = std::move(text);
  o.finished = finished;
  o.finish_reason = reason;
  o.prompt_tokens = 3;
  return o;
}

// The JSON payloads of "data: ...\n\n" events.
std::vector<std::string> events_of(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < s.size()) {
    EXPECT_EQ(s.compare(at, 6, "data: "), 0) << s;
    const size_t end = s.find("\n\n", at);
    EXPECT_NE(end, std::string::npos);
    out.push_back(s.substr(at + 6, end - at - 6));
    at = end + 2;
  }
  return out;
}

TEST(ServerResponse, CompletionNonStreaming) {
  LetterTokenizer tok;
  CompletionJob job = make_job(
      "{\"prompt\": \"x\", \"logprobs\": 2, \"return_token_ids\": true}", Endpoint::kCompletions,
      &tok);
  std::string ev;
  EXPECT_FALSE(job.apply(0, output({0, 1}, "ab"), 1.0, ev));
  RequestOutput last = output({2}, "c", true, FinishReason::kLength);
  last.completion_tokens = 3;
  last.verify.windows_verified = 2;
  last.verify.tokens_rolled_back = 3;
  EXPECT_TRUE(job.apply(0, std::move(last), 2.0, ev));
  EXPECT_TRUE(ev.empty());  // not streaming
  EXPECT_TRUE(job.all_finished());
  const json r = json::parse(job.response_body());
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["id"], "cmpl-1");
  EXPECT_EQ(r["system_fingerprint"], "fp");
  const json& c = r["choices"][0];
  EXPECT_EQ(c["text"], "abc");
  EXPECT_EQ(c["finish_reason"], "length");
  EXPECT_EQ(c["token_ids"], json({0, 1, 2}));
  EXPECT_EQ(c["prompt_token_ids"], json({1, 2, 3}));
  EXPECT_EQ(c["logprobs"]["tokens"], json({"a", "b", "c"}));
  EXPECT_EQ(c["logprobs"]["token_logprobs"], json({-0.5, -0.5, -0.5}));
  EXPECT_EQ(c["logprobs"]["text_offset"], json({0, 1, 2}));
  EXPECT_EQ(c["logprobs"]["top_logprobs"][0], json({{"a", -0.5}, {"h", -1.25}}));
  EXPECT_EQ(r["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(r["usage"]["completion_tokens"], 3);
  EXPECT_EQ(r["usage"]["total_tokens"], 6);
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(r["usage"]["verification"]["windows_verified"], 2);
  EXPECT_EQ(r["usage"]["verification"]["deterministic"], true);
  EXPECT_DOUBLE_EQ(r["usage"]["verification"]["recompute_rate"].get<double>(), 1.0);
}

TEST(ServerResponse, ChatStreamShape) {
  LetterTokenizer tok;
  CompletionJob job = make_job(
      "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": true,"
      " \"stream_options\": {\"include_usage\": true}, \"logprobs\": true, \"top_logprobs\": 1}",
      Endpoint::kChatCompletions, &tok);
  std::string ev = job.stream_start();
  job.apply(0, output({0}, "a"), 1.0, ev);
  job.apply(0, output({1}, "b", true, FinishReason::kStop), 2.0, ev);
  ev += job.stream_end();
  const std::vector<std::string> e = events_of(ev);
  ASSERT_EQ(e.size(), 5u);
  const json first = json::parse(e[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first["usage"].is_null());
  const json mid = json::parse(e[1]);
  EXPECT_EQ(mid["choices"][0]["delta"], json({{"content", "a"}}));
  EXPECT_TRUE(mid["choices"][0]["finish_reason"].is_null());
  const json& lp = mid["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], "a");
  EXPECT_EQ(lp["bytes"], json({97}));
  EXPECT_EQ(lp["top_logprobs"][1]["token"], "h");
  const json last = json::parse(e[2]);
  EXPECT_EQ(last["choices"][0]["delta"], json({{"content", "b"}}));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  const json usage = json::parse(e[3]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(e[4], "[DONE]");
}

TEST(ServerResponse, CompletionStreamSkipsEmptyDeltasAndEndsWithEmptyFinish) {
  CompletionJob job = make_job("{\"prompt\": \"x\", \"stream\": true, \"n\": 2}",
                               Endpoint::kCompletions, nullptr);
  std::string ev = job.stream_start();
  EXPECT_TRUE(ev.empty());  // completions have no role chunk
  job.apply(1, output({3}, ""), 1.0, ev);  // text held back: no chunk
  EXPECT_TRUE(ev.empty());
  job.apply(1, output({4}, "zz", true, FinishReason::kStop), 1.5, ev);
  job.apply(0, output({}, "", true, FinishReason::kLength), 2.0, ev);
  ev += job.stream_end();
  const std::vector<std::string> e = events_of(ev);
  ASSERT_EQ(e.size(), 3u);
  const json a = json::parse(e[0]);
  EXPECT_EQ(a["choices"][0]["index"], 1);
  EXPECT_EQ(a["choices"][0]["text"], "zz");
  EXPECT_FALSE(a.contains("usage"));  // only with include_usage
  const json b = json::parse(e[1]);
  EXPECT_EQ(b["choices"][0]["index"], 0);
  EXPECT_EQ(b["choices"][0]["text"], "");
  EXPECT_EQ(b["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(e[2], "[DONE]");
}

TEST(ServerResponse, ChatFinishWithoutTextHasEmptyDelta) {
  CompletionJob job = make_job("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}],"
                               " \"stream\": true}",
                               Endpoint::kChatCompletions, nullptr);
  std::string ev;
  job.apply(0, output({2}, "", true, FinishReason::kStop), 1.0, ev);
  const json j = json::parse(events_of(ev).at(0));
  EXPECT_EQ(j["choices"][0]["delta"], json::object());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
}

TEST(ServerResponse, ErrorsAndAborts) {
  CompletionJob job = make_job("{\"prompt\": \"x\", \"n\": 2}", Endpoint::kCompletions, nullptr);
  std::string ev;
  RequestOutput bad = output({}, "", true, FinishReason::kError);
  bad.error = "step failed";
  EXPECT_TRUE(job.apply(0, std::move(bad), 1.0, ev));
  ASSERT_TRUE(job.error().has_value());
  EXPECT_EQ(job.error()->status(), 500);
  EXPECT_EQ(job.error()->type(), "server_error");
  EXPECT_NE(std::string(job.error()->what()).find("step failed"), std::string::npos);
  EXPECT_FALSE(job.all_finished());

  CompletionJob aborted = make_job("{\"prompt\": \"x\"}", Endpoint::kCompletions, nullptr);
  aborted.apply(0, output({}, "", true, FinishReason::kAbort), 1.0, ev);
  ASSERT_TRUE(aborted.error().has_value());
  EXPECT_EQ(aborted.error()->status(), 503);
}

TEST(ServerResponse, TokenTexts) {
  LetterTokenizer tok;
  EXPECT_EQ(token_text(&tok, 0), "a");
  EXPECT_EQ(token_text(&tok, 100), "bytes:\\xc3");
  EXPECT_EQ(token_text(nullptr, 42), "token_id:42");
  EXPECT_EQ(json_logprob(-INFINITY), -9999.0);
  EXPECT_EQ(json_logprob(-0.25f), -0.25);
  // NaN is never written as a number (JSON's null).
  EXPECT_EQ(nlohmann::json(json_logprob(std::numeric_limits<float>::quiet_NaN())).dump(), "null");
  size_t offset = 5;
  const std::vector<TokenLogprob> lps = {{100, -1.0f, {}}, {1, -2.0f, {}}};
  const json j = completion_logprobs(&tok, lps, offset);
  EXPECT_EQ(j["text_offset"], json({5, 15}));  // "bytes:\xc3" is 10 characters
  EXPECT_EQ(offset, 16u);
  const json c = chat_logprobs_content(&tok, lps);
  EXPECT_EQ(c[0]["bytes"], json({0xc3}));
}

TEST(ServerResponse, OutputChannelWakesOncePerBatch) {
  OutputChannel ch;
  EXPECT_TRUE(ch.push(0, RequestOutput{}));
  EXPECT_FALSE(ch.push(1, RequestOutput{}));
  EXPECT_EQ(ch.take().size(), 2u);
  EXPECT_TRUE(ch.push(0, RequestOutput{}));
}

}  // namespace
}  // namespace llm42::server
