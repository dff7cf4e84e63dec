// Request validation: every field of the OpenAI request bodies, accepted or refused with a 400
// naming it; expansion into engine requests; engine errors mapped onto fields.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "chat/chat_template.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/request_builder.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace llm42::server {
namespace {

using json = nlohmann::json;

// The param of the ApiError `body` raises, "<ok>" when it parses, "<null>" for a 400 that
// names no field.
std::string param_of(const std::string& body, Endpoint e = Endpoint::kCompletions) {
  try {
    parse_api_request(body, e);
    return "<ok>";
  } catch (const ApiError& err) {
    EXPECT_EQ(err.status(), 400) << body;
    EXPECT_EQ(err.type(), "invalid_request_error");
    EXPECT_FALSE(std::string(err.what()).empty());
    return err.param() ? *err.param() : "<null>";
  }
}

std::string chat_param(const std::string& body) {
  return param_of(body, Endpoint::kChatCompletions);
}

TEST(ServerRequest, BodyLevelErrors) {
  EXPECT_EQ(param_of(""), "<null>");
  EXPECT_EQ(param_of("   \n"), "<null>");
  EXPECT_EQ(param_of("{"), "<null>");
  EXPECT_EQ(param_of("{\"prompt\": \"a\",}"), "<null>");
  EXPECT_EQ(param_of("[1, 2]"), "<null>");
  EXPECT_EQ(param_of("\"prompt\""), "<null>");
  EXPECT_EQ(param_of("{\"prompt\": \"\xff\"}"), "<null>");            // invalid UTF-8
  EXPECT_EQ(param_of("{\"prompt\": \"\xed\xa0\x80\"}"), "<null>");    // encoded surrogate
  EXPECT_EQ(param_of("{\"prompt\": \"\\ud800\"}"), "<null>");         // lone escaped surrogate
  EXPECT_EQ(param_of(std::string(100, '[') + std::string(100, ']')), "<null>");  // too deep
  try {
    parse_api_request("{\"prompt\": \"a\"} x", Endpoint::kCompletions);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
}

TEST(ServerRequest, Prompt) {
  EXPECT_EQ(param_of("{}"), "prompt");
  EXPECT_EQ(param_of("{\"prompt\": null}"), "prompt");
  EXPECT_EQ(param_of("{\"prompt\": 5}"), "prompt");
  EXPECT_EQ(param_of("{\"prompt\": []}"), "prompt");
  EXPECT_EQ(param_of("{\"prompt\": {}}"), "prompt");
  EXPECT_EQ(param_of("{\"prompt\": [\"a\", 1]}"), "prompt[1]");
  EXPECT_EQ(param_of("{\"prompt\": [1, \"a\"]}"), "prompt[1]");
  EXPECT_EQ(param_of("{\"prompt\": [1, -1]}"), "prompt[1]");
  EXPECT_EQ(param_of("{\"prompt\": [1, 1.5]}"), "prompt[1]");
  EXPECT_EQ(param_of("{\"prompt\": [1, 3000000000]}"), "prompt[1]");
  EXPECT_EQ(param_of("{\"prompt\": [[1], []]}"), "prompt[1]");
  EXPECT_EQ(param_of("{\"prompt\": [[1], [2, \"x\"]]}"), "prompt[1][1]");
  EXPECT_EQ(param_of("{\"prompt\": [true]}"), "prompt[0]");

  const ApiRequest s = parse_api_request("{\"prompt\": \"hi\"}", Endpoint::kCompletions);
  ASSERT_EQ(s.prompts.size(), 1u);
  EXPECT_FALSE(s.prompts[0].is_ids);
  EXPECT_EQ(s.prompts[0].text, "hi");
  const ApiRequest ids = parse_api_request("{\"prompt\": [1, 2.0, 3]}", Endpoint::kCompletions);
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_EQ(ids.prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  const ApiRequest many =
      parse_api_request("{\"prompt\": [[1, 2], [3]], \"n\": 2}", Endpoint::kCompletions);
  ASSERT_EQ(many.prompts.size(), 2u);
  EXPECT_EQ(many.prompts[1].ids, (std::vector<int32_t>{3}));
  const ApiRequest texts = parse_api_request("{\"prompt\": [\"a\", \"b\"]}", Endpoint::kCompletions);
  EXPECT_EQ(texts.prompts.size(), 2u);
  // Unknown fields are ignored (as vLLM does); "model" is optional.
  EXPECT_EQ(param_of("{\"prompt\": \"a\", \"whatever\": [1, {}]}"), "<ok>");
  EXPECT_EQ(param_of("{\"prompt\": \"a\", \"model\": 3}"), "model");
}

TEST(ServerRequest, Messages) {
  EXPECT_EQ(chat_param("{}"), "messages");
  EXPECT_EQ(chat_param("{\"messages\": []}"), "messages");
  EXPECT_EQ(chat_param("{\"messages\": \"hi\"}"), "messages");
  EXPECT_EQ(chat_param("{\"messages\": [1]}"), "messages[0]");
  EXPECT_EQ(chat_param("{\"messages\": [{\"content\": \"x\"}]}"), "messages[0].role");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}"),
            "messages[0].role");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}"), "messages[0].role");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"user\"}]}"), "messages[0].content");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"user\", \"content\": 5}]}"),
            "messages[0].content");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
                       "{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}"),
            "messages[1].content[0].type");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"a\"}]}]}"),
            "messages[0].content[0].type");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}"),
            "messages[0].content[0].text");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"user\", \"content\": \"a\", \"name\": 1}]}"),
            "messages[0].name");

  const ApiRequest r = parse_api_request(
      "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"},"
      " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
      "                                   {\"type\": \"text\", \"text\": \"b\"}]},"
      " {\"role\": \"assistant\", \"tool_calls\": []},"
      " {\"role\": \"tool\", \"content\": \"r\", \"tool_call_id\": \"t1\"}]}",
      Endpoint::kChatCompletions);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1]["content"], "a\nb");
  // No content on an assistant turn that calls tools: the template sees "", as with vLLM.
  EXPECT_EQ(r.messages[2]["content"], "");
  EXPECT_EQ(r.messages[3]["tool_call_id"], "t1");
  ASSERT_EQ(r.prompts.size(), 1u);

  const std::string user = "\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]";
  EXPECT_EQ(chat_param("{" + user + ", \"response_format\": {\"type\": \"json_object\"}}"),
            "response_format");
  EXPECT_EQ(chat_param("{" + user + ", \"response_format\": {\"type\": \"text\"}}"), "<ok>");
  EXPECT_EQ(chat_param("{" + user + ", \"tool_choice\": \"required\"}"), "tool_choice");
  EXPECT_EQ(chat_param("{" + user + ", \"tools\": {}}"), "tools");
  EXPECT_EQ(chat_param("{" + user + ", \"chat_template_kwargs\": []}"), "chat_template_kwargs");
  const ApiRequest t =
      parse_api_request("{" + user +
                            ", \"tools\": [{\"type\": \"function\"}], \"tool_choice\": \"none\", "
                            "\"chat_template_kwargs\": {\"enable_thinking\": false}}",
                        Endpoint::kChatCompletions);
  EXPECT_TRUE(t.template_vars.contains("tools"));
  EXPECT_EQ(t.template_vars["enable_thinking"], false);
}

