// llm42 generate: run prompts through the engine and stream the text, or chat with the model's
// template (--chat). Ends with one line that reports prompt and decode speed and a hash of the
// output token ids (calm's habit: a regression in speed or determinism shows in one line).
#include <fmt/ranges.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "cli/chat_source.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "engine/engine.h"
#include "util/error.h"
#include "util/timer.h"

namespace llm42::cli {
namespace {

struct GenerateOptions {
  ModelOptions model;
  EngineOptions engine;
  std::string prompt;
  std::string prompt_ids;
  std::string prompts_file;
  int max_tokens = 256;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  int64_t seed = -1;
  bool deterministic = false;
  bool no_bos = false;
  bool ignore_eos = false;
  bool quiet = false;
  bool logprobs = false;
  bool chat = false;
  std::string chat_template;
  std::string system;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      ids.push_back(std::stoi(item, &used));
      if (used != item.size() && item.find_first_not_of(' ', used) != std::string::npos)
        throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail("--prompt-ids: '{}' is not an integer", item);
    }
  }
  return ids;
}

Request base_request(const GenerateOptions& o) {
  Request base;
  base.max_tokens = o.max_tokens;
  base.sampling.temperature = o.temperature;
  base.sampling.top_p = o.top_p;
  base.sampling.top_k = o.top_k;
  base.sampling.min_p = o.min_p;
  base.sampling.presence_penalty = o.presence_penalty;
  base.sampling.frequency_penalty = o.frequency_penalty;
  base.sampling.repetition_penalty = o.repetition_penalty;
  if (o.seed >= 0) base.sampling.seed = static_cast<uint64_t>(o.seed);
  base.deterministic = o.deterministic;
  base.ignore_eos = o.ignore_eos;
  base.logprobs = o.logprobs;
  return base;
}

// One chat turn: the conversation rendered with the template (which adds the special tokens
// itself, as the server's chat completions do), the answer streamed to stdout and returned.
std::string chat_turn(Engine& engine, const Tokenizer& tok, const ChatTemplate& chat,
                      const nlohmann::json& messages, Request r) {
  r.prompt = tok.encode(chat.render(messages, true), false, true);
  std::string answer;
  engine.add_request(std::move(r), [&](RequestOutput&& out) {
    answer += out.text;
    std::fwrite(out.text.data(), 1, out.text.size(), stdout);
    std::fflush(stdout);
    if (out.finished && !out.error.empty()) std::fprintf(stderr, "error: %s\n", out.error.c_str());
  });
  engine.run_until_idle();
  std::printf("\n");
  std::fflush(stdout);
  return answer;
}

// generate --chat: one turn with --prompt; otherwise a conversation, one user turn per line of
// stdin (with a "> " prompt when stdin is a terminal) until end of input.
int run_chat(const GenerateOptions& o, const LoadedModel& lm, Engine& engine) {
  if (!o.prompt_ids.empty() || !o.prompts_file.empty())
    fail("--chat takes --prompt or stdin, not --prompt-ids or --prompts");
  if (lm.tokenizer == nullptr) fail("{} has no tokenizer, so it cannot chat", lm.name);
  const std::unique_ptr<ChatTemplate> chat = find_chat_template(
      o.chat_template, o.model.model, lm.tokenizer.get(), lm.chat_template, "generate --chat");
  if (chat == nullptr)
    fail("{} has no chat template: give --chat-template FILE or a built-in name ({})", lm.name,
         fmt::join(ChatTemplate::builtin_names(), ", "));
  nlohmann::json messages = nlohmann::json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  if (!o.prompt.empty()) {
    messages.push_back({{"role", "user"}, {"content", o.prompt}});
    chat_turn(engine, *lm.tokenizer, *chat, messages, base_request(o));
    return 0;
  }
  const bool terminal = isatty(STDIN_FILENO) != 0;
  if (terminal) std::fprintf(stderr, "Chatting with %s; end with Ctrl-D.\n", lm.name.c_str());
  std::string line;
  for (;;) {
    if (terminal) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    const std::string answer = chat_turn(engine, *lm.tokenizer, *chat, messages, base_request(o));
    messages.push_back({{"role", "assistant"}, {"content", answer}});
  }
  if (terminal) std::printf("\n");
  return 0;
}

