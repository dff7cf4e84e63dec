// GET /metrics: Prometheus text exposition (format 0.0.4) of the server's own counters and
// latency histograms plus the engine's statistics. The metric names follow vLLM's where one
// exists (prompt/generation tokens, running/waiting, KV cache usage, TTFT/TPOT/e2e) with the
// prefix llm42_; the verification counters are llm42's own. Owned by the event-loop thread:
// nothing here is locked.
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
  // Appends the _bucket, _sum and _count series with HELP and TYPE lines.
  void render(std::string& out, std::string_view name, std::string_view help) const;

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
};

class ServerMetrics {
 public:
  ServerMetrics();

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
  std::map<std::pair<std::string, int>, int64_t> responses_;
  std::map<std::string, int64_t> finished_;
  std::map<std::string, int64_t> rejected_;
  Histogram ttft_, tpot_, e2e_;
};

}  // namespace llm42::server
