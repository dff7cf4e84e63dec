// llm42 serve: the OpenAI-compatible HTTP server (docs/server.md). Loads the model as
// `generate` does, finds a chat template, and runs the ApiServer until SIGINT/SIGTERM.
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "chat/chat_template.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "engine/engine.h"
#include "server/api_server.h"
#include "util/error.h"
#include "util/log.h"

namespace llm42::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  EngineOptions engine;
  server::ApiServerOptions server;
  std::string chat_template;
  size_t max_body_bytes = server::HttpLimits{}.max_body_bytes;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--chat-template {}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// --chat-template FILE (a Jinja template, or a tokenizer_config.json holding one) or a built-in
// name; without the flag, the model folder's tokenizer_config.json when it has a template.
// Null when there is none: chat completions are then refused with a 400 that says so.
std::unique_ptr<ChatTemplate> find_chat_template(const std::string& flag, const std::string& model,
                                                 const Tokenizer* tok) {
  namespace fs = std::filesystem;
  std::optional<std::string> bos, eos;
  if (tok != nullptr) {
    if (tok->bos_id() >= 0) bos = tok->token_bytes(tok->bos_id(), true);
    if (!tok->eos_ids().empty()) eos = tok->token_bytes(tok->eos_ids().front(), true);
  }
  if (!flag.empty()) {
    if (fs::is_regular_file(flag)) {
      if (flag.ends_with(".json"))
        return std::make_unique<ChatTemplate>(ChatTemplate::from_tokenizer_config(flag));
      return std::make_unique<ChatTemplate>(ChatTemplate::parse(read_file(flag), flag, bos, eos));
    }
    return std::make_unique<ChatTemplate>(ChatTemplate::builtin(flag, bos, eos));
  }
  const fs::path config = fs::path(model) / "tokenizer_config.json";
  if (fs::is_directory(model) && fs::is_regular_file(config)) {
    try {
      return std::make_unique<ChatTemplate>(ChatTemplate::from_tokenizer_config(config.string()));
    } catch (const Error& e) {
      log_info("serve: no chat template ({}): chat completions need --chat-template", e.what());
      return nullptr;
    }
  }
  log_info("serve: {} has no chat template: chat completions need --chat-template", model);
  return nullptr;
}

// Every connection is a file descriptor: take the hard limit, not the (often 1024) soft one.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// The sections of `serve --help`, in order, and their flags.
const std::pair<const char*, std::vector<std::string>> kHelpGroups[] = {
    {"Model",
     {"--model", "--dummy-weights", "--weights-seed", "--tokenizer", "--chat-template",
      "--served-model-name", "--device", "--threads", "--dtype", "--bf16-activations",
      "--max-seq-len"}},
    {"Engine",
     {"--max-num-seqs", "--max-num-batched-tokens", "--prefill-chunk", "--admission-reserve",
      "--block-size", "--num-blocks", "--kv-cache-memory-fraction", "--no-prefix-cache",
      "--max-stalled-steps"}},
    {"Determinism",
     {"--determinism", "--verify-schedule", "--window", "--group", "--canonical-decode-threshold"}},
    {"CUDA",
     {"--gpu-memory-fraction", "--no-cuda-pdl", "--no-cuda-canonical-skinny",
      "--cuda-canonical-m-step", "--cuda-attention-tall", "--cuda-graph-max-batch"}},
    {"HTTP",
     {"--host", "--port", "--api-key", "--max-queue", "--max-body-bytes", "--timeout-keep-alive",
      "--drain-timeout", "--server-workers", "--log-stats-interval"}},
    {"Fault injection and self-checks",
     {"--inject-mismatch-rate", "--inject-mismatch-position", "--verify-no-rollback",
      "--check-integrity"}},
};

