// llm42 bench serve: Poisson load against a running server, with latency percentiles, JSON and
// an SVG chart (src/bench/serve_benchmark.h, docs/server.md).
#include <cmath>
#include <string>
#include <vector>

#include "bench/serve_benchmark.h"
#include "cli/commands.h"
#include "util/error.h"

namespace llm42::cli {

void register_bench_serve(CLI::App& bench) {
  auto o = std::make_shared<bench::BenchServeOptions>();
  auto qps = std::make_shared<std::vector<std::string>>(std::vector<std::string>{"1"});
  CLI::App* sub = bench.add_subcommand(
      "serve", "Load-test a running OpenAI-compatible server (Poisson arrivals, streaming)");
  sub->add_option("--url", o->url, "The server, e.g. http://127.0.0.1:8000");
  sub->add_option("--model", o->model, "Model name (default: the server's first)");
  sub->add_option("--api-key", o->api_key, "Bearer token, when the server wants one");
  sub->add_option("--qps", *qps, "Request rates to run, comma-separated (inf: all at once)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--workload", o->workload, "sharegpt, arxiv or fixed:IN,OUT")
      ->capture_default_str();
  sub->add_option("--num-prompts", o->num_prompts, "Requests per rate")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  sub->add_option("--deterministic-ratio", o->deterministic_ratio,
                  "Fraction of requests marked deterministic")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  sub->add_option("--modes-label,--label", o->label,
                  "Name of this run in the JSON and on the plot (e.g. the server's mode)");
  sub->add_option("--json", o->json_out, "Write the results as JSON");
  sub->add_option("--plot", o->plot_out,
                  "Write an SVG of latency against request rate (this run and any result files "
                  "given as arguments)");
  sub->add_option("results", o->plot_inputs, "Earlier --json results to draw on the same plot");
  sub->add_option("--vocab-size", o->vocab_size,
                  "Vocabulary of the synthetic prompts (default: from the server)");
  sub->add_option("--max-concurrency", o->max_concurrency,
                  "Requests in flight at most (0: no limit)")
      ->capture_default_str();
  sub->add_option("--seed", o->seed, "Seed of the workload and the arrivals")
      ->capture_default_str();
  bind(*sub, [o, qps] {
    o->qps.clear();
    for (const std::string& q : *qps) {
      if (q == "inf") {
        o->qps.push_back(INFINITY);
        continue;
      }
      try {
        const double v = std::stod(q);
        if (!(v > 0)) throw std::invalid_argument(q);
        o->qps.push_back(v);
      } catch (const std::exception&) {
        fail("--qps '{}': expected a positive number or inf", q);
      }
    }
    if (o->url.empty() && o->plot_inputs.empty())
      fail("give --url to run a benchmark, or result files and --plot to draw them");
    return bench::run_bench_serve(*o);
  });
}

}  // namespace llm42::cli
