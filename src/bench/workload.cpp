#include "bench/workload.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "util/error.h"

namespace llm42::bench {
namespace {

int clamp_len(double x, int lo, int hi) {
  return std::clamp(static_cast<int>(std::lround(x)), lo, hi);
}

}  // namespace

std::string describe_workload(std::string_view spec) {
  if (spec == "sharegpt")
    return "ShareGPT-like: input ~ LogNormal(ln 180, 1.0) in [4, 2048], output ~ "
           "LogNormal(ln 160, 0.9) in [4, 1024]";
  if (spec == "arxiv")
    return "ArXiv-summarization-like: input ~ Normal(6000, 1800) in [1024, 8192], output ~ "
           "Normal(230, 60) in [32, 512]";
  return std::string(spec);
}

std::vector<WorkloadItem> make_workload(std::string_view spec, int n, int vocab, int max_seq_len,
                                        double deterministic_ratio, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::pair<int, int>> lens;
  if (spec.rfind("fixed:", 0) == 0) {
    const std::string s(spec.substr(6));
    const size_t comma = s.find(',');
    int in = 0, out = 0;
    try {
      if (comma == std::string::npos) throw std::invalid_argument(s);
      in = std::stoi(s.substr(0, comma));
      out = std::stoi(s.substr(comma + 1));
    } catch (const std::exception&) {
      fail("--workload '{}': expected fixed:INPUT,OUTPUT (token counts)", spec);
    }
    if (in < 1 || out < 1) fail("--workload '{}': lengths must be positive", spec);
    lens.assign(static_cast<size_t>(n), {in, out});
  } else if (spec == "sharegpt") {
    std::lognormal_distribution<double> in_d(std::log(180.0), 1.0), out_d(std::log(160.0), 0.9);
    for (int i = 0; i < n; ++i)
      lens.emplace_back(clamp_len(in_d(rng), 4, 2048), clamp_len(out_d(rng), 4, 1024));
  } else if (spec == "arxiv") {
    std::normal_distribution<double> in_d(6000.0, 1800.0), out_d(230.0, 60.0);
    for (int i = 0; i < n; ++i)
      lens.emplace_back(clamp_len(in_d(rng), 1024, 8192), clamp_len(out_d(rng), 32, 512));
  } else {
    fail("--workload '{}': expected fixed:IN,OUT, sharegpt or arxiv", spec);
  }
  std::vector<WorkloadItem> items;
  std::uniform_int_distribution<int32_t> tok(3, vocab - 1);
  double det_acc = 0.0;
  for (auto [in, out] : lens) {
    out = std::min(out, max_seq_len - 1);
    in = std::min(in, max_seq_len - out);
    WorkloadItem it;
    it.prompt.resize(static_cast<size_t>(in));
    for (auto& t : it.prompt) t = tok(rng);
    it.max_tokens = out;
    // Spread deterministic requests evenly through the arrival order.
    det_acc += deterministic_ratio;
    if (det_acc >= 1.0 - 1e-9) {
      it.deterministic = true;
      det_acc -= 1.0;
    }
    items.push_back(std::move(it));
  }
  return items;
}

}  // namespace llm42::bench
