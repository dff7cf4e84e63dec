// llm42 serve: the OpenAI-compatible HTTP server (docs/server.md). Loads the model as
// `generate` does, finds a chat template, and runs the ApiServer until SIGINT/SIGTERM.
#include <sys/resource.h>

#include <string>

#include "chat/chat_template.h"
#include "cli/chat_source.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "engine/engine.h"
#include "server/api_server.h"
#include "util/error.h"

namespace llm42::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  EngineOptions engine;
  server::ApiServerOptions server;
  std::string chat_template;
  size_t max_body_bytes = server::HttpLimits{}.max_body_bytes;
};

// Every connection is a file descriptor: take the hard limit, not the (often 1024) soft one.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

int run(ServeOptions& o) {
  // Before any thread starts (OpenMP's included), so that they all inherit the mask.
  server::block_shutdown_signals();
  raise_fd_limit();
  const EngineConfig config = o.engine.resolve();
  LoadedModel lm = load_model(o.model, max_pass_tokens(config), max_logit_rows(config));
  // Null when there is none: chat completions are then refused with a 400 that says so.
  const std::unique_ptr<ChatTemplate> chat_template = find_chat_template(
      o.chat_template, o.model.model, lm.tokenizer.get(), lm.chat_template, "serve");
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
  add_engine_options(*sub, o->engine);
  bind(*sub, [o] { return run(*o); });
}

}  // namespace llm42::cli