TEST(ServerRequest, NullContentRendersAsEmpty) {
  const ApiRequest r = parse_api_request(
      "{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"},"
      " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\","
      "  \"type\": \"function\", \"function\": {\"name\": \"w\", \"arguments\": \"{}\"}}]},"
      " {\"role\": \"tool\", \"content\": \"sunny\", \"tool_call_id\": \"c1\"}]}",
      Endpoint::kChatCompletions);
  EXPECT_EQ(r.messages[1]["content"], "");
  // A template that trims the content, as Llama 3's does: None has no trim in llm42 (jinja2
  // prints "None"); the empty string renders as it does with vLLM.
  const ChatTemplate t = ChatTemplate::parse(
      "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}"
      "{% if m.tool_calls %}{{ m.tool_calls | length }} call(s){% endif %}{% endfor %}",
      "trim", {}, {});
  EXPECT_EQ(t.render(r.messages, false, r.template_vars),
            "<user>weather?<assistant>1 call(s)<tool>sunny");
}

TEST(ServerRequest, ContinueFinalMessage) {
  const std::string msgs =
      "\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"},"
      " {\"role\": \"assistant\", \"content\": \"Once upon\"}]";
  const ApiRequest plain = parse_api_request("{" + msgs + "}", Endpoint::kChatCompletions);
  EXPECT_FALSE(plain.continue_final_message);
  const ApiRequest cont = parse_api_request("{" + msgs + ", \"continue_final_message\": true}",
                                            Endpoint::kChatCompletions);
  EXPECT_TRUE(cont.continue_final_message);
  EXPECT_EQ(chat_param("{" + msgs + ", \"continue_final_message\": 1}"), "continue_final_message");
  // As vLLM: an add_generation_prompt the body sets to true conflicts; false or its default
  // (true) does not.
  EXPECT_EQ(chat_param("{" + msgs +
                       ", \"continue_final_message\": true, \"add_generation_prompt\": true}"),
            "continue_final_message");
  EXPECT_EQ(chat_param("{" + msgs +
                       ", \"continue_final_message\": true, \"add_generation_prompt\": false}"),
            "<ok>");
  EXPECT_EQ(chat_param("{" + msgs +
                       ", \"continue_final_message\": false, \"add_generation_prompt\": true}"),
            "<ok>");

  // The engine's prompt ends inside the final message: no end of turn, no generation prompt.
  const auto tok = make_byte_tokenizer(300, 1, 2);
  const ChatTemplate tmpl = ChatTemplate::parse(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}</>{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}",
      "tags", {}, {});
  PromptContext ctx;
  ctx.tokenizer = tok.get();
  ctx.chat_template = &tmpl;
  ctx.max_seq_len = 200;
  const auto prompt_text = [&](const ApiRequest& r) {
    return tok->decode(build_engine_requests(r, ctx).prompts.at(0));
  };
  EXPECT_EQ(prompt_text(cont), "<user>Hi</><assistant>Once upon");
  EXPECT_EQ(prompt_text(plain), "<user>Hi</><assistant>Once upon</><assistant>");
}

