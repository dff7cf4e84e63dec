#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

#include "server/process_stats.h"

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

// A label value with backslash, double quote and newline escaped (exposition format 0.0.4).
std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

// Request latency buckets in seconds (vLLM's for queue, prefill, decode and e2e times).
std::vector<double> latency_buckets() {
  return {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

// 1, 2, 5, 10, 20, 50, ... up to `max` (vLLM's buckets for prompt and generation lengths).
std::vector<double> one_two_five_buckets(int max) {
  std::vector<double> b;
  for (double decade = 1;; decade *= 10)
    for (double m : {1.0, 2.0, 5.0}) {
      if (m * decade > max) return b;
      b.push_back(m * decade);
    }
}

}  // namespace

std::string engine_stats_line(const EngineStats& before, const EngineStats& now, double seconds) {
  auto rate = [&](int64_t a, int64_t b) {
    return seconds > 0 ? static_cast<double>(b - a) / seconds : 0.0;
  };
  auto percent = [](int64_t part, int64_t whole) {
    return whole > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0;
  };
  return fmt::format(
      "engine: prompt {:.1f} tok/s, generation {:.1f} tok/s, running {}, waiting {}, KV cache "
      "{:.1f}% used, prefix cache hit rate {:.1f}%, rollbacks {}, preemptions {}, "
      "failed: stalled {}, non-finite {}",
      rate(before.prefill_tokens, now.prefill_tokens),
      rate(before.output_tokens, now.output_tokens), now.running, now.waiting,
      percent(now.kv_blocks_used, now.kv_blocks_total),
      percent(now.prefix_cache_hits - before.prefix_cache_hits,
              now.prefix_cache_queries - before.prefix_cache_queries),
      now.verify.rollbacks - before.verify.rollbacks, now.preemptions - before.preemptions,
      now.requests_stalled, now.requests_nonfinite);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                       bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help,
                       std::string_view labels) const {
  header(out, name, "histogram", help);
  const std::string prefix = labels.empty() ? std::string() : fmt::format("{},", labels);
  const std::string own = labels.empty() ? std::string() : fmt::format("{{{}}}", labels);
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    fmt::format_to(std::back_inserter(out), "{}_bucket{{{}le=\"{}\"}} {}\n", name, prefix,
                   number(bounds_[i]), cumulative);
  }
  fmt::format_to(std::back_inserter(out),
                 "{}_bucket{{{}le=\"+Inf\"}} {}\n{}_sum{} {}\n{}_count{} {}\n", name, prefix,
                 count_, name, own, number(sum_), name, own, count_);
}

ServerMetrics::ServerMetrics(std::string model_name, int max_model_len)
    // Bucket bounds as vLLM's, so dashboards built for it read these too.
    : model_label_(fmt::format("model_name=\"{}\"", label_value(model_name))),
      ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
             7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}),
      tpot_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0}),
      e2e_(latency_buckets()),
      queue_(latency_buckets()),
      prefill_(latency_buckets()),
      decode_(latency_buckets()),
      inference_(latency_buckets()),
      prompt_len_(one_two_five_buckets(max_model_len)),
      generation_len_(one_two_five_buckets(max_model_len)) {}

void ServerMetrics::count_response(std::string_view path, int status) {
  static constexpr std::string_view kKnown[] = {"/v1/completions", "/v1/chat/completions",
                                                "/v1/models",      "/health",
                                                "/metrics",        "/tokenize",
                                                "/detokenize",     "/tokenizer_info",
                                                "/v1/tokenize",    "/v1/detokenize"};
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
  queue_.observe(lat.queue);
  if (lat.has_first_token) {
    prefill_.observe(lat.prefill);
    decode_.observe(lat.decode);
    inference_.observe(lat.prefill + lat.decode);
  }
  prompt_len_.observe(lat.prompt_tokens);
  generation_len_.observe(lat.generation_tokens);
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
  header(out, "llm42_engine_requests_failed_total", "counter",
         "Engine requests the engine failed with an error: stalled (no progress for "
         "--max-stalled-steps steps), non_finite (NaN or Inf logits).");
  fmt::format_to(std::back_inserter(out),
                 "llm42_engine_requests_failed_total{{reason=\"stalled\"}} {}\n"
                 "llm42_engine_requests_failed_total{{reason=\"non_finite\"}} {}\n",
                 es.requests_stalled, es.requests_nonfinite);

  sample(out, "llm42_http_connections", "gauge", "Open client connections.", g.connections);
  sample(out, "llm42_http_requests_in_flight", "gauge",
         "Completion requests admitted and not yet answered.", g.jobs_in_flight);

  render_latencies(out, "llm42_", {});
  render_vllm(out, es);
  render_process(out);
  return out;
}

