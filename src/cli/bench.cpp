// llm42 bench: drives the engine in-process with synthetic workloads and reports throughput,
// latency percentiles and the verifier's cost. Sweeps over comma-separated lists of modes,
// deterministic ratios and workloads; prints a table and writes JSON.
#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/progress_bar.h"
#include "bench/results_plot.h"
#include "bench/workload.h"
#include "bench/workload_cost.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "core/version.h"
#include "engine/engine.h"
#include "util/error.h"
#include "util/percentile.h"
#include "util/timer.h"

namespace llm42::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  EngineOptions engine;
  std::string modes = "dvr";
  std::string ratios = "0";
  std::string workloads = "fixed:1024,256";
  int num_prompts = 64;
  double request_rate = 0;  // 0 = all at once (offline throughput)
  uint64_t seed = 0;
  std::string json_out;
  std::string plot_out;
  bool progress = true;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    // "fixed:1024,256" contains a comma: glue the output length back on.
    if (!out.empty() && out.back().rfind("fixed:", 0) == 0 &&
        out.back().find(',') == std::string::npos) {
      out.back() += "," + item;
    } else {
      out.push_back(item);
    }
  }
  return out;
}

struct RunResult {
  nlohmann::json json;
  std::string row;
};

struct Latencies {
  std::vector<double> ttft, tpot, e2e;
};

nlohmann::json summarize(const std::vector<double>& v) {
  return {{"mean", mean(v)},
          {"p50", percentile(v, 50)},
          {"p90", percentile(v, 90)},
          {"p99", percentile(v, 99)}};
}

// EngineStats::pass_profile as rows: lane, graph or eager, tokens per pass up to a power of two.
nlohmann::json pass_profile_json(const EngineStats& st) {
  nlohmann::json rows = nlohmann::json::array();
  for (int canonical : {0, 1})
    for (int graph : {0, 1})
      for (int c = 0; c < PassProfile::kSizeClasses; ++c) {
        const PassTime& t = st.pass_profile.by[canonical][graph][c];
        if (t.passes == 0) continue;
        rows.push_back({{"schedule", canonical ? "canonical" : "fast"},
                        {"graph", graph == 1},
                        {"tokens_up_to", int64_t{1} << c},
                        {"passes", t.passes},
                        {"tokens", t.tokens},
                        {"seconds", t.seconds}});
      }
  return rows;
}

// The result document --json writes and --plot draws.
nlohmann::json results_doc(const LoadedModel& lm, const nlohmann::json& runs) {
  return {{"llm42_version", kVersion},
          {"model", lm.name},
          {"device", lm.backend().kernel_id()},
          {"tensor_parallel_size", lm.model->tp_size()},
          {"runs", runs}};
}

void write_json(const std::string& path, const LoadedModel& lm, const nlohmann::json& runs) {
  std::ofstream out(path);
  if (!out) fail("--json {}: cannot write", path);
  out << results_doc(lm, runs).dump(2) << "\n";
}

