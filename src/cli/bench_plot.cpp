// llm42 bench plot: draws earlier `llm42 bench --json` results as one SVG
// (src/bench/results_plot.h, docs/benchmarks.md).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench/results_plot.h"
#include "cli/commands.h"
#include "util/error.h"

namespace llm42::cli {
namespace {

struct PlotOptions {
  std::string out;
  std::string title;
  std::string against = "share";
  std::vector<std::string> inputs;
};

int run_plot(const PlotOptions& o) {
  std::vector<bench::BenchResults> files;
  for (const std::string& path : o.inputs) {
    std::ifstream in(path);
    if (!in) fail("bench plot: {}: cannot open", path);
    bench::BenchResults f{path, {}};
    try {
      f.doc = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      fail("bench plot: {}: not JSON: {}", path, e.what());
    }
    files.push_back(std::move(f));
  }
  const size_t n_runs = bench::write_bench_plot(
      o.out, files, o.title,
      o.against == "tp" ? bench::PlotAgainst::kTpSize : bench::PlotAgainst::kDeterministicShare);
  std::printf("plotted %zu runs from %zu files into %s\n", n_runs, files.size(), o.out.c_str());
  return 0;
}

}  // namespace

void register_bench_plot(CLI::App& bench) {
  auto o = std::make_shared<PlotOptions>();
  CLI::App* sub = bench.add_subcommand(
      "plot",
      "Draw `llm42 bench --json` results (throughput, ratio to off, TTFT P99, recompute "
      "rate against the deterministic share, or throughput against the TP size) as an SVG");
  sub->add_option("--out", o->out, "The SVG to write")->required();
  sub->add_option("--title", o->title, "Title (default: the first file's model and device)");
  sub->add_option("--against", o->against,
                  "The x axis: share (the deterministic share: throughput, ratio to off, TTFT "
                  "P99, recompute rate) or tp (the tensor-parallel size of each file's runs: "
                  "throughput and ratio to off)")
      ->check(CLI::IsMember({"share", "tp"}))
      ->capture_default_str();
  sub->add_option("results", o->inputs,
                  "Result files; a later file's run replaces an earlier one of the same "
                  "model, workload, mode, ratio, request rate and TP size")
      ->required()
      ->check(CLI::ExistingFile);
  bind(*sub, [o] { return run_plot(*o); });
}

}  // namespace llm42::cli