TEST(ServerRequest, ReservedTemplateVariables) {
  const std::string user = "\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]";
  for (const char* name :
       {"messages", "bos_token", "eos_token", "add_generation_prompt", "tools", "documents",
        "pad_token", "additional_special_tokens", "raise_exception", "range", "namespace"}) {
    const std::string body = "{" + user + ", \"chat_template_kwargs\": {\"" + name + "\": \"x\"}}";
    try {
      parse_api_request(body, Endpoint::kChatCompletions);
      ADD_FAILURE() << name << " was accepted";
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400);
      EXPECT_EQ(e.param(), "chat_template_kwargs");
      EXPECT_NE(std::string(e.what()).find(std::string("'") + name + "'"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(chat_param("{" + user + ", \"chat_template_kwargs\": {\"enable_thinking\": true}}"),
            "<ok>");
}

TEST(ServerRequest, UnimplementedFieldsAreRefused) {
  const std::string user = "\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]";
  auto chat = [&](const std::string& fields) {
    return chat_param("{" + user + ", " + fields + "}");
  };
  EXPECT_EQ(chat("\"tools\": [{\"type\": \"function\"}]"), "tools");
  EXPECT_EQ(chat("\"tools\": [{\"type\": \"function\"}], \"tool_choice\": \"auto\""), "tools");
  EXPECT_EQ(chat("\"tools\": [{\"type\": \"function\"}], \"tool_choice\": \"none\""), "<ok>");
  EXPECT_EQ(chat("\"tools\": []"), "<ok>");
  EXPECT_EQ(chat("\"tools\": null"), "<ok>");
  EXPECT_EQ(chat("\"functions\": [{\"name\": \"f\"}]"), "functions");
  EXPECT_EQ(chat("\"response_format\": {\"type\": \"json_schema\"}"), "response_format");
  auto p = [](const std::string& fields) {
    return param_of("{\"prompt\": \"a\", " + fields + "}");
  };
  for (const char* name : {"guided_json", "guided_regex", "guided_choice", "guided_grammar",
                           "structured_outputs", "allowed_token_ids",
                           "bad_words", "logits_processors", "truncate_prompt_tokens"}) {
    EXPECT_EQ(p(std::string("\"") + name + "\": 1"), name);
    EXPECT_EQ(p(std::string("\"") + name + "\": null"), "<ok>");
  }
  EXPECT_EQ(p("\"guided_json\": {\"type\": \"object\"}"), "guided_json");
  // vLLM's prompt_logprobs: 0 to 20 alternatives, on both endpoints.
  EXPECT_EQ(p("\"prompt_logprobs\": 0"), "<ok>");
  EXPECT_EQ(p("\"prompt_logprobs\": 20"), "<ok>");
  EXPECT_EQ(p("\"prompt_logprobs\": null"), "<ok>");
  EXPECT_EQ(p("\"prompt_logprobs\": 21"), "prompt_logprobs");
  EXPECT_EQ(p("\"prompt_logprobs\": -1"), "prompt_logprobs");
  EXPECT_EQ(p("\"prompt_logprobs\": true"), "prompt_logprobs");
  EXPECT_EQ(chat("\"prompt_logprobs\": 3"), "<ok>");
  EXPECT_EQ(p("\"bad_words\": []"), "<ok>");
  EXPECT_EQ(p("\"skip_special_tokens\": false"), "skip_special_tokens");
  EXPECT_EQ(p("\"skip_special_tokens\": true"), "<ok>");
  EXPECT_EQ(p("\"spaces_between_special_tokens\": false"), "spaces_between_special_tokens");
  EXPECT_EQ(p("\"use_beam_search\": true"), "use_beam_search");
  EXPECT_EQ(p("\"use_beam_search\": false"), "<ok>");
}

TEST(ServerRequest, MinTokensAndStopStringFields) {
  auto p = [](const std::string& fields) {
    return param_of("{\"prompt\": \"a\", " + fields + "}");
  };
  EXPECT_EQ(p("\"min_tokens\": -1"), "min_tokens");
  EXPECT_EQ(p("\"min_tokens\": 1.5"), "min_tokens");
  EXPECT_EQ(p("\"min_tokens\": 5, \"max_tokens\": 4"), "min_tokens");
  EXPECT_EQ(p("\"min_tokens\": 4, \"max_tokens\": 4"), "<ok>");
  EXPECT_EQ(p("\"include_stop_str_in_output\": 1"), "include_stop_str_in_output");
  PromptContext ctx;
  ctx.max_seq_len = 100;
  const ApiRequest r = parse_api_request(
      "{\"prompt\": [1], \"min_tokens\": 3, \"include_stop_str_in_output\": true,"
      " \"ignore_eos\": true, \"stop\": \"x\"}",
      Endpoint::kCompletions);
  const EngineRequests er = build_engine_requests(r, ctx);
  EXPECT_EQ(er.choices[0].min_tokens, 3);
  EXPECT_TRUE(er.choices[0].include_stop_str_in_output);
  EXPECT_TRUE(er.choices[0].ignore_eos);
}

TEST(ServerRequest, OverlongTextIsRefusedByItsBytes) {
  PromptContext ctx;
  ctx.max_seq_len = 10;
  const std::unique_ptr<Tokenizer> tok = make_byte_tokenizer(300, 1, 2);
  ctx.tokenizer = tok.get();
  ctx.max_token_bytes = max_token_bytes(*tok);
  // The longest token (a control token's name) times 3 for normalization.
  const size_t room = ctx.max_token_bytes * 9;  // 9 prompt tokens leave room for 1 more
  const auto build = [&](size_t bytes) {
    const ApiRequest r =
        parse_api_request(json{{"prompt", std::string(bytes, 'a')}, {"max_tokens", 1}}.dump(),
                          Endpoint::kCompletions);
    return build_engine_requests(r, ctx);
  };
  // Within the byte rule, the tokenizer stops once the prompt cannot fit (9 tokens leave room
  // for a completion token; BOS is one of them): a prompt of any length costs at most that.
  EXPECT_EQ(build(8).prompts[0].size(), 9u);
  try {
    build(room);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.code(), "context_length_exceeded");
    EXPECT_NE(std::string(e.what()).find("at least 10 tokens (tokenizing stopped there)"),
              std::string::npos)
        << e.what();
  }
  try {
    build(room + ctx.max_token_bytes);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "prompt");
    EXPECT_EQ(e.code(), "context_length_exceeded");
    EXPECT_NE(std::string(e.what()).find(std::to_string(room + ctx.max_token_bytes) + " bytes"),
              std::string::npos)
        << e.what();
  }
}

TEST(ServerRequest, SamplingFields) {
  auto p = [](const std::string& fields) { return param_of("{\"prompt\": \"a\", " + fields + "}"); };
  EXPECT_EQ(p("\"temperature\": -0.1"), "temperature");
  EXPECT_EQ(p("\"temperature\": 2.5"), "temperature");
  EXPECT_EQ(p("\"temperature\": \"hot\""), "temperature");
  EXPECT_EQ(p("\"temperature\": 1e999"), "<null>");  // not a double: the body is refused
  EXPECT_EQ(p("\"temperature\": 0"), "<ok>");
  EXPECT_EQ(p("\"temperature\": null"), "<ok>");
  EXPECT_EQ(p("\"top_p\": 0"), "top_p");
  EXPECT_EQ(p("\"top_p\": 1.01"), "top_p");
  EXPECT_EQ(p("\"top_k\": -2"), "top_k");
  EXPECT_EQ(p("\"top_k\": 1.5"), "top_k");
  EXPECT_EQ(p("\"top_k\": -1"), "<ok>");
  EXPECT_EQ(p("\"min_p\": 1.5"), "min_p");
  EXPECT_EQ(p("\"presence_penalty\": 3"), "presence_penalty");
  EXPECT_EQ(p("\"frequency_penalty\": -2.5"), "frequency_penalty");
  EXPECT_EQ(p("\"repetition_penalty\": 0"), "repetition_penalty");
  EXPECT_EQ(p("\"repetition_penalty\": 11"), "repetition_penalty");
  EXPECT_EQ(p("\"seed\": \"x\""), "seed");
  EXPECT_EQ(p("\"seed\": 1.5"), "seed");
  EXPECT_EQ(p("\"seed\": -5"), "<ok>");
  EXPECT_EQ(p("\"seed\": 18446744073709551615"), "<ok>");
  EXPECT_EQ(p("\"max_tokens\": 0"), "max_tokens");
  EXPECT_EQ(p("\"max_tokens\": -3"), "max_tokens");
  EXPECT_EQ(p("\"max_tokens\": 5000000000"), "max_tokens");
  EXPECT_EQ(p("\"max_tokens\": \"5\""), "max_tokens");
  EXPECT_EQ(p("\"max_completion_tokens\": 0"), "max_completion_tokens");
  EXPECT_EQ(p("\"n\": 0"), "n");
  EXPECT_EQ(p("\"n\": 17"), "n");
  EXPECT_EQ(p("\"n\": true"), "n");
  EXPECT_EQ(p("\"logprobs\": 21"), "logprobs");
  EXPECT_EQ(p("\"logprobs\": true"), "logprobs");
  EXPECT_EQ(p("\"logprobs\": 0"), "<ok>");
  EXPECT_EQ(p("\"stop\": 5"), "stop");
  EXPECT_EQ(p("\"stop\": [\"a\", 5]"), "stop[1]");
  EXPECT_EQ(p("\"stop\": \"\""), "stop");
  EXPECT_EQ(p("\"stop\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\","
              "\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]"),
            "stop");
  EXPECT_EQ(p("\"stop_token_ids\": [1, -2]"), "stop_token_ids[1]");
  EXPECT_EQ(p("\"stream\": \"yes\""), "stream");
  EXPECT_EQ(p("\"stream_options\": {\"include_usage\": true}"), "stream_options");
  EXPECT_EQ(p("\"stream\": true, \"stream_options\": 1"), "stream_options");
  EXPECT_EQ(p("\"stream\": true, \"stream_options\": {\"include_usage\": 1}"),
            "stream_options.include_usage");
  // echo: completions only; max_tokens 0 only with it.
  EXPECT_EQ(p("\"echo\": true"), "<ok>");
  EXPECT_EQ(p("\"echo\": false"), "<ok>");
  EXPECT_EQ(p("\"echo\": 1"), "echo");
  EXPECT_EQ(p("\"echo\": true, \"max_tokens\": 0"), "<ok>");
  EXPECT_EQ(p("\"echo\": false, \"max_tokens\": 0"), "max_tokens");
  EXPECT_EQ(chat_param("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"echo\": true}"),
            "echo");
  EXPECT_EQ(p("\"suffix\": \"x\""), "suffix");
  EXPECT_EQ(p("\"best_of\": 3"), "best_of");
  EXPECT_EQ(p("\"best_of\": 1"), "<ok>");
  EXPECT_EQ(p("\"logit_bias\": {\"5\": 1}"), "logit_bias");
  EXPECT_EQ(p("\"logit_bias\": {}"), "<ok>");
  EXPECT_EQ(p("\"ignore_eos\": 1"), "ignore_eos");
  EXPECT_EQ(p("\"deterministic\": \"true\""), "deterministic");
  EXPECT_EQ(p("\"deterministic\": true, \"is_deterministic\": false"), "is_deterministic");
  EXPECT_EQ(p("\"return_token_ids\": 1"), "return_token_ids");
  EXPECT_EQ(p("\"user\": 5"), "user");
  EXPECT_EQ(p("\"n\": 16, \"prompt\": [[1],[2],[3],[4],[5],[6],[7],[8],[9],[10],[11],[12],[13],"
              "[14],[15],[16],[17]]"),
            "n");

  const ApiRequest r = parse_api_request(
      "{\"prompt\": \"a\", \"temperature\": 0.5, \"top_p\": 0.9, \"top_k\": 40, \"min_p\": 0.1,"
      " \"presence_penalty\": 0.5, \"frequency_penalty\": -0.5, \"repetition_penalty\": 1.2,"
      " \"seed\": 7, \"max_tokens\": 9, \"n\": 3, \"logprobs\": 2, \"stop\": \"x\","
      " \"stop_token_ids\": [5], \"ignore_eos\": true, \"is_deterministic\": true,"
      " \"return_token_ids\": true, \"stream\": true,"
      " \"stream_options\": {\"include_usage\": true}}",
      Endpoint::kCompletions);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(r.sampling.seed, 7u);
  EXPECT_EQ(r.max_tokens, 9);
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.sampling.top_logprobs, 2);
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.stop_token_ids, std::vector<int32_t>{5});
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_TRUE(r.deterministic);
  EXPECT_TRUE(r.return_token_ids);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  // Defaults as OpenAI's.
  const ApiRequest d = parse_api_request("{\"prompt\": \"a\"}", Endpoint::kCompletions);
  EXPECT_FLOAT_EQ(d.sampling.temperature, 1.0f);
  EXPECT_FALSE(d.max_tokens.has_value());
  EXPECT_EQ(d.n, 1);
  EXPECT_FALSE(d.logprobs);
  EXPECT_FALSE(d.stream);
}

