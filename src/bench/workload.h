// Synthetic benchmark workloads: prompts of random token ids with lengths drawn from fixed
// values or from distributions shaped like the LLM-42 paper's datasets (docs/benchmarks.md
// documents them). Used by `llm42 bench` and `llm42 bench serve`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llm42::bench {

struct WorkloadItem {
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  bool deterministic = false;
};

// `spec`: "fixed:IN,OUT", "sharegpt" or "arxiv". Lengths are capped so that prompt + output fits
// in max_seq_len. A fraction `deterministic_ratio` of the items (spread evenly) is marked
// deterministic. Throws llm42::Error on an unknown spec.
std::vector<WorkloadItem> make_workload(std::string_view spec, int n, int vocab, int max_seq_len,
                                        double deterministic_ratio, uint64_t seed);

std::string describe_workload(std::string_view spec);

}  // namespace llm42::bench
