// GET /metrics as rendered: vLLM's names with a model_name label beside the llm42_ series
// (queue, prefill and decode time histograms, prompt and generation length histograms, aborted
// requests counted from the engine), the process_* metrics, and the periodic stats line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <map>
#include <sstream>
#include <string>

#include "server/metrics.h"

namespace llm42::server {
namespace {

// "name{labels}" -> value, for every sample line.
std::map<std::string, double> parse(const std::string& text) {
  std::map<std::string, double> m;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    m[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return m;
}

TEST(ServerMetrics, VllmNamesWithTheModelLabel) {
  ServerMetrics metrics("org/m\"1", 1000);
  RequestLatency lat;
  lat.has_first_token = true;
  lat.ttft = 0.2;
  lat.tpot = 0.01;
  lat.e2e = 0.7;
  lat.queue = 0.05;
  lat.prefill = 0.15;
  lat.decode = 0.5;
  lat.prompt_tokens = 30;
  lat.generation_tokens = 51;
  metrics.observe_request(lat, "length");
  metrics.observe_request(RequestLatency{}, "abort");  // a client that saw its abort
  EngineStats es;
  es.running = 2;
  es.waiting = 3;
  es.kv_blocks_used = 25;
  es.kv_blocks_total = 100;
  es.prompt_tokens = 30;
  es.output_tokens = 51;
  es.requests_aborted = 4;  // the engine saw every abort
  es.requests_stalled = 1;
  es.requests_nonfinite = 2;
  const std::string text = metrics.render(es, {});
  const auto m = parse(text);
  const std::string label = "model_name=\"org/m\\\"1\"";
  auto at = [&](const std::string& key) {
    const auto it = m.find(key);
    if (it == m.end()) {
      ADD_FAILURE() << "no sample " << key;
      return -1.0;
    }
    return it->second;
  };
  EXPECT_EQ(at("vllm:num_requests_running{" + label + "}"), 2);
  EXPECT_EQ(at("vllm:num_requests_waiting{" + label + "}"), 3);
  EXPECT_EQ(at("vllm:kv_cache_usage_perc{" + label + "}"), 0.25);
  EXPECT_EQ(at("vllm:prompt_tokens_total{" + label + "}"), 30);
  EXPECT_EQ(at("vllm:generation_tokens_total{" + label + "}"), 51);
  EXPECT_EQ(at("vllm:request_success_total{" + label + ",finished_reason=\"length\"}"), 1);
  EXPECT_EQ(at("vllm:request_success_total{" + label + ",finished_reason=\"abort\"}"), 4);
  EXPECT_EQ(at("llm42_engine_requests_failed_total{reason=\"stalled\"}"), 1);
  EXPECT_EQ(at("llm42_engine_requests_failed_total{reason=\"non_finite\"}"), 2);
  // Histograms: one observation each, in the right bucket.
  EXPECT_EQ(at("vllm:request_queue_time_seconds_count{" + label + "}"), 2);
  EXPECT_EQ(at("vllm:request_queue_time_seconds_sum{" + label + "}"), 0.05);
  EXPECT_EQ(at("vllm:request_prefill_time_seconds_bucket{" + label + ",le=\"0.3\"}"), 1);
  EXPECT_EQ(at("vllm:request_decode_time_seconds_bucket{" + label + ",le=\"0.3\"}"), 0);
  EXPECT_EQ(at("vllm:request_decode_time_seconds_bucket{" + label + ",le=\"0.5\"}"), 1);
  EXPECT_NEAR(at("vllm:request_inference_time_seconds_sum{" + label + "}"), 0.65, 1e-12);
  EXPECT_EQ(at("vllm:request_prompt_tokens_bucket{" + label + ",le=\"50\"}"), 2);
  EXPECT_EQ(at("vllm:request_generation_tokens_bucket{" + label + ",le=\"50\"}"), 1);
  EXPECT_EQ(at("vllm:request_generation_tokens_bucket{" + label + ",le=\"100\"}"), 2);
  EXPECT_EQ(at("vllm:request_generation_tokens_bucket{" + label + ",le=\"+Inf\"}"), 2);
  EXPECT_EQ(m.count("vllm:request_prompt_tokens_bucket{" + label + ",le=\"2000\"}"), 0u)
      << "length buckets stop at max_model_len";
  EXPECT_EQ(at("vllm:time_to_first_token_seconds_count{" + label + "}"), 1);
  EXPECT_EQ(at("vllm:e2e_request_latency_seconds_count{" + label + "}"), 2);
  // The llm42_ series are unchanged.
  EXPECT_EQ(at("llm42_num_requests_running"), 2);
  EXPECT_EQ(at("llm42_time_to_first_token_seconds_count"), 1);
  EXPECT_NE(text.find("# TYPE vllm:request_queue_time_seconds histogram"), std::string::npos);
}

TEST(ServerMetrics, ProcessMetricsAsPrometheusClientsExportThem) {
  const auto m = parse(ServerMetrics("m", 100).render(EngineStats{}, {}));
  ASSERT_TRUE(m.count("process_cpu_seconds_total"));
  EXPECT_GE(m.at("process_cpu_seconds_total"), 0);
  EXPECT_GT(m.at("process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(m.at("process_virtual_memory_bytes"), m.at("process_resident_memory_bytes"));
  EXPECT_GE(m.at("process_open_fds"), 3);  // stdin, stdout, stderr at least
  EXPECT_GE(m.at("process_max_fds"), m.at("process_open_fds"));
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(m.at("process_start_time_seconds"), now + 1);
  EXPECT_GT(m.at("process_start_time_seconds"), now - 86400) << "started over a day ago?";
}

TEST(ServerMetrics, StatsLine) {
  EngineStats a, b;
  a.prefill_tokens = 100;
  b.prefill_tokens = 600;
  a.output_tokens = 10;
  b.output_tokens = 60;
  b.running = 3;
  b.waiting = 1;
  b.kv_blocks_used = 1;
  b.kv_blocks_total = 8;
  b.prefix_cache_queries = 4;
  b.prefix_cache_hits = 1;
  b.verify.rollbacks = 2;
  b.requests_stalled = 1;
  const std::string line = engine_stats_line(a, b, 10.0);
  EXPECT_NE(line.find("prompt 50.0 tok/s, generation 5.0 tok/s, running 3, waiting 1, KV cache "
                      "12.5% used, prefix cache hit rate 25.0%, rollbacks 2"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("stalled 1"), std::string::npos) << line;
}

}  // namespace
}  // namespace llm42::server