TEST(ServerRequest, ChatLogprobs) {
  const std::string user = "\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]";
  EXPECT_EQ(chat_param("{" + user + ", \"logprobs\": 2}"), "logprobs");
  EXPECT_EQ(chat_param("{" + user + ", \"top_logprobs\": 2}"), "top_logprobs");
  EXPECT_EQ(chat_param("{" + user + ", \"logprobs\": true, \"top_logprobs\": 21}"),
            "top_logprobs");
  const ApiRequest r = parse_api_request(
      "{" + user + ", \"logprobs\": true, \"top_logprobs\": 3, \"max_completion_tokens\": 4}",
      Endpoint::kChatCompletions);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.sampling.top_logprobs, 3);
  EXPECT_EQ(r.max_tokens, 4);
}

TEST(ServerRequest, BuildEngineRequests) {
  PromptContext ctx;
  ctx.max_seq_len = 100;
  ctx.default_seed = 1000;
  ApiRequest r = parse_api_request(
      "{\"prompt\": [[1, 2], [3, 4, 5]], \"n\": 2, \"seed\": 10, \"max_tokens\": 7,"
      " \"logprobs\": 1, \"stop_token_ids\": [9]}",
      Endpoint::kCompletions);
  const EngineRequests er = build_engine_requests(r, ctx);
  ASSERT_EQ(er.choices.size(), 4u);
  EXPECT_EQ(er.choice_prompt, (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(er.choices[0].prompt, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(er.choices[3].prompt, (std::vector<int32_t>{3, 4, 5}));
  EXPECT_EQ(er.choices[0].sampling.seed, 10u);
  EXPECT_EQ(er.choices[1].sampling.seed, 11u);
  EXPECT_EQ(er.choices[2].sampling.seed, 10u);
  EXPECT_EQ(er.choices[1].max_tokens, 7);
  EXPECT_TRUE(er.choices[0].logprobs);
  EXPECT_EQ(er.choices[0].sampling.top_logprobs, 1);
  EXPECT_EQ(er.choices[0].stop_ids, std::vector<int32_t>{9});
  EXPECT_FALSE(er.choices[0].detokenize);

  // Deterministic without a seed: the engine's default seed, + i across choices.
  r = parse_api_request("{\"prompt\": [1], \"n\": 2, \"deterministic\": true}",
                        Endpoint::kCompletions);
  const EngineRequests det = build_engine_requests(r, ctx);
  EXPECT_EQ(det.choices[0].sampling.seed, 1000u);
  EXPECT_EQ(det.choices[1].sampling.seed, 1001u);
  EXPECT_TRUE(det.choices[0].deterministic);
  EXPECT_EQ(det.choices[0].max_tokens, 16);  // the completions default

  // Without a tokenizer text prompts are refused, naming the prompt.
  r = parse_api_request("{\"prompt\": [\"a\", \"b\"]}", Endpoint::kCompletions);
  try {
    build_engine_requests(r, ctx);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "prompt[0]");
  }
  // Without a chat template chat is refused, naming the messages.
  r = parse_api_request("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}",
                        Endpoint::kChatCompletions);
  try {
    build_engine_requests(r, ctx);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "messages");
    EXPECT_NE(std::string(e.what()).find("chat template"), std::string::npos);
  }
}

TEST(ServerRequest, EngineErrorsNameTheField) {
  auto map = [](const std::string& msg, Endpoint e = Endpoint::kCompletions) {
    return engine_error(Error(msg), e);
  };
  EXPECT_EQ(map("'top_p' = 1.5: must be in (0, 1]").param(), "top_p");
  EXPECT_EQ(map("'prompt' token 999 at index 0 is outside the vocabulary [0, 512)").param(),
            "prompt");
  EXPECT_EQ(map("'prompt' is empty", Endpoint::kChatCompletions).param(), "messages");
  EXPECT_EQ(map("'top_logprobs' = 30: must be in [0, 20]").param(), "logprobs");
  const ApiError ctx = map("this model's maximum context length is 512 tokens, but 600 were "
                           "requested (100 in the prompt, 500 for the completion)");
  EXPECT_EQ(ctx.status(), 400);
  EXPECT_EQ(ctx.param(), "prompt");
  EXPECT_EQ(ctx.code(), "context_length_exceeded");
  EXPECT_EQ(map("stop token id 999 outside the vocabulary").param(), "stop_token_ids");
  const ApiError down = map("the engine is shutting down and accepts no new requests");
  EXPECT_EQ(down.status(), 503);
  const json j = map("'n' bad").to_json();
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "n");
  EXPECT_TRUE(j["error"]["code"].is_null());
}

}  // namespace
}  // namespace llm42::server