int run(const GenerateOptions& o) {
  if (!o.chat && (!o.chat_template.empty() || !o.system.empty()))
    fail("--chat-template and --system only apply with --chat");
  const EngineConfig config = o.engine.resolve();
  LoadedModel lm = load_model(o.model, max_pass_tokens(config), max_logit_rows(config));
  Engine engine(*lm.model, config, lm.tokenizer.get());
  if (o.chat) return run_chat(o, lm, engine);

  std::vector<std::vector<int32_t>> prompts;
  auto encode = [&](const std::string& text) {
    if (lm.tokenizer == nullptr)
      fail("{} has no tokenizer: give --prompt-ids, or --tokenizer", lm.name);
    return lm.tokenizer->encode(text, !o.no_bos);
  };
  if (!o.prompt_ids.empty()) prompts.push_back(parse_ids(o.prompt_ids));
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    if (!in) fail("--prompts {}: cannot open", o.prompts_file);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) prompts.push_back(encode(line));
    if (prompts.empty()) fail("--prompts {}: no prompts (one per line)", o.prompts_file);
  }
  if (prompts.empty()) {
    std::vector<int32_t> ids = encode(o.prompt);
    if (ids.empty() && lm.tokenizer) ids.push_back(lm.tokenizer->bos_id());
    prompts.push_back(std::move(ids));
  }
  const bool stream = prompts.size() == 1 && !o.quiet;

  const Request base = base_request(o);

  struct Result {
    std::vector<int32_t> ids;
    std::vector<float> logprobs;  // --logprobs: each token's
    std::string text;
    double first_token = 0;
    FinishReason reason = FinishReason::kNone;
    VerifyStats verify;
  };
  std::vector<Result> results(prompts.size());
  const double t0 = now_seconds();
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    Request r = base;
    r.prompt = prompts[i];
    prompt_tokens += static_cast<int64_t>(r.prompt.size());
    if (stream && lm.tokenizer) {
      std::string shown = lm.tokenizer->decode(r.prompt);
      std::fwrite(shown.data(), 1, shown.size(), stdout);
      std::fflush(stdout);
    }
    engine.add_request(std::move(r), [&, i](RequestOutput&& out) {
      Result& res = results[i];
      if (res.first_token == 0 && !out.tokens.empty()) res.first_token = now_seconds();
      res.ids.insert(res.ids.end(), out.tokens.begin(), out.tokens.end());
      for (const TokenLogprob& lp : out.logprobs) res.logprobs.push_back(lp.logprob);
      res.text += out.text;
      if (stream) {
        if (lm.tokenizer) {
          std::fwrite(out.text.data(), 1, out.text.size(), stdout);
        } else {
          for (int32_t id : out.tokens) std::printf(" %d", id);
        }
        std::fflush(stdout);
      }
      if (out.finished) {
        res.reason = out.finish_reason;
        res.verify = out.verify;
        if (!out.error.empty())
          std::fprintf(stderr, "request %zu failed: %s\n", i, out.error.c_str());
      }
    });
  }
  engine.run_until_idle();
  const double t1 = now_seconds();

  if (!stream && !o.quiet) {
    for (size_t i = 0; i < results.size(); ++i) {
      std::printf("[%zu] ", i);
      if (lm.tokenizer) {
        std::printf("%s\n", results[i].text.c_str());
      } else {
        for (int32_t id : results[i].ids) std::printf("%d ", id);
        std::printf("\n");
      }
    }
  }
  if (stream) std::printf("\n");
  std::fflush(stdout);  // the text before the summary line (stderr), also when piped

  // Prompt phase: until every request has its first token; decode phase: the rest.
  double first_all = t0;
  int64_t output_tokens = 0;
  XXH64_state_t* hs = XXH64_createState();
  XXH64_state_t* hl = XXH64_createState();
  XXH64_reset(hs, 0);
  XXH64_reset(hl, 0);
  for (const Result& r : results) {
    first_all = std::max(first_all, r.first_token);
    output_tokens += static_cast<int64_t>(r.ids.size());
    XXH64_update(hs, r.ids.data(), r.ids.size() * sizeof(int32_t));
    // The logprobs' bits, in request order (a NaN's payload included).
    XXH64_update(hl, r.logprobs.data(), r.logprobs.size() * sizeof(float));
  }
  const uint64_t hash = XXH64_digest(hs);
  const uint64_t logprob_hash = XXH64_digest(hl);
  XXH64_freeState(hs);
  XXH64_freeState(hl);
  const int64_t decode_tokens = output_tokens - static_cast<int64_t>(results.size());
  const double prefill_s = first_all - t0, decode_s = t1 - first_all;
  const EngineStats st = engine.stats();
  // Every decode step streams the weights once (all but the embedding table): the longest
  // output took that many steps.
  size_t longest = 0;
  for (const Result& r : results) longest = std::max(longest, r.ids.size());
  const double weight_gbs =
      decode_s > 0 && longest > 1
          ? static_cast<double>(lm.model->bytes_per_decode_step()) *
                static_cast<double>(longest - 1) / decode_s / 1e9
          : 0.0;
  const int64_t passes = std::max<int64_t>(1, st.fast_passes + st.canonical_passes);
  std::fprintf(stderr,
               "prompt: %lld tok, %.1f tok/s | decode: %lld tok, %.1f tok/s, weights read at "
               "%.0f GB/s | requests %zu | rollbacks %lld (recompute %.3f) | graph passes "
               "%.0f%% | per step %.2f ms: passes %.2f, rest %.2f | output hash %016llx%s\n",
               static_cast<long long>(prompt_tokens),
               prefill_s > 0 ? static_cast<double>(prompt_tokens) / prefill_s : 0.0,
               static_cast<long long>(decode_tokens),
               decode_s > 0 ? static_cast<double>(decode_tokens) / decode_s : 0.0, weight_gbs,
               results.size(), static_cast<long long>(st.verify.rollbacks), st.recompute_rate(),
               100.0 * static_cast<double>(st.graph_passes) / static_cast<double>(passes),
               1e3 * (st.schedule_s + st.pass_s + st.other_s) / std::max<int64_t>(1, st.steps),
               1e3 * st.pass_s / std::max<int64_t>(1, st.steps),
               1e3 * (st.schedule_s + st.other_s) / std::max<int64_t>(1, st.steps),
               static_cast<unsigned long long>(hash),
               o.logprobs ? fmt::format(" | logprob hash {:016x}", logprob_hash).c_str() : "");
  return 0;
}

}  // namespace

