#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace llm42::server {
namespace {

void header(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

template <typename T>
void sample(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            T value) {
  header(out, name, type, help);
  fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
}

// Prometheus renders bounds and values as Go floats; integers are written without a fraction.
std::string number(double v) { return fmt::format("{}", v); }

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                       bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  header(out, name, "histogram", help);
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"{}\"}} {}\n", name,
                   number(bounds_[i]), cumulative);
  }
  fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n",
                 name, count_, name, number(sum_), name, count_);
}

ServerMetrics::ServerMetrics()
    // Bucket bounds as vLLM's, so dashboards built for it read these too.
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
             7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}),
      tpot_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0}),
      e2e_({0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}) {}

void ServerMetrics::count_response(std::string_view path, int status) {
  static constexpr std::string_view kKnown[] = {"/v1/completions", "/v1/chat/completions",
                                                "/v1/models", "/health", "/metrics"};
  const bool known = std::find(std::begin(kKnown), std::end(kKnown), path) != std::end(kKnown);
  ++responses_[{known ? std::string(path) : std::string("other"), status}];
}

void ServerMetrics::observe_request(const RequestLatency& lat, std::string_view finish_reason) {
  ++finished_[std::string(finish_reason)];
  if (lat.has_first_token) {
    ttft_.observe(lat.ttft);
    if (lat.tpot > 0) tpot_.observe(lat.tpot);
  }
  e2e_.observe(lat.e2e);
}

void ServerMetrics::count_rejected(std::string_view reason) { ++rejected_[std::string(reason)]; }

std::string ServerMetrics::render(const EngineStats& es, const Gauges& g) const {
  std::string out;
  out.reserve(8192);
  header(out, "llm42_http_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
  for (const auto& [key, n] : responses_)
    fmt::format_to(std::back_inserter(out),
                   "llm42_http_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first,
                   key.second, n);
  header(out, "llm42_request_success_total", "counter",
         "Engine requests (one per choice) finished, by finish reason.");
  for (const auto& [reason, n] : finished_)
    fmt::format_to(std::back_inserter(out),
                   "llm42_request_success_total{{finished_reason=\"{}\"}} {}\n", reason, n);
  header(out, "llm42_requests_rejected_total", "counter",
         "Requests refused before reaching the engine (queue_full: 429, shutting_down: 503).");
  for (const auto& [reason, n] : rejected_)
    fmt::format_to(std::back_inserter(out), "llm42_requests_rejected_total{{reason=\"{}\"}} {}\n",
                   reason, n);

  sample(out, "llm42_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
         es.prompt_tokens);
  sample(out, "llm42_generation_tokens_total", "counter", "Committed output tokens.",
         es.output_tokens);
  sample(out, "llm42_num_requests_running", "gauge", "Sequences running in the engine.",
         es.running);
  sample(out, "llm42_num_requests_waiting", "gauge", "Sequences waiting for admission.",
         es.waiting);
  sample(out, "llm42_kv_cache_blocks_used", "gauge", "KV cache blocks in use.", es.kv_blocks_used);
  sample(out, "llm42_kv_cache_blocks_total", "gauge", "KV cache blocks in all.",
         es.kv_blocks_total);
  sample(out, "llm42_kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks in use (0-1).",
         number(es.kv_blocks_total == 0
                    ? 0.0
                    : static_cast<double>(es.kv_blocks_used) / es.kv_blocks_total));
  sample(out, "llm42_prefix_cache_queries_total", "counter",
         "Prefix cache lookups (one per admission).",
         es.prefix_cache_queries);
  sample(out, "llm42_prefix_cache_hits_total", "counter",
         "Prefix cache lookups that matched at least one block.",
         es.prefix_cache_hits);
  sample(out, "llm42_admission_reserve_ratio", "gauge",
         "Share of running requests' remaining max_tokens that admission keeps KV blocks for.",
         number(es.admission_reserve_ratio));
  sample(out, "llm42_num_preemptions_total", "counter", "Sequences preempted (KV cache full).",
         es.preemptions);
  sample(out, "llm42_engine_steps_total", "counter", "Engine steps.", es.steps);

  header(out, "llm42_engine_passes_total", "counter", "Forward passes, by lane.");
  fmt::format_to(std::back_inserter(out),
                 "llm42_engine_passes_total{{lane=\"fast\"}} {}\n"
                 "llm42_engine_passes_total{{lane=\"canonical\"}} {}\n",
                 es.fast_passes, es.canonical_passes);
  sample(out, "llm42_engine_mixed_passes_total", "counter",
         "Canonical forward passes that also ran fast-lane entries (their attention fast).",
         es.mixed_passes);
  header(out, "llm42_engine_pass_seconds_total", "counter",
         "Engine-thread time inside forward passes (launch, device work, sampling), by the "
         "pass's lane and whether it replayed a captured graph.");
  for (int canonical : {0, 1})
    for (int graph : {0, 1}) {
      double seconds = 0;  // EngineStats::pass_profile summed over pass sizes
      for (const PassTime& t : es.pass_profile.by[canonical][graph]) seconds += t.seconds;
      fmt::format_to(std::back_inserter(out),
                     "llm42_engine_pass_seconds_total{{lane=\"{}\",graph=\"{}\"}} {}\n",
                     canonical ? "canonical" : "fast", graph ? "true" : "false", seconds);
    }
  header(out, "llm42_engine_pass_tokens_total", "counter",
         "Tokens computed in forward passes, by the lane of their values.");
  fmt::format_to(std::back_inserter(out),
                 "llm42_engine_pass_tokens_total{{lane=\"fast\"}} {}\n"
                 "llm42_engine_pass_tokens_total{{lane=\"canonical\"}} {}\n",
                 es.fast_tokens, es.canonical_tokens);
  sample(out, "llm42_verification_passes_total", "counter",
         "Forward passes that verified speculative windows.", es.verify_passes);
  sample(out, "llm42_verification_pass_tokens_total", "counter",
         "Tokens in verification passes (padding included).", es.verify_pass_tokens);
  sample(out, "llm42_verification_windows_total", "counter", "Speculative windows verified.",
         es.verify.windows_verified);
  sample(out, "llm42_verification_rollbacks_total", "counter",
         "Verified windows that ended in a mismatch.", es.verify.rollbacks);
  sample(out, "llm42_verification_rolled_back_tokens_total", "counter",
         "Speculative tokens discarded by rollbacks.", es.verify.tokens_rolled_back);
  sample(out, "llm42_verification_canonical_decode_tokens_total", "counter",
         "Deterministic tokens committed straight from canonical decode steps.",
         es.verify.canonical_decode_tokens);
  sample(out, "llm42_recompute_rate", "gauge", "Rolled-back tokens per committed output token.",
         number(es.recompute_rate()));
  sample(out, "llm42_engine_requests_aborted_total", "counter",
         "Engine requests aborted (client gone, shutdown).", es.requests_aborted);

  sample(out, "llm42_http_connections", "gauge", "Open client connections.", g.connections);
  sample(out, "llm42_http_requests_in_flight", "gauge",
         "Completion requests admitted and not yet answered.", g.jobs_in_flight);

  ttft_.render(out, "llm42_time_to_first_token_seconds",
               "Time from the request's arrival to its first token.");
  tpot_.render(out, "llm42_time_per_output_token_seconds",
               "Mean time per output token after the first, per request.");
  e2e_.render(out, "llm42_e2e_request_latency_seconds",
              "Time from the request's arrival to its last token.");
  return out;
}

}  // namespace llm42::server
