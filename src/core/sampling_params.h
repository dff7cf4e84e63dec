// Per-request sampling parameters, as the OpenAI API names them.
#pragma once

#include <cstdint>
#include <optional>

namespace llm42 {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy (argmax, ties to the lowest id)
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float presence_penalty = 0.0f;    // subtracted once from every token generated so far
  float frequency_penalty = 0.0f;   // subtracted per occurrence in the generated tokens
  float repetition_penalty = 1.0f;  // HF-style, over prompt and generated tokens; 1 = off
  std::optional<uint64_t> seed;     // Gumbel noise seed; deterministic requests default to 0
  int top_logprobs = 0;             // alternatives returned per token (0..20)

  bool greedy() const { return temperature <= 0.0f; }
  bool has_penalties() const {
    return presence_penalty != 0.0f || frequency_penalty != 0.0f || repetition_penalty != 1.0f;
  }
};

}  // namespace llm42
