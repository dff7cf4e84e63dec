// GET /metrics: Prometheus text exposition (format 0.0.4) of the server's own counters and
// latency histograms plus the engine's statistics. The llm42_ metrics follow vLLM's names where
// one exists (prompt/generation tokens, running/waiting, KV cache usage, TTFT/TPOT/e2e); where
// the concept is the same, the series is also exported under vLLM's own name (vllm:..., with a
// model_name label), so dashboards built for vLLM read llm42; the verification counters are
// llm42's own; process_* are the process's resource use as Prometheus clients export them.
// Owned by the event-loop thread: nothing here is locked.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/engine.h"

namespace llm42::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Appends the _bucket, _sum and _count series with HELP and TYPE lines; `labels` (e.g.
  // `model_name="m"`) go on every series.
  void render(std::string& out, std::string_view name, std::string_view help,
              std::string_view labels = {}) const;

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

struct RequestLatency {
  double ttft = 0;  // seconds from the request's arrival to its first token
  double tpot = 0;  // seconds per output token after the first (0 with fewer than 2 tokens)
  double e2e = 0;   // arrival to the last output
  bool has_first_token = false;
  // In the engine: waiting for admission, then admission to the first token (prefill), then
  // the first token to the last (decode).
  double queue = 0, prefill = 0, decode = 0;
  int prompt_tokens = 0, generation_tokens = 0;
};

// The periodic engine stats line of the server log (--log-stats-interval): throughput over the
// `seconds` between two snapshots of the engine's statistics, and the engine's state now.
std::string engine_stats_line(const EngineStats& before, const EngineStats& now, double seconds);

class ServerMetrics {
 public:
  // `model_name`: the model_name label of the vllm: series; `max_model_len` bounds the
  // prompt and generation length histograms.
  ServerMetrics(std::string model_name, int max_model_len);

  // Every answered HTTP request. Unknown paths are counted as endpoint "other", so that no
  // client can grow the label set.
  void count_response(std::string_view path, int status);
  // Every finished engine request (one per choice).
  void observe_request(const RequestLatency& lat, std::string_view finish_reason);
  void count_rejected(std::string_view reason);

  struct Gauges {
    int connections = 0;
    int jobs_in_flight = 0;  // HTTP requests admitted and not yet answered
  };
  std::string render(const EngineStats& engine, const Gauges& gauges) const;

 private:
  // TTFT, TPOT and e2e latency histograms, named with `prefix` (llm42_ or vllm:).
  void render_latencies(std::string& out, std::string_view prefix, std::string_view labels) const;
  // The series under vLLM's names, and the process_* ones.
  void render_vllm(std::string& out, const EngineStats& es) const;
  static void render_process(std::string& out);

  std::map<std::pair<std::string, int>, int64_t> responses_;
  std::map<std::string, int64_t> finished_;
  std::map<std::string, int64_t> rejected_;
  std::string model_label_;  // model_name="...", escaped
  Histogram ttft_, tpot_, e2e_;
  Histogram queue_, prefill_, decode_, inference_;
  Histogram prompt_len_, generation_len_;
};

}  // namespace llm42::server