RunResult run_one(const BenchOptions& o, LoadedModel& lm, const std::string& mode, double ratio,
                  const std::string& workload) {
  EngineOptions eo = o.engine;
  eo.mode = mode;
  const EngineConfig config = eo.resolve();
  Engine engine(*lm.model, config, nullptr);
  const auto items = bench::make_workload(workload, o.num_prompts, lm.model->config().vocab_size,
                                          engine.max_seq_len(), ratio, o.seed);
  // Arrival times: all at t = 0, or a Poisson process at request_rate.
  std::vector<double> arrival(items.size(), 0.0);
  if (o.request_rate > 0) {
    std::mt19937_64 rng(o.seed + 1);
    std::exponential_distribution<double> gap(o.request_rate);
    double t = 0;
    for (double& a : arrival) a = t += gap(rng);
  }
  struct Track {
    double arrival = 0, first = 0, end = 0;
    int prompt = 0, out = 0;
  };
  std::vector<Track> track(items.size());
  size_t finished = 0, next = 0;
  bench::Progress progress;
  progress.requests_total = items.size();
  for (const auto& item : items) progress.tokens_total += item.max_tokens;
  const bool draw = bench::progress_on_terminal(o.progress, STDERR_FILENO);
  const double t0 = now_seconds();
  double last_progress = 0;
  while (finished < items.size()) {
    const double now = now_seconds() - t0;
    while (next < items.size() && arrival[next] <= now) {
      Request r;
      r.prompt = items[next].prompt;
      r.max_tokens = items[next].max_tokens;
      r.deterministic = items[next].deterministic;
      r.ignore_eos = true;
      r.detokenize = false;
      r.sampling.temperature = 0.0f;
      track[next].arrival = t0 + arrival[next];
      track[next].prompt = static_cast<int>(r.prompt.size());
      engine.add_request(std::move(r), [&, i = next](RequestOutput&& out) {
        Track& t = track[i];
        if (t.first == 0 && !out.tokens.empty()) t.first = now_seconds();
        t.out = out.completion_tokens;
        progress.tokens_done += static_cast<int64_t>(out.tokens.size());
        if (out.finished) {
          t.end = now_seconds();
          ++finished;
        }
      });
      ++next;
    }
    if (!engine.step() && next < items.size()) {
      // Idle until the next arrival.
      const double wait = arrival[next] - (now_seconds() - t0);
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
    if (draw && now_seconds() - last_progress > 0.5) {
      last_progress = now_seconds();
      progress.requests_done = finished;
      progress.seconds = last_progress - t0;
      std::fprintf(stderr, "\r  %s", bench::progress_line(progress).c_str());
      std::fflush(stderr);
    }
  }
  const double duration = now_seconds() - t0;
  if (draw) std::fprintf(stderr, "\r%100s\r", "");

  Latencies lat;
  int64_t prompt_tokens = 0, output_tokens = 0;
  for (const Track& t : track) {
    prompt_tokens += t.prompt;
    output_tokens += t.out;
    lat.ttft.push_back(t.first - t.arrival);
    lat.e2e.push_back(t.end - t.arrival);
    if (t.out > 1) lat.tpot.push_back((t.end - t.first) / (t.out - 1));
  }
  std::vector<bench::RequestLengths> lengths;
  for (const Track& t : track) lengths.push_back({t.prompt, t.out});
  const bench::WorkloadCost work = bench::workload_cost(
      lm.model->config(), static_cast<int>(dtype_size(lm.backend().activation_dtype())), lengths);
  const EngineStats st = engine.stats();
  const double total_tps = static_cast<double>(prompt_tokens + output_tokens) / duration;
  const double out_tps = static_cast<double>(output_tokens) / duration;
  RunResult r;
  r.json = {{"mode", mode},
            {"deterministic_ratio", ratio},
            {"workload", workload},
            {"workload_description", bench::describe_workload(workload)},
            {"num_prompts", items.size()},
            {"request_rate", o.request_rate},
            {"duration_s", duration},
            {"prompt_tokens", prompt_tokens},
            {"output_tokens", output_tokens},
            {"total_tokens_per_s", total_tps},
            {"output_tokens_per_s", out_tps},
            {"ttft_s", summarize(lat.ttft)},
            {"tpot_s", summarize(lat.tpot)},
            {"e2e_s", summarize(lat.e2e)},
            {"recompute_rate", st.recompute_rate()},
            {"windows_verified", st.verify.windows_verified},
            {"rollbacks", st.verify.rollbacks},
            {"tokens_rolled_back", st.verify.tokens_rolled_back},
            {"verify_passes", st.verify_passes},
            {"verify_pass_tokens", st.verify_pass_tokens},
            {"canonical_decode_tokens", st.verify.canonical_decode_tokens},
            {"fast_passes", st.fast_passes},
            {"canonical_passes", st.canonical_passes},
            {"mixed_passes", st.mixed_passes},
            {"fast_tokens", st.fast_tokens},
            {"canonical_tokens", st.canonical_tokens},
            {"preemptions", st.preemptions},
            {"admission_reserve", config.admission_reserve},
            {"admission_reserve_ratio", st.admission_reserve_ratio},
            {"graph_passes", st.graph_passes},
            {"graph_captures", st.graph_captures},
            {"engine_steps", st.steps},
            {"step_schedule_s", st.schedule_s},
            {"step_pass_s", st.pass_s},
            {"pass_profile", pass_profile_json(st)},
            {"step_other_s", st.other_s},
            {"cuda_graph_max_batch", config.cuda_graph_max_batch},
            {"tp_cuda_graphs", config.tp_cuda_graphs},
            {"kv_cache_tokens", static_cast<int64_t>(engine.num_kv_blocks()) * config.block_size},
            {"window", config.window},
            {"group", config.group},
            {"verify_schedule", verify_mode_name(config.verify_schedule)},
            // What serving the workload once costs (bench/workload_cost.h), and the weights a
            // step streams: bench/roofline_budget.py sets them against the device's ceilings.
            {"work", bench::workload_cost_json(
                         work, static_cast<double>(lm.model->bytes_per_decode_step()))}};
  r.row = fmt::format(
      "{:<7} {:>5.2f} {:<16} {:>9.1f} {:>9.1f} {:>8.1f} {:>8.1f} {:>8.1f} {:>8.1f} {:>8.2f} "
      "{:>8.2f} {:>8.2f} {:>7.4f} {:>7} {:>6.1f} {:>7}",
      mode, ratio, workload, total_tps, out_tps, percentile(lat.ttft, 50) * 1e3,
      percentile(lat.ttft, 99) * 1e3, percentile(lat.tpot, 50) * 1e3,
      percentile(lat.tpot, 99) * 1e3, percentile(lat.e2e, 50),
      percentile(lat.e2e, 90), percentile(lat.e2e, 99), st.recompute_rate(), st.verify_passes,
      100.0 * static_cast<double>(st.graph_passes) /
          static_cast<double>(std::max<int64_t>(1, st.fast_passes + st.canonical_passes)),
      st.preemptions);
  return r;
}

int run(const BenchOptions& o) {
  // Parsed before the model loads, so that a bad ratio fails at once.
  std::vector<double> ratios;
  for (const std::string& ratio_s : split(o.ratios)) {
    double ratio = 0;
    try {
      ratio = std::stod(ratio_s);
    } catch (const std::exception&) {
      fail("--deterministic-ratio '{}': not a number", ratio_s);
    }
    if (ratio < 0 || ratio > 1) fail("--deterministic-ratio {}: must be in [0, 1]", ratio);
    ratios.push_back(ratio);
  }
  if (!o.plot_out.empty() && !std::ofstream(o.plot_out))  // before the sweep, not after it
    fail("--plot {}: cannot write", o.plot_out);
  const EngineConfig probe = o.engine.resolve();
  LoadedModel lm = load_model(o.model, max_pass_tokens(probe), max_logit_rows(probe));
  std::printf("llm42 bench: %s on %s, %d prompts, request rate %s\n", lm.name.c_str(),
              lm.backend().kernel_id().c_str(), o.num_prompts,
              o.request_rate > 0 ? fmt::format("{}/s", o.request_rate).c_str() : "inf (offline)");
  std::printf("%-7s %5s %-16s %9s %9s %8s %8s %8s %8s %8s %8s %8s %7s %7s %6s %7s\n", "mode",
              "det", "workload", "total/s", "out/s", "ttft50ms", "ttft99ms", "tpot50ms",
              "tpot99ms", "e2e50s", "e2e90s", "e2e99s", "recomp", "vpasses", "graph%", "preempt");
  nlohmann::json runs = nlohmann::json::array();
  for (const std::string& workload : split(o.workloads)) {
    for (const std::string& mode : split(o.modes)) {
      // off and global run every request the same way whatever the ratio: once is enough.
      const size_t n_ratios = mode == "dvr" ? ratios.size() : std::min<size_t>(1, ratios.size());
      for (size_t i = 0; i < n_ratios; ++i) {
        RunResult r = run_one(o, lm, mode, ratios[i], workload);
        std::printf("%s\n", r.row.c_str());
        std::fflush(stdout);
        runs.push_back(std::move(r.json));
        // Rewritten after every run, so that an interrupted sweep keeps what it measured.
        if (!o.json_out.empty()) write_json(o.json_out, lm, runs);
      }
    }
  }
  if (!o.json_out.empty()) std::printf("wrote %s\n", o.json_out.c_str());
  if (!o.plot_out.empty()) {
    bench::write_bench_plot(o.plot_out, {{"this run", results_doc(lm, runs)}}, "");
    std::printf("plot written to %s\n", o.plot_out.c_str());
  }
  return 0;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* sub = app.add_subcommand(
      "bench", "Benchmark the engine in-process (or, with `bench serve`, a running server)");
  add_model_options(*sub, o->model);
  add_engine_options(*sub, o->engine);
  sub->add_option("--modes", o->modes, "Determinism modes to run, comma-separated")
      ->capture_default_str();
  sub->add_option("--deterministic-ratio", o->ratios,
                  "Fractions of deterministic requests, comma-separated")
      ->capture_default_str();
  sub->add_option("--workload", o->workloads,
                  "fixed:IN,OUT, sharegpt or arxiv; several separated by commas")
      ->capture_default_str();
  sub->add_option("--num-prompts", o->num_prompts)->capture_default_str();
  sub->add_option("--request-rate", o->request_rate,
                  "Poisson arrivals per second (0 = all at once: offline throughput)")
      ->capture_default_str();
  sub->add_option("--seed", o->seed, "Workload seed")->capture_default_str();
  sub->add_option("--json", o->json_out, "Write results as JSON to this file");
  sub->add_option("--plot", o->plot_out,
                  "Write an SVG of the sweep (throughput, ratio to off, TTFT P99, recompute rate "
                  "against the deterministic share; `llm42 bench plot` draws saved results)");
  sub->add_flag("!--no-progress", o->progress,
                "No progress bar on stderr (there is none when stderr is not a terminal)");
  // `--model` is required for the in-process benchmark but not for `bench serve`.
  sub->require_subcommand(0, 1);
  register_bench_serve(*sub);
  register_bench_plot(*sub);
  register_bench_work(*sub);
  bind(*sub, [o] { return run(*o); });
}

}  // namespace llm42::cli
