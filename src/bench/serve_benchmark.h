// `llm42 bench serve`: load-tests a running OpenAI-compatible server (llm42, vLLM, SGLang) the
// way vLLM's benchmark_serving does: Poisson arrivals at each request rate, streamed
// completions of synthetic token-id prompts (bench/workload.h), a fraction of them marked
// deterministic; throughput and TTFT/TPOT/ITL/end-to-end latency (mean, P50, P90, P99), as a
// table, as JSON, and as an SVG chart of latency against request rate that can overlay runs
// (e.g. one per server mode).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llm42::bench {

struct BenchServeOptions {
  std::string url;
  std::string model;    // empty: the server's first model
  std::string api_key;
  std::vector<double> qps = {1.0};  // requests per second; inf = all at once
  std::string workload = "sharegpt";
  int num_prompts = 200;
  double deterministic_ratio = 0.0;
  std::string label;         // names this run in the JSON and on the plot
  std::string json_out;
  std::string plot_out;
  std::vector<std::string> plot_inputs;  // earlier JSON results drawn on the same plot
  int vocab_size = 0;        // 0: from the server's /v1/models (vocab_size), else 32000
  int max_concurrency = 0;   // 0: unbounded
  uint64_t seed = 0;
};

int run_bench_serve(const BenchServeOptions& o);

}  // namespace llm42::bench
