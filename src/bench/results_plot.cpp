#include "bench/results_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "util/error.h"

namespace llm42::bench {
namespace {

using nlohmann::json;

// The value at `path` (keys from the run's top) as a number, or an error naming the field.
double number(const json& run, std::initializer_list<const char*> path, const std::string& where) {
  const json* v = &run;
  std::string name;
  for (const char* key : path) {
    name += name.empty() ? key : fmt::format(".{}", key);
    if (!v->is_object() || !v->contains(key))
      fail("{}: no '{}' (not an llm42 bench result?)", where, name);
    v = &(*v)[key];
  }
  if (!v->is_number()) fail("{}: '{}' is not a number", where, name);
  return v->get<double>();
}

std::string text(const json& run, const char* key, const std::string& where) {
  if (!run.contains(key)) fail("{}: no '{}' (not an llm42 bench result?)", where, key);
  if (!run[key].is_string()) fail("{}: '{}' is not a string", where, key);
  return run[key].get<std::string>();
}

// Runs of one workload (and request rate), by mode.
struct Group {
  std::string name;  // the workload, with the request rate when there is one
  std::vector<const json*> dvr;
  const json* off = nullptr;
  const json* global = nullptr;
};

double tp_of(const json& r) { return r.value("tensor_parallel_size", 1.0); }

std::string model_of(const json& r) { return r.value("model", std::string()); }

// Whether the runs take more than one value of `of` (a TP size, a model).
template <typename Of>
bool several(const json& runs, Of of) {
  for (const json& r : runs)
    if (of(r) != of(runs.front())) return true;
  return false;
}

// A run's workload (with its request rate), prefixed by its model where the runs span several.
std::string workload_name(const json& r, bool with_model) {
  std::string name = r["workload"].get<std::string>();
  const double rate = r.value("request_rate", 0.0);
  if (rate > 0) name += fmt::format(" @ {:g}/s", rate);
  return with_model ? model_of(r) + " " + name : name;
}

std::vector<Group> group_runs(const json& runs) {
  std::vector<Group> groups;
  std::map<std::string, size_t> index;
  const bool by_tp = several(runs, tp_of), by_model = several(runs, model_of);
  for (const json& r : runs) {
    std::string name = workload_name(r, by_model);
    if (by_tp) name += fmt::format(" TP {:g}", tp_of(r));
    auto [it, fresh] = index.emplace(name, groups.size());
    if (fresh) groups.push_back(Group{name, {}, nullptr, nullptr});
    Group& g = groups[it->second];
    const std::string mode = r["mode"].get<std::string>();
    if (mode == "off")
      g.off = &r;
    else if (mode == "global")
      g.global = &r;
    else
      g.dvr.push_back(&r);
  }
  for (Group& g : groups)
    std::sort(g.dvr.begin(), g.dvr.end(), [](const json* a, const json* b) {
      return (*a)["deterministic_ratio"].get<double>() < (*b)["deterministic_ratio"].get<double>();
    });
  return groups;
}

}  // namespace

json merge_bench_runs(const std::vector<BenchResults>& files) {
  json merged = json::array();
  std::map<std::tuple<std::string, std::string, std::string, double, double, double>, size_t>
      seen;
  for (const BenchResults& f : files) {
    if (!f.doc.is_object() || !f.doc.contains("runs") || !f.doc["runs"].is_array())
      fail("{}: no 'runs' array (not an llm42 bench result?)", f.source);
    // The TP size is the file's (one engine per `llm42 bench` run); each run carries it here.
    const double file_tp = f.doc.contains("tensor_parallel_size")
                               ? number(f.doc, {"tensor_parallel_size"}, f.source)
                               : 1.0;
    // Likewise the model: runs of two models are never merged into one.
    const std::string file_model =
        f.doc.contains("model") && f.doc["model"].is_string() ? f.doc["model"].get<std::string>()
                                                              : std::string();
    int i = 0;
    for (const json& r : f.doc["runs"]) {
      const std::string where = fmt::format("{}: run {}", f.source, ++i);
      if (!r.is_object()) fail("{}: not an object", where);
      const std::string mode = text(r, "mode", where);
      if (mode != "off" && mode != "global" && mode != "dvr")
        fail("{}: mode '{}' is not off, global or dvr", where, mode);
      const std::string workload = text(r, "workload", where);
      const double ratio = number(r, {"deterministic_ratio"}, where);
      number(r, {"total_tokens_per_s"}, where);
      number(r, {"ttft_s", "p99"}, where);
      number(r, {"recompute_rate"}, where);
      const double rate = r.contains("request_rate") ? number(r, {"request_rate"}, where) : 0.0;
      const double tp =
          r.contains("tensor_parallel_size") ? number(r, {"tensor_parallel_size"}, where) : file_tp;
      // off and global do not depend on the ratio: one run of each per workload.
      const std::string model = r.value("model", file_model);
      const auto key =
          std::make_tuple(model, workload, mode, mode == "dvr" ? ratio : 0.0, rate, tp);
      json copy = r;
      copy["tensor_parallel_size"] = tp;
      copy["model"] = model;
      auto [it, fresh] = seen.emplace(key, merged.size());
      if (fresh)
        merged.push_back(std::move(copy));
      else
        merged[it->second] = std::move(copy);
    }
  }
  if (merged.empty()) fail("no runs to plot");
  return merged;
}

std::vector<PlotPanel> bench_plot_panels(const json& runs) {
  const std::vector<Group> groups = group_runs(runs);
  const bool several = groups.size() > 1;
  auto label = [&](const Group& g, const char* mode) {
    return several ? fmt::format("{} {}", g.name, mode) : std::string(mode);
  };
  const std::string x_label = "deterministic requests (%)";
  PlotPanel tput{"Total throughput", x_label, "tok/s", {}};
  PlotPanel rel{"Throughput relative to off", x_label, "x off", {}, false};
  PlotPanel ttft{"TTFT P99", x_label, "s", {}};
  PlotPanel recompute{"Recompute rate (dvr)", x_label, "share of tokens", {}};
  for (const Group& g : groups) {
    // The shares a flat line spans: those of the dvr runs, else 0 to 100 %.
    double x0 = 0, x1 = 100;
    if (!g.dvr.empty()) {
      x0 = 100 * g.dvr.front()->at("deterministic_ratio").get<double>();
      x1 = 100 * g.dvr.back()->at("deterministic_ratio").get<double>();
      if (x0 == x1) x0 = 0, x1 = std::max(x1, 100.0);
    }
    const double off_tps = g.off != nullptr ? g.off->at("total_tokens_per_s").get<double>() : 0.0;
    auto flat = [&](PlotPanel& p, const char* mode, double y) {
      // One measurement drawn as a level across the span: no markers at shares not run.
      p.series.push_back(PlotSeries{label(g, mode), {{x0, y}, {x1, y}}, false});
    };
    for (const auto& [run, mode] : {std::pair{g.off, "off"}, std::pair{g.global, "global"}}) {
      if (run == nullptr) continue;
      const double tps = run->at("total_tokens_per_s").get<double>();
      flat(tput, mode, tps);
      flat(ttft, mode, run->at("ttft_s").at("p99").get<double>());
      if (off_tps > 0) flat(rel, mode, tps / off_tps);
    }
    if (g.dvr.empty()) continue;
    PlotSeries s_tput{label(g, "dvr"), {}}, s_rel{label(g, "dvr"), {}}, s_ttft{label(g, "dvr"), {}},
        s_rec{label(g, "dvr"), {}};
    for (const json* r : g.dvr) {
      const double x = 100 * r->at("deterministic_ratio").get<double>();
      const double tps = r->at("total_tokens_per_s").get<double>();
      s_tput.points.emplace_back(x, tps);
      if (off_tps > 0) s_rel.points.emplace_back(x, tps / off_tps);
      s_ttft.points.emplace_back(x, r->at("ttft_s").at("p99").get<double>());
      s_rec.points.emplace_back(x, r->at("recompute_rate").get<double>());
    }
    tput.series.push_back(std::move(s_tput));
    if (off_tps > 0) rel.series.push_back(std::move(s_rel));
    ttft.series.push_back(std::move(s_ttft));
    recompute.series.push_back(std::move(s_rec));
  }
  return {tput, rel, ttft, recompute};
}

std::vector<PlotPanel> bench_tp_panels(const json& runs) {
  // One series per workload (and request rate), mode and, for dvr, deterministic share; a point
  // per TP size. The ratio is to off of the same workload at the same TP size.
  struct Series {
    std::string workload, label;
    std::map<double, double> tps;  // TP size -> total tok/s
  };
  std::vector<Series> series;
  std::map<std::string, size_t> index;
  std::map<std::pair<std::string, double>, double> off;  // (workload, TP) -> off's tok/s
  std::set<std::string> workloads;
  const bool by_model = several(runs, model_of);
  for (const json& r : runs) {
    const std::string workload = workload_name(r, by_model);
    workloads.insert(workload);
    const std::string mode = r["mode"].get<std::string>();
    std::string what = mode;
    if (mode == "dvr") what += fmt::format(" {:g} %", 100 * r["deterministic_ratio"].get<double>());
    const double tps = r["total_tokens_per_s"].get<double>();
    if (mode == "off") off[{workload, tp_of(r)}] = tps;
    auto [it, fresh] = index.emplace(workload + "\n" + what, series.size());
    if (fresh) series.push_back(Series{workload, what, {}});
    series[it->second].tps[tp_of(r)] = tps;
  }
  const bool several = workloads.size() > 1;
  const std::string x_label = "tensor-parallel size";
  PlotPanel tput{"Total throughput", x_label, "tok/s", {}};
  PlotPanel rel{"Throughput relative to off", x_label, "x off", {}, false};
  for (const Series& s : series) {
    const std::string label = several ? s.workload + " " + s.label : s.label;
    PlotSeries t{label, {}}, q{label, {}};
    for (const auto& [tp, tps] : s.tps) {
      t.points.emplace_back(tp, tps);
      const auto o = off.find({s.workload, tp});
      if (o != off.end() && o->second > 0) q.points.emplace_back(tp, tps / o->second);
    }
    tput.series.push_back(std::move(t));
    if (!q.points.empty()) rel.series.push_back(std::move(q));
  }
  return {tput, rel};
}

std::string plot_bench_runs(const json& runs, const std::string& title, PlotAgainst against) {
  if (against == PlotAgainst::kTpSize) return render_svg(title, bench_tp_panels(runs), 2);
  return render_svg(title, bench_plot_panels(runs), 2);
}

size_t write_bench_plot(const std::string& path, const std::vector<BenchResults>& files,
                        std::string title, PlotAgainst against) {
  const json runs = merge_bench_runs(files);
  if (title.empty()) {
    const json& doc = files.front().doc;
    title = "llm42 bench: " + doc.value("model", std::string("?")) + " on " +
            doc.value("device", std::string("?"));
  }
  std::ofstream out(path);
  if (!out) fail("{}: cannot write", path);
  out << plot_bench_runs(runs, title, against);
  out.close();
  if (!out) fail("{}: write failed", path);
  return runs.size();
}

}  // namespace llm42::bench