void register_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text from a prompt (or many)");
  add_model_options(*sub, o->model);
  sub->add_option("-p,--prompt", o->prompt, "Prompt text");
  sub->add_option("--prompt-ids", o->prompt_ids, "Prompt as comma-separated token ids");
  sub->add_option("--prompts", o->prompts_file,
                  "File with one prompt per line, all run concurrently through the engine");
  sub->add_option("-n,--max-tokens", o->max_tokens, "Tokens to generate per prompt")
      ->capture_default_str();
  sub->add_option("-t,--temperature", o->temperature, "0 = greedy")->capture_default_str();
  sub->add_option("--top-p", o->top_p)->capture_default_str();
  sub->add_option("--top-k", o->top_k, "0 = off")->capture_default_str();
  sub->add_option("--min-p", o->min_p)->capture_default_str();
  sub->add_option("--presence-penalty", o->presence_penalty)->capture_default_str();
  sub->add_option("--frequency-penalty", o->frequency_penalty)->capture_default_str();
  sub->add_option("--repetition-penalty", o->repetition_penalty)->capture_default_str();
  sub->add_option("-s,--seed", o->seed, "Sampling seed (-1 = random; deterministic: 0)")
      ->capture_default_str();
  sub->add_flag("--deterministic", o->deterministic,
                "Ask for a deterministic answer (bitwise identical under any load)");
  sub->add_flag("--no-bos", o->no_bos, "Do not add the tokenizer's special tokens (BOS)");
  sub->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past EOS");
  sub->add_flag("-q,--quiet", o->quiet, "Print only the summary line");
  sub->add_flag("--logprobs", o->logprobs,
                "Compute every output token's logprob and end the summary line with a hash of "
                "their bits (`logprob hash`): two runs agree on it only if every logprob does");
  sub->add_flag("--chat", o->chat,
                "Chat with the model's chat template: one answer to --prompt, or a conversation "
                "read from stdin one user turn per line (interactive on a terminal)");
  sub->add_option("--chat-template", o->chat_template,
                  "With --chat: a Jinja file, a tokenizer_config.json, or a built-in name "
                  "(llama-2, mistral, chatml); default: the model's own");
  sub->add_option("--system", o->system, "With --chat: a system message to start with");
  add_engine_options(*sub, o->engine);
  bind(*sub, [o] { return run(*o); });
}

}  // namespace llm42::cli
