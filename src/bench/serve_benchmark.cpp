#include "bench/serve_benchmark.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "bench/svg_plot.h"
#include "bench/workload.h"
#include "client/completion_client.h"
#include "client/http_client.h"
#include "util/error.h"
#include "util/percentile.h"
#include "util/timer.h"

namespace llm42::bench {
namespace {

using json = nlohmann::json;

struct Record {
  client::CompletionResult r;
  int prompt_tokens = 0;
};

struct Stats {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};

Stats stats_of(const std::vector<double>& v) {
  return {llm42::mean(v), percentile(v, 50), percentile(v, 90), percentile(v, 99)};
}

json stats_json(const Stats& s) {
  return {{"mean", s.mean}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}};
}

std::string rate_name(double qps) { return std::isfinite(qps) ? fmt::format("{:g}", qps) : "inf"; }

// Bounds the requests in flight (--max-concurrency); n <= 0: no bound.
class Slots {
 public:
  explicit Slots(int n) : free_(n), bounded_(n > 0) {}
  void acquire() {
    if (!bounded_) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() {
    if (!bounded_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
  bool bounded_;
};

json run_rate(const client::Url& url, const BenchServeOptions& o, const std::string& model,
              const std::vector<WorkloadItem>& items, double qps) {
  std::mt19937_64 rng(o.seed + 17);
  std::exponential_distribution<double> gap(std::isfinite(qps) ? qps : 1.0);
  std::vector<double> offsets;
  double t = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    offsets.push_back(t);
    if (std::isfinite(qps)) t += gap(rng);
  }
  std::vector<Record> records(items.size());
  Slots slots(o.max_concurrency);
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  const double start = now_seconds();
  for (size_t i = 0; i < items.size(); ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::duration<double>(offsets[i]));
    slots.acquire();
    threads.emplace_back([&, i] {
      const WorkloadItem& it = items[i];
      const json body = {{"model", model},
                         {"prompt", it.prompt},
                         {"max_tokens", it.max_tokens},
                         {"ignore_eos", true},
                         {"temperature", 0.0},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}},
                         {"return_token_ids", true},
                         {"deterministic", it.deterministic}};
      client::HttpClient client(url);
      records[i].prompt_tokens = static_cast<int>(it.prompt.size());
      records[i].r = client::complete(client, body, o.api_key);
      slots.release();
    });
  }
  for (std::thread& th : threads) th.join();
  double end = start;
  std::vector<double> ttft, tpot, itl, e2e;
  int completed = 0, failed = 0;
  int64_t in_tokens = 0, out_tokens = 0;
  std::string first_error;
  for (const Record& rec : records) {
    const client::CompletionResult& r = rec.r;
    end = std::max(end, r.end);
    if (!r.ok || r.token_times.empty()) {
      ++failed;
      if (first_error.empty()) first_error = r.ok ? "no tokens received" : r.error;
      continue;
    }
    ++completed;
    in_tokens += rec.prompt_tokens;
    out_tokens += r.completion_tokens;
    const double first = r.token_times.front() - r.start;
    ttft.push_back(first * 1e3);
    e2e.push_back((r.end - r.start) * 1e3);
    if (r.completion_tokens > 1)
      tpot.push_back((r.token_times.back() - r.token_times.front()) / (r.completion_tokens - 1) *
                     1e3);
    for (size_t k = 1; k < r.token_times.size(); ++k)
      itl.push_back((r.token_times[k] - r.token_times[k - 1]) * 1e3);
  }
  const double duration = end - start;
  json res = {{"request_rate", std::isfinite(qps) ? json(qps) : json("inf")},
              {"completed", completed},
              {"failed", failed},
              {"duration_s", duration},
              {"input_tokens", in_tokens},
              {"output_tokens", out_tokens},
              {"request_throughput", duration > 0 ? completed / duration : 0.0},
              {"output_throughput", duration > 0 ? static_cast<double>(out_tokens) / duration : 0.0},
              {"total_token_throughput",
               duration > 0 ? static_cast<double>(in_tokens + out_tokens) / duration : 0.0},
              {"ttft_ms", stats_json(stats_of(ttft))},
              {"tpot_ms", stats_json(stats_of(tpot))},
              {"itl_ms", stats_json(stats_of(itl))},
              {"e2e_ms", stats_json(stats_of(e2e))}};
  if (!first_error.empty()) res["first_error"] = first_error;
  return res;
}

