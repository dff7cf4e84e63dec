// llm42 bench work: the work a synthetic workload asks of a model (bench/workload_cost.h),
// counted from the requests' lengths alone: nothing runs and no weights load. The same numbers
// as a `llm42 bench` run's "work", for runs recorded before it existed and for planning;
// bench/roofline_budget.py sets them against a device's ceilings (docs/benchmarks.md).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench/workload.h"
#include "bench/workload_cost.h"
#include "cli/commands.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/presets.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace llm42::cli {
namespace {

struct WorkOptions {
  std::string model;
  std::string workload = "fixed:1024,256";
  int num_prompts = 64;
  uint64_t seed = 0;
  int max_seq_len = 0;
  int element_bytes = 2;
  std::string json_out;
};

// A count with an SI prefix and three significant digits: 44.6 PFLOP, 950 MB.
std::string si(double v, const char* unit) {
  static const char* kPrefix[] = {"", "k", "M", "G", "T", "P", "E"};
  int i = 0;
  while (v >= 1000 && i < 6) {
    v /= 1000;
    ++i;
  }
  return fmt::format("{:.3g} {}{}", v, kPrefix[i], unit);
}

ModelConfig config_of(const std::string& model) {
  if (model.rfind("dummy:", 0) == 0) return preset_config(model.substr(6));
  if (is_directory(model) || model.ends_with(".json")) {
    const std::string cfg = is_directory(model) ? model + "/config.json" : model;
    return parse_hf_config(nlohmann::json::parse(read_file(cfg), nullptr, true), cfg);
  }
  return load_checkpoint(model).config;
}

int run_work(const WorkOptions& o) {
  if (o.num_prompts < 1) fail("--num-prompts {}: must be at least 1", o.num_prompts);
  if (o.element_bytes != 1 && o.element_bytes != 2 && o.element_bytes != 4)
    fail("--element-bytes {}: must be 1, 2 or 4", o.element_bytes);
  ModelConfig c = config_of(o.model);
  if (o.max_seq_len > 0) c.max_seq_len = o.max_seq_len;
  // As `llm42 bench` generates it (every request runs to max_tokens: it ignores EOS).
  const auto items =
      bench::make_workload(o.workload, o.num_prompts, c.vocab_size, c.max_seq_len, 0.0, o.seed);
  std::vector<bench::RequestLengths> lengths;
  int64_t prompt_tokens = 0, output_tokens = 0;
  for (const bench::WorkloadItem& it : items) {
    lengths.push_back({static_cast<int64_t>(it.prompt.size()), it.max_tokens});
    prompt_tokens += static_cast<int64_t>(it.prompt.size());
    output_tokens += it.max_tokens;
  }
  const bench::WorkloadCost w = bench::workload_cost(c, o.element_bytes, lengths);
  // The weights a decode step streams: all but the embedding table (unless the head shares it).
  const double embedding = static_cast<double>(c.vocab_size) * c.dim;
  const double weight_bytes =
      (static_cast<double>(c.n_params()) - (c.tie_embeddings ? 0.0 : embedding)) * o.element_bytes;
  std::printf("%s, %s: %d prompts, %lld prompt and %lld output tokens\n", o.model.c_str(),
              bench::describe_workload(o.workload).c_str(), o.num_prompts,
              static_cast<long long>(prompt_tokens), static_cast<long long>(output_tokens));
  std::printf("  linear layers      %s\n", si(w.linear_flop, "FLOP").c_str());
  std::printf("  prefill attention  %s\n", si(w.prefill_attention_flop, "FLOP").c_str());
  std::printf("  decode attention   %s, %s of KV read\n",
              si(w.decode_attention_flop, "FLOP").c_str(), si(w.decode_kv_bytes, "B").c_str());
  std::printf("  weights a step     %s (%d-byte elements)\n", si(weight_bytes, "B").c_str(),
              o.element_bytes);
  if (!o.json_out.empty()) {
    const nlohmann::json doc = {{"model", o.model},
                                {"workload", o.workload},
                                {"num_prompts", o.num_prompts},
                                {"seed", o.seed},
                                {"prompt_tokens", prompt_tokens},
                                {"output_tokens", output_tokens},
                                {"work", bench::workload_cost_json(w, weight_bytes)}};
    std::ofstream out(o.json_out);
    if (!out) fail("--json {}: cannot write", o.json_out);
    out << doc.dump(2) << "\n";
    std::printf("wrote %s\n", o.json_out.c_str());
  }
  return 0;
}

}  // namespace

void register_bench_work(CLI::App& bench) {
  auto o = std::make_shared<WorkOptions>();
  CLI::App* sub = bench.add_subcommand(
      "work",
      "The work a workload asks of a model (projection and attention FLOPs, KV bytes read, "
      "weights a step), from its requests' lengths; runs nothing, loads no weights");
  sub->add_option("-m,--model", o->model,
                  "dummy:PRESET, a Hugging Face directory or config.json, or a model file")
      ->required();
  sub->add_option("--workload", o->workload, "fixed:IN,OUT, sharegpt or arxiv")
      ->capture_default_str();
  sub->add_option("--num-prompts", o->num_prompts)->capture_default_str();
  sub->add_option("--seed", o->seed, "Workload seed")->capture_default_str();
  sub->add_option("--max-seq-len", o->max_seq_len,
                  "Context length (0 = the model's max_position_embeddings): prompts are cut "
                  "to fit, as `llm42 bench` does")
      ->capture_default_str();
  sub->add_option("--element-bytes", o->element_bytes,
                  "Bytes of a weight and of a cached K or V element (2: bf16, as on CUDA)")
      ->capture_default_str();
  sub->add_option("--json", o->json_out,
                  "Write the work as JSON (bench/roofline_budget.py --work)");
  bind(*sub, [o] { return run_work(*o); });
}

}  // namespace llm42::cli