// Help without CLI11's artefacts: names without flag defaults ("--no-prefix-cache{false}"),
// values as a word from the flag's name rather than a parser type with its validators
// ("INT:INT in [0 - 1073741824]"), defaults in brackets.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() { column_width(50); }
  std::string make_option_name(const CLI::Option* opt, bool) const override {
    std::string names;
    for (const std::string& n : opt->get_snames()) names += (names.empty() ? "-" : ", -") + n;
    for (const std::string& n : opt->get_lnames()) names += (names.empty() ? "--" : ", --") + n;
    return names;
  }
  // CLI11's layout, with the sections in kHelpGroups' order (CLI11 lists them in the order
  // their first flag was added).
  std::string make_help(const CLI::App* app, std::string name,
                        CLI::AppFormatMode mode) const override {
    if (mode == CLI::AppFormatMode::Sub) return make_expanded(app);
    std::vector<std::string> order = {"Options"};
    for (const auto& [g, names] : kHelpGroups) order.push_back(g);
    for (const std::string& g : app->get_groups())
      if (std::find(order.begin(), order.end(), g) == order.end()) order.push_back(g);
    std::string out = make_description(app) + make_usage(app, name) + make_positionals(app);
    for (const std::string& g : order) {
      const auto opts = app->get_options(
          [&](const CLI::Option* o) { return o->get_group() == g && o->nonpositional(); });
      if (!opts.empty()) out += make_group(g, false, opts);
    }
    return out + make_subcommands(app, mode) + "\n" + make_footer(app);
  }
  std::string make_option_opts(const CLI::Option* opt) const override {
    if (opt->get_expected_max() == 0) return "";  // a flag
    // The value's word: the flag's last word, upper case (--max-num-seqs SEQS).
    const std::string& name = opt->get_lnames().front();
    std::string word = name.substr(name.rfind('-') + 1);
    for (char& c : word) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const std::string def = opt->get_default_str();
    return " " + word + (def.empty() ? "" : " [" + def + "]");
  }
};

// `serve --help` in sections. A flag added without a section here lands in "Other", which the
// help test refuses.
void group_serve_help(CLI::App& sub) {
  for (CLI::Option* opt : sub.get_options()) {
    if (opt == sub.get_help_ptr()) continue;
    const std::string name = "--" + opt->get_lnames().front();
    std::string group = "Other";
    for (const auto& [g, names] : kHelpGroups)
      if (std::find(names.begin(), names.end(), name) != names.end()) group = g;
    opt->group(group);
  }
  sub.formatter(std::make_shared<HelpFormatter>());
}

int run(ServeOptions& o) {
  // Before any thread starts (OpenMP's included), so that they all inherit the mask.
  server::block_shutdown_signals();
  raise_fd_limit();
  const EngineConfig config = o.engine.resolve();
  LoadedModel lm = load_model(o.model, max_pass_tokens(config), max_logit_rows(config));
  const std::unique_ptr<ChatTemplate> chat_template =
      find_chat_template(o.chat_template, o.model.model, lm.tokenizer.get());
  Engine engine(*lm.model, config, lm.tokenizer.get());
  if (o.server.served_model_name.empty()) o.server.served_model_name = lm.name;
  o.server.http.limits.max_body_bytes = o.max_body_bytes;
  server::ApiServer server(engine, lm.tokenizer.get(), chat_template.get(), o.server);
  server.run();
  return 0;
}

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  add_model_options(*sub, o->model);
  server::ApiServerOptions& s = o->server;
  sub->add_option("--host", s.http.host, "Address to listen on (0.0.0.0 for every interface)")
      ->capture_default_str();
  sub->add_option("--port", s.http.port, "Port to listen on (0: any free port)")
      ->capture_default_str();
  sub->add_option("--api-key", s.api_key,
                  "Require 'Authorization: Bearer KEY' on every route but /health");
  sub->add_option("--served-model-name", s.served_model_name,
                  "The model's name in the API (default: from the model path)");
  sub->add_option("--chat-template", o->chat_template,
                  "Chat template: a Jinja file, a tokenizer_config.json, or a built-in name "
                  "(llama-2, mistral, chatml); default: the model folder's tokenizer_config.json");
  sub->add_option("--max-queue", s.max_queue,
                  "Engine requests allowed to wait; beyond it new requests get 429")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  sub->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (larger: 413)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 34));
  sub->add_option("--timeout-keep-alive", s.http.keep_alive_timeout,
                  "Seconds an idle connection is kept open")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--drain-timeout", s.drain_timeout,
                  "Seconds requests in flight get to finish after SIGINT/SIGTERM before they "
                  "are aborted")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--server-workers", s.workers,
                  "Threads that parse, template and tokenize requests")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  sub->add_option("--log-stats-interval", s.log_stats_interval,
                  "Seconds between engine stats lines in the log (throughput, running, waiting, "
                  "KV cache); 0 = none")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_engine_options(*sub, o->engine);
  group_serve_help(*sub);
  bind(*sub, [o] { return run(*o); });
}

}  // namespace llm42::cli