void print_result(const json& r, const std::string& label) {
  const double qps = r["request_rate"].is_number() ? r["request_rate"].get<double>() : INFINITY;
  std::printf("\n== request rate %s req/s%s ==\n", rate_name(qps).c_str(),
              label.empty() ? "" : fmt::format(" ({})", label).c_str());
  std::printf("%-22s %d (failed %d)\n", "requests completed", r["completed"].get<int>(),
              r["failed"].get<int>());
  if (r.contains("first_error"))
    std::printf("%-22s %s\n", "first error", r["first_error"].get<std::string>().c_str());
  std::printf("%-22s %.2f s\n", "duration", r["duration_s"].get<double>());
  std::printf("%-22s %.2f req/s, %.1f output tok/s, %.1f total tok/s\n", "throughput",
              r["request_throughput"].get<double>(), r["output_throughput"].get<double>(),
              r["total_token_throughput"].get<double>());
  std::printf("%-22s %10s %10s %10s %10s\n", "latency (ms)", "mean", "P50", "P90", "P99");
  for (const char* key : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    const json& s = r[key];
    std::string name(key);
    name = name.substr(0, name.size() - 3);
    for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::printf("%-22s %10.2f %10.2f %10.2f %10.2f\n", name.c_str(), s["mean"].get<double>(),
                s["p50"].get<double>(), s["p90"].get<double>(), s["p99"].get<double>());
  }
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("--plot input {}: cannot open", path);
  try {
    return json::parse(in);
  } catch (const std::exception& e) {
    fail("--plot input {}: not JSON: {}", path, e.what());
  }
}

// Latency against request rate: one series per result file (named by its label).
void write_plot(const std::string& path, const std::vector<json>& runs) {
  struct Metric {
    const char* title;
    const char* key;
    const char* stat;
    double scale;
    const char* unit;
  };
  const Metric metrics[] = {{"TTFT P50", "ttft_ms", "p50", 1, "ms"},
                            {"TTFT P99", "ttft_ms", "p99", 1, "ms"},
                            {"TPOT P50", "tpot_ms", "p50", 1, "ms"},
                            {"TPOT P99", "tpot_ms", "p99", 1, "ms"},
                            {"End-to-end P50", "e2e_ms", "p50", 1e-3, "s"},
                            {"Output throughput", "", "", 1, "tok/s"}};
  std::vector<PlotPanel> panels;
  for (const Metric& m : metrics) {
    PlotPanel p{m.title, "request rate (req/s)", m.unit, {}};
    for (size_t k = 0; k < runs.size(); ++k) {
      const json& run = runs[k];
      PlotSeries s{run.value("label", std::string()), {}};
      if (s.label.empty()) s.label = fmt::format("run {}", k + 1);
      for (const json& r : run["results"]) {
        if (!r["request_rate"].is_number()) continue;  // "inf" has no place on the axis
        const double y = m.key[0] == '\0' ? r["output_throughput"].get<double>()
                                          : r[m.key][m.stat].get<double>() * m.scale;
        s.points.emplace_back(r["request_rate"].get<double>(), y);
      }
      p.series.push_back(std::move(s));
    }
    panels.push_back(std::move(p));
  }
  std::string title = "llm42 bench serve";
  if (!runs.empty() && runs.front().contains("workload"))
    title += ": " + runs.front()["workload"].get<std::string>();
  std::ofstream out(path);
  if (!out) fail("--plot {}: cannot write", path);
  out << render_svg(title, panels, 3);
}

}  // namespace

int run_bench_serve(const BenchServeOptions& o) {
  std::vector<json> runs;
  for (const std::string& p : o.plot_inputs) runs.push_back(read_json(p));
  if (!o.url.empty()) {
    const client::Url url = client::Url::parse(o.url);
    const json card = client::first_served_model(url, o.api_key);
    const std::string model = o.model.empty() ? card["id"].get<std::string>() : o.model;
    const int max_len = card.value("max_model_len", 4096);
    const int vocab = o.vocab_size > 0 ? o.vocab_size : card.value("vocab_size", 32000);
    const std::vector<WorkloadItem> items =
        make_workload(o.workload, o.num_prompts, vocab, max_len, o.deterministic_ratio, o.seed);
    std::printf("llm42 bench serve: %s, model %s\nworkload %s (%s), %d prompts, "
                "deterministic ratio %g, lengths capped at %d tokens\n",
                url.str().c_str(), model.c_str(), o.workload.c_str(),
                describe_workload(o.workload).c_str(), o.num_prompts, o.deterministic_ratio,
                max_len);
    json results = json::array();
    for (double qps : o.qps) {
      json r = run_rate(url, o, model, items, qps);
      print_result(r, o.label);
      results.push_back(std::move(r));
    }
    json run = {{"label", o.label.empty() ? model : o.label},
                {"url", url.str()},
                {"model", model},
                {"workload", o.workload},
                {"workload_description", describe_workload(o.workload)},
                {"num_prompts", o.num_prompts},
                {"deterministic_ratio", o.deterministic_ratio},
                {"results", std::move(results)}};
    if (!o.json_out.empty()) {
      std::ofstream f(o.json_out);
      if (!f) fail("--json {}: cannot write", o.json_out);
      f << run.dump(2) << "\n";
    }
    runs.insert(runs.begin(), std::move(run));
  }
  if (!o.plot_out.empty()) {
    if (runs.empty()) fail("--plot needs --url or result files to draw");
    write_plot(o.plot_out, runs);
    std::printf("\nplot written to %s\n", o.plot_out.c_str());
  }
  return 0;
}

}  // namespace llm42::bench
