// Plots of `llm42 bench` results (the runs its --json writes): throughput, throughput relative
// to `off`, TTFT P99 and the recompute rate against the share of deterministic requests, a
// series per workload and mode. `off` and `global` run every request the same way whatever the
// share, so they are dashed levels without markers over the shares the workload's `dvr` runs
// cover (markers only where a run measured).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/svg_plot.h"

namespace llm42::bench {

// One result file's runs with the name it came from (for error messages).
struct BenchResults {
  std::string source;
  nlohmann::json doc;  // {"runs": [...], "model": ..., "device": ...}
};

// Every run of every file, in order, checked for the fields the plot reads (an error names the
// file, the run and the field); a run with the same workload, mode, deterministic ratio and
// request rate as an earlier one replaces it (so a later rerun wins).
nlohmann::json merge_bench_runs(const std::vector<BenchResults>& files);

// The four panels, from merged runs.
std::vector<PlotPanel> bench_plot_panels(const nlohmann::json& runs);

// The SVG: bench_plot_panels drawn two wide.
std::string plot_bench_runs(const nlohmann::json& runs, const std::string& title);

// Merges `files`, draws them and writes the SVG to `path` (an error names the path); an empty
// title is "llm42 bench: MODEL on DEVICE" of the first file. Returns the number of runs drawn.
size_t write_bench_plot(const std::string& path, const std::vector<BenchResults>& files,
                        std::string title);

}  // namespace llm42::bench
