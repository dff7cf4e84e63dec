// llm42 check: send the same deterministic requests to a running server alone, concurrently,
// shuffled and under background load, and compare token ids and logprobs bitwise
// (src/client/determinism_check.h, docs/server.md).
#include "cli/commands.h"
#include "client/determinism_check.h"

namespace llm42::cli {

void register_check(CLI::App& app) {
  auto o = std::make_shared<client::CheckOptions>();
  CLI::App* sub = app.add_subcommand("check", "Check a running server's determinism");
  sub->add_option("--url", o->url, "The server")->capture_default_str();
  sub->add_option("--model", o->model, "Model name (default: the server's first)");
  sub->add_option("--api-key", o->api_key, "Bearer token, when the server wants one");
  sub->add_option("--prompts", o->prompts, "Deterministic requests per scenario")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  sub->add_option("--max-tokens", o->max_tokens, "Tokens per request")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--concurrency", o->concurrency, "Requests in flight in the loaded scenarios")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_option("--background", o->background,
                  "Clients sending non-deterministic traffic in the background scenarios")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  sub->add_option("--seed", o->seed, "Seed of the sampled requests and of the shuffle")
      ->capture_default_str();
  sub->add_option("--json", o->json_out, "Write the results as JSON");
  sub->add_option("--compare-url", o->compare_urls,
                  "Another server that must give the same deterministic answers bit for bit "
                  "(e.g. the same model at another --tensor-parallel-size); repeatable");
  bind(*sub, [o] { return client::run_determinism_check(*o); });
}

}  // namespace llm42::cli
