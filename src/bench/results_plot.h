// Plots of `llm42 bench` results (the runs its --json writes): throughput, throughput relative
// to `off`, TTFT P99 and the recompute rate against the share of deterministic requests, a
// series per workload and mode. `off` and `global` run every request the same way whatever the
// share, so they are dashed levels without markers over the shares the workload's `dvr` runs
// cover (markers only where a run measured). Or throughput and its ratio to `off` against the
// tensor-parallel size (each file's), a series per workload, mode and deterministic share.
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

enum class PlotAgainst { kDeterministicShare, kTpSize };

// Every run of every file, in order, checked for the fields the plot reads (an error names the
// file, the run and the field), each given its file's model and tensor_parallel_size (1 where
// absent); a run with the same model, workload, mode, deterministic ratio, request rate and TP
// size as an earlier one replaces it (so a later rerun wins). Labels name the model where the
// runs span several.
nlohmann::json merge_bench_runs(const std::vector<BenchResults>& files);

// The four panels against the deterministic share, from merged runs (a workload's label gains
// "TP n" where the runs span several TP sizes).
std::vector<PlotPanel> bench_plot_panels(const nlohmann::json& runs);

// The two panels against the TP size: total tok/s, and its ratio to off at the same TP size.
std::vector<PlotPanel> bench_tp_panels(const nlohmann::json& runs);

// The SVG: the panels drawn two wide.
std::string plot_bench_runs(const nlohmann::json& runs, const std::string& title,
                            PlotAgainst against = PlotAgainst::kDeterministicShare);

// Merges `files`, draws them and writes the SVG to `path` (an error names the path); an empty
// title is "llm42 bench: MODEL on DEVICE" of the first file. Returns the number of runs drawn.
size_t write_bench_plot(const std::string& path, const std::vector<BenchResults>& files,
                        std::string title,
                        PlotAgainst against = PlotAgainst::kDeterministicShare);

}  // namespace llm42::bench
