// llm42 serve: the OpenAI-compatible HTTP server (docs/server.md). Loads the model as
// `generate` does, finds a chat template, and runs the ApiServer until SIGINT/SIGTERM/SIGQUIT.
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
#include "cli/chat_source.h"
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
  std::string api_key_file;
  std::string log_format = "text";
  size_t max_body_bytes = server::HttpLimits{}.max_body_bytes;
};

std::string read_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{} {}: cannot open", flag, path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every connection is a file descriptor: take the hard limit, not the (often 1024) soft one,
// and keep --max-connections below it, with room for the model's files and the loop's own.
void fit_fd_limit(int& max_connections) {
  constexpr int kReserved = 64;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur == RLIM_INFINITY) return;
  const rlim_t fit = lim.rlim_cur > kReserved ? lim.rlim_cur - kReserved : 1;
  if (static_cast<rlim_t>(max_connections) > fit) {
    log_warn("serve: --max-connections {} exceeds the file descriptor limit ({}): using {}",
             max_connections, lim.rlim_cur, fit);
    max_connections = static_cast<int>(fit);
  }
}

// The key from --api-key, --api-key-file or LLM42_API_KEY (not visible in `ps`), one only.
void resolve_api_key(ServeOptions& o) {
  if (o.api_key_file.empty()) return;
  if (!o.server.api_key.empty())
    fail("--api-key and --api-key-file both given (LLM42_API_KEY counts as --api-key): use one");
  std::string key = read_file("--api-key-file", o.api_key_file);
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.empty()) fail("--api-key-file {}: the file is empty", o.api_key_file);
  for (char c : key)
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f)
      fail(
          "--api-key-file {}: the key holds whitespace or a control character (one line, "
          "the key only)",
          o.api_key_file);
  o.server.api_key = std::move(key);
}

// The sections of `serve --help`, in order, and their flags.
const std::pair<const char*, std::vector<std::string>> kHelpGroups[] = {
    {"Model",
     {"--model", "--dummy-weights", "--weights-seed", "--tokenizer", "--chat-template",
      "--served-model-name", "--device", "--threads", "--dtype", "--bf16-activations",
      "--max-seq-len"}},
    {"Tensor parallelism", {"--tensor-parallel-size", "--tp-communicator", "--tp-cuda-graphs"}},
    {"Engine",
     {"--max-num-seqs", "--max-num-batched-tokens", "--prefill-chunk",
      "--max-prompt-logprobs-rows", "--admission-reserve",
      "--block-size", "--num-blocks", "--kv-cache-memory-fraction", "--no-prefix-cache",
      "--max-stalled-steps"}},
    {"Determinism",
     {"--determinism", "--default-deterministic", "--verify-schedule", "--window", "--group",
      "--canonical-decode-threshold"}},
    {"CUDA",
     {"--gpu-memory-fraction", "--no-cuda-pdl", "--no-cuda-canonical-skinny",
      "--no-cuda-fused-tree",
      "--cuda-canonical-m-step", "--cuda-attention-tall", "--cuda-graph-max-batch"}},
    {"HTTP",
     {"--host", "--port", "--api-key", "--api-key-file", "--max-queue", "--max-body-bytes",
      "--max-connections", "--max-buffered-request-bytes", "--timeout-keep-alive",
      "--timeout-request-head", "--timeout-request-body", "--timeout-write", "--drain-timeout",
      "--server-workers", "--log-format", "--log-stats-interval"}},
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
  set_log_format(parse_log_format(o.log_format));
  resolve_api_key(o);
  fit_fd_limit(o.server.http.max_connections);
  o.server.http.limits.max_body_bytes = o.max_body_bytes;
  server::check_options(o.server.http);  // before the model loads: a bad flag fails fast
  const EngineConfig config = o.engine.resolve();
  LoadedModel lm = load_model(o.model, max_pass_tokens(config), max_logit_rows(config));
  // Null when there is none: chat completions are then refused with a 400 that says so.
  const std::unique_ptr<ChatTemplate> chat_template = find_chat_template(
      o.chat_template, o.model.model, lm.tokenizer.get(), lm.chat_template, "serve");
  Engine engine(*lm.model, config, lm.tokenizer.get());
  if (o.server.served_model_name.empty()) o.server.served_model_name = lm.name;
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
                  "Require 'Authorization: Bearer KEY' on every route but /health (visible in "
                  "`ps`: prefer --api-key-file or LLM42_API_KEY)")
      ->envname("LLM42_API_KEY");
  sub->add_option("--api-key-file", o->api_key_file,
                  "Read the API key from this file (its first line)");
  sub->add_flag("--default-deterministic", s.default_deterministic,
               "Requests that do not say ('deterministic' / 'is_deterministic') are deterministic "
               "(for clients that cannot add the field, such as lm-evaluation-harness)");
  sub->add_option("--served-model-name", s.served_model_name,
                  "The model's name in the API (default: from the model path)");
  sub->add_option("--chat-template", o->chat_template,
                  "Chat template: a Jinja file, a tokenizer_config.json, or a built-in name "
                  "(llama-2, mistral, chatml); default: the model folder's tokenizer_config.json, "
                  "else the model file's own (GGUF tokenizer.chat_template)");
  sub->add_option("--max-queue", s.max_queue,
                  "Engine requests allowed to wait; beyond it new requests get 429")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  sub->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (larger: 413)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 34));
  sub->add_option("--timeout-keep-alive", s.http.keep_alive_timeout,
                  "Seconds an idle connection is kept open (a half-sent request: 408)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--timeout-request-head", s.http.head_timeout,
                  "Seconds from a request's first byte to the end of its head, however the "
                  "bytes trickle in (later: 408)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--timeout-request-body", s.http.body_timeout,
                  "Seconds from the end of a request's head to the end of its body (later: 408)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--timeout-write", s.http.write_timeout,
                  "Seconds a response's unsent bytes may wait for the client to read them; then "
                  "the connection is closed and its request aborted")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--max-connections", s.http.max_connections,
                  "Connections open at once (kept below the file descriptor limit); at the "
                  "limit the longest-idle keep-alive connection makes room, else the new one "
                  "gets 503 and a close")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  sub->add_option("--max-buffered-request-bytes", s.http.max_buffered_request_bytes,
                  "Request bytes buffered across all connections, a body counted in full from "
                  "its head on; beyond it new requests get 503 (at least --max-body-bytes + "
                  "16 KiB)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 40));
  sub->add_option("--log-format", o->log_format,
                  "text or json: the format of every log line, the access log's included")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  sub->add_option("--drain-timeout", s.drain_timeout,
                  "Seconds requests in flight get to finish after SIGINT/SIGTERM/SIGQUIT before "
                  "they are aborted (SIGHUP is ignored)")
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