void ServerMetrics::render_latencies(std::string& out, std::string_view prefix,
                                     std::string_view labels) const {
  ttft_.render(out, fmt::format("{}time_to_first_token_seconds", prefix),
               "Time from the request's arrival to its first token.", labels);
  tpot_.render(out, fmt::format("{}time_per_output_token_seconds", prefix),
               "Mean time per output token after the first, per request.", labels);
  e2e_.render(out, fmt::format("{}e2e_request_latency_seconds", prefix),
              "Time from the request's arrival to its last token.", labels);
}

void ServerMetrics::render_vllm(std::string& out, const EngineStats& es) const {
  const std::string_view m = model_label_;
  auto vsample = [&](std::string_view name, std::string_view type, std::string_view help,
                     auto value) {
    header(out, name, type, help);
    fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", name, m, value);
  };
  vsample("vllm:num_requests_running", "gauge", "Sequences running in the engine.", es.running);
  vsample("vllm:num_requests_waiting", "gauge", "Sequences waiting for admission.", es.waiting);
  vsample("vllm:kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks in use (0-1).",
          number(es.kv_blocks_total == 0
                     ? 0.0
                     : static_cast<double>(es.kv_blocks_used) / es.kv_blocks_total));
  vsample("vllm:prefix_cache_queries_total", "counter", "Prefix cache lookups (one per admission).",
          es.prefix_cache_queries);
  vsample("vllm:prefix_cache_hits_total", "counter",
          "Prefix cache lookups that matched at least one block.", es.prefix_cache_hits);
  vsample("vllm:num_preemptions_total", "counter", "Sequences preempted (KV cache full).",
          es.preemptions);
  vsample("vllm:prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
          es.prompt_tokens);
  vsample("vllm:generation_tokens_total", "counter", "Committed output tokens.", es.output_tokens);
  // Aborted requests are counted by the engine, which sees every abort (a client that left, a
  // shutdown), including those whose answer no longer had anyone to go to.
  header(out, "vllm:request_success_total", "counter",
         "Engine requests (one per choice) finished, by finish reason; abort counts every engine "
         "abort.");
  for (const auto& [reason, n] : finished_)
    if (reason != "abort")
      fmt::format_to(std::back_inserter(out),
                     "vllm:request_success_total{{{},finished_reason=\"{}\"}} {}\n", m, reason, n);
  fmt::format_to(std::back_inserter(out),
                 "vllm:request_success_total{{{},finished_reason=\"abort\"}} {}\n", m,
                 es.requests_aborted);
  render_latencies(out, "vllm:", m);
  queue_.render(out, "vllm:request_queue_time_seconds",
                "Time a request waited in the engine before its first admission.", m);
  prefill_.render(out, "vllm:request_prefill_time_seconds",
                  "Time from a request's admission to its first token.", m);
  decode_.render(out, "vllm:request_decode_time_seconds",
                 "Time from a request's first token to its last.", m);
  inference_.render(out, "vllm:request_inference_time_seconds",
                    "Time from a request's admission to its last token.", m);
  prompt_len_.render(out, "vllm:request_prompt_tokens", "Prompt tokens per finished request.", m);
  generation_len_.render(out, "vllm:request_generation_tokens",
                         "Output tokens per finished request.", m);
}

void ServerMetrics::render_process(std::string& out) {
  const ProcessStats p = read_process_stats();
  sample(out, "process_cpu_seconds_total", "counter",
         "CPU time of the process (user + system), seconds.", number(p.cpu_seconds));
  sample(out, "process_resident_memory_bytes", "gauge", "Resident set size, bytes.",
         p.resident_bytes);
  sample(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size, bytes.",
         p.virtual_bytes);
  sample(out, "process_open_fds", "gauge", "File descriptors open.", p.open_fds);
  sample(out, "process_max_fds", "gauge", "File descriptors the process may open (soft limit).",
         p.max_fds);
  sample(out, "process_start_time_seconds", "gauge",
         "When the process started, seconds since the Unix epoch.", number(p.start_time_seconds));
}

}  // namespace llm42::server
