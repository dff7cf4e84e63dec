// `llm42 bench plot`: merging result files, the panels' points, and errors that name the file,
// the run and the field.
#include "bench/results_plot.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/error.h"

namespace llm42::bench {
namespace {

using nlohmann::json;

json run(const std::string& mode, double ratio, double tps,
         const std::string& workload = "sharegpt", double ttft99 = 2.0, double recompute = 0.0) {
  return {{"mode", mode},
          {"deterministic_ratio", ratio},
          {"workload", workload},
          {"request_rate", 0.0},
          {"total_tokens_per_s", tps},
          {"ttft_s", {{"p50", 1.0}, {"p99", ttft99}}},
          {"recompute_rate", recompute}};
}

BenchResults file(const std::string& name, std::vector<json> runs) {
  return {name, {{"model", "dummy:m"}, {"device", "cpu"}, {"runs", runs}}};
}

BenchResults file_at_tp(const std::string& name, int tp, std::vector<json> runs) {
  BenchResults f = file(name, std::move(runs));
  f.doc["tensor_parallel_size"] = tp;
  return f;
}

const PlotSeries& series(const PlotPanel& p, const std::string& label) {
  for (const PlotSeries& s : p.series)
    if (s.label == label) return s;
  ADD_FAILURE() << "no series '" << label << "' in panel " << p.title;
  static const PlotSeries none;
  return none;
}

TEST(BenchPlot, PanelsFromMergedFiles) {
  // off / global / dvr 10 % in one file, dvr 2 % and 100 % (and a rerun of 10 %) in another.
  const json runs = merge_bench_runs(
      {file("a.json", {run("off", 0.1, 1000), run("global", 0.1, 900), run("dvr", 0.1, 940)}),
       file("b.json", {run("dvr", 1.0, 920, "sharegpt", 3.0, 0.25), run("dvr", 0.02, 960),
                       run("dvr", 0.1, 950)})});
  ASSERT_EQ(runs.size(), 5u);  // the rerun of dvr 10 % replaced the first
  const std::vector<PlotPanel> panels = bench_plot_panels(runs);
  ASSERT_EQ(panels.size(), 4u);
  const PlotSeries& dvr = series(panels[0], "dvr");
  ASSERT_EQ(dvr.points.size(), 3u);  // sorted by share
  EXPECT_DOUBLE_EQ(dvr.points[0].first, 2.0);
  EXPECT_DOUBLE_EQ(dvr.points[1].second, 950.0);
  EXPECT_DOUBLE_EQ(dvr.points[2].first, 100.0);
  // off and global: flat over the shares the dvr runs cover.
  const PlotSeries& off = series(panels[0], "off");
  ASSERT_EQ(off.points.size(), 2u);
  EXPECT_DOUBLE_EQ(off.points[0].first, 2.0);
  EXPECT_DOUBLE_EQ(off.points[1].first, 100.0);
  EXPECT_DOUBLE_EQ(off.points[1].second, 1000.0);
  // Relative to off.
  EXPECT_DOUBLE_EQ(series(panels[1], "global").points[0].second, 0.9);
  EXPECT_DOUBLE_EQ(series(panels[1], "dvr").points[1].second, 0.95);
  EXPECT_DOUBLE_EQ(series(panels[1], "off").points[0].second, 1.0);
  EXPECT_DOUBLE_EQ(series(panels[2], "dvr").points[2].second, 3.0);   // TTFT P99
  EXPECT_DOUBLE_EQ(series(panels[3], "dvr").points[2].second, 0.25);  // recompute rate
  EXPECT_EQ(panels[3].series.size(), 1u);                             // dvr only

  const std::string svg = plot_bench_runs(runs, "t");
  EXPECT_TRUE(svg.starts_with("<svg"));
  EXPECT_NE(svg.find("Throughput relative to off"), std::string::npos);
}

TEST(BenchPlot, SeveralWorkloadsAndNoOff) {
  // Labels carry the workload when there are several; without an off run a workload has no
  // relative series; a single dvr share draws off and global over 0-100 %.
  const json runs = merge_bench_runs(
      {file("a.json", {run("off", 0.1, 1000, "fixed:1024,256"),
                       run("dvr", 0.1, 980, "fixed:1024,256"), run("dvr", 0.5, 700, "arxiv")})});
  const std::vector<PlotPanel> panels = bench_plot_panels(runs);
  const PlotSeries& off = series(panels[0], "fixed:1024,256 off");
  EXPECT_DOUBLE_EQ(off.points[0].first, 0.0);
  EXPECT_DOUBLE_EQ(off.points[1].first, 100.0);
  EXPECT_EQ(series(panels[0], "arxiv dvr").points.size(), 1u);
  EXPECT_EQ(panels[1].series.size(), 2u);  // fixed's off and dvr; nothing for arxiv
}

TEST(BenchPlot, MarkersOnlyWhereARunMeasured) {
  // off and global ran once: drawn as levels across the dvr shares, with no marker at the
  // shares they were not run at; dvr has a marker per run.
  const json runs = merge_bench_runs(
      {file("a.json", {run("off", 0.1, 1000), run("global", 0.1, 900), run("dvr", 0.02, 960),
                       run("dvr", 0.5, 940), run("dvr", 1.0, 920)})});
  const std::vector<PlotPanel> panels = bench_plot_panels(runs);
  for (const PlotPanel& p : panels)
    for (const PlotSeries& s : p.series)
      EXPECT_EQ(s.measured, s.label == "dvr") << p.title << ": " << s.label;
  const std::string svg = plot_bench_runs(runs, "t");
  size_t markers = 0;
  for (size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1))
    ++markers;
  EXPECT_EQ(markers, 3u * 4u) << "three dvr runs in each of four panels, nothing else";
  EXPECT_EQ(svg.find("off: ("), std::string::npos) << "a marker for off";
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
}

TEST(BenchPlot, AgainstTheTpSize) {
  // Three files, one per TP size (as `llm42 bench --tensor-parallel-size N --json` writes them),
  // the same workload and modes: kept apart by TP size, a point per size, the ratio to off at
  // the same size; a file without the field counts as TP 1 and a later one replaces it.
  const json runs = merge_bench_runs(
      {file("old.json", {run("off", 0.1, 500)}),
       file_at_tp("tp1.json", 1, {run("off", 0.1, 1000), run("global", 0.1, 900),
                                  run("dvr", 0.1, 980), run("dvr", 1.0, 920)}),
       file_at_tp("tp2.json", 2, {run("off", 0.1, 1800), run("dvr", 1.0, 1710)}),
       file_at_tp("tp4.json", 4, {run("off", 0.1, 3000), run("dvr", 1.0, 2400)})});
  ASSERT_EQ(runs.size(), 8u);
  const std::vector<PlotPanel> panels = bench_tp_panels(runs);
  ASSERT_EQ(panels.size(), 2u);
  const PlotSeries& off = series(panels[0], "off");
  ASSERT_EQ(off.points.size(), 3u);
  EXPECT_DOUBLE_EQ(off.points[0].first, 1.0);
  EXPECT_DOUBLE_EQ(off.points[0].second, 1000.0);  // tp1.json replaced old.json's
  EXPECT_DOUBLE_EQ(off.points[2].first, 4.0);
  EXPECT_DOUBLE_EQ(off.points[2].second, 3000.0);
  const PlotSeries& dvr100 = series(panels[1], "dvr 100 %");
  ASSERT_EQ(dvr100.points.size(), 3u);
  EXPECT_DOUBLE_EQ(dvr100.points[1].second, 0.95);
  EXPECT_DOUBLE_EQ(dvr100.points[2].second, 0.8);
  EXPECT_EQ(series(panels[0], "dvr 10 %").points.size(), 1u);
  EXPECT_EQ(series(panels[0], "global").points.size(), 1u);
  const std::string svg = plot_bench_runs(runs, "t", PlotAgainst::kTpSize);
  EXPECT_NE(svg.find("tensor-parallel size"), std::string::npos);
  // Against the share, the labels say which TP size a series is.
  EXPECT_EQ(series(bench_plot_panels(runs)[0], "sharegpt TP 2 off").points.size(), 2u);

  // Another model's file at a TP size already plotted adds its own series, replacing nothing.
  BenchResults big = file_at_tp("big.json", 4, {run("off", 0.1, 700)});
  big.doc["model"] = "dummy:big";
  const json two = merge_bench_runs({file_at_tp("tp4.json", 4, {run("off", 0.1, 3000)}), big});
  ASSERT_EQ(two.size(), 2u);
  const std::vector<PlotPanel> by_model = bench_tp_panels(two);
  EXPECT_DOUBLE_EQ(series(by_model[0], "dummy:m sharegpt off").points[0].second, 3000.0);
  EXPECT_DOUBLE_EQ(series(by_model[0], "dummy:big sharegpt off").points[0].second, 700.0);
}

TEST(BenchPlot, ErrorsNameFileRunAndField) {
  auto message = [](const std::vector<BenchResults>& files) {
    try {
      merge_bench_runs(files);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({{"x.json", json{{"foo", 1}}}}),
            "x.json: no 'runs' array (not an llm42 bench result?)");
  json bad = run("dvr", 0.1, 1);
  bad["ttft_s"].erase("p99");
  EXPECT_EQ(message({file("y.json", {run("off", 0, 1), bad})}),
            "y.json: run 2: no 'ttft_s.p99' (not an llm42 bench result?)");
  json text_tps = run("off", 0, 1);
  text_tps["total_tokens_per_s"] = "fast";
  EXPECT_EQ(message({file("z.json", {text_tps})}),
            "z.json: run 1: 'total_tokens_per_s' is not a number");
  EXPECT_EQ(message({file("w.json", {run("turbo", 0, 1)})}),
            "w.json: run 1: mode 'turbo' is not off, global or dvr");
  EXPECT_EQ(message({file("v.json", {})}), "no runs to plot");
}

}  // namespace
}  // namespace llm42::bench
