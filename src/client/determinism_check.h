// `llm42 check`: does a running server keep its determinism promise?
//
// The same deterministic requests (half greedy, half seeded sampling; logprobs and token ids
// asked for; half streamed) are sent alone, one at a time (the reference), then concurrently,
// in a shuffled order, and among background non-deterministic traffic. Token ids and logprobs
// must equal the reference bit for bit. The same prompts are also sent without
// `deterministic`, alone and under load, to show how many of those diverge: a check whose fast
// lane never diverges proves little about the verified one.
//
// With compare URLs (e.g. the same model served at another tensor-parallel size), the same
// deterministic requests are also sent to each of those servers, alone and concurrently in a
// shuffled order, and must equal the first server's reference bit for bit; the non-deterministic
// ones are compared too, for information.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llm42::client {

struct CheckOptions {
  std::string url = "http://127.0.0.1:8000";
  std::string model;    // empty: the server's first model
  std::string api_key;
  int prompts = 16;
  int max_tokens = 64;
  int concurrency = 8;
  int background = 16;  // concurrent background clients
  uint64_t seed = 0;
  std::string json_out;
  std::vector<std::string> compare_urls;  // other servers that must give the same answers
};

// Prints the table; returns 0 when every deterministic comparison passes, 1 otherwise.
int run_determinism_check(const CheckOptions& o);

}  // namespace llm42::client
