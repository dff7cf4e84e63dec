// Hashes. `mix64` is the counter-based generator behind sampling noise: a pure function of its
// inputs, identical on the CPU and in CUDA kernels, so both lanes and both backends draw the same
// Gumbel noise for (seed, position, vocab id).
#pragma once

#include <cstdint>

#include "util/numeric.h"  // LLM42_HD

namespace llm42 {

// SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
LLM42_HD uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform double in the open interval (0, 1) from (seed, position, index).
LLM42_HD double counter_uniform(uint64_t seed, uint64_t position, uint64_t index) {
  const uint64_t h = mix64(mix64(mix64(seed) ^ position) ^ index);
  // 53 random bits, offset by half a step so that 0 and 1 are never produced.
  return (static_cast<double>(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// The index in a full (rows, full_cols) tensor of element i of a window of it whose rows are
// `cols` long and whose first element is the full tensor's `offset` (cols 0: a contiguous run).
// Dummy weights of a tensor-parallel shard draw their full weight's elements (RandomWindow).
LLM42_HD int64_t window_index(int64_t i, int64_t offset, int64_t cols, int64_t full_cols) {
  return cols == 0 ? offset + i : offset + (i / cols) * full_cols + i % cols;
}

}  // namespace llm42
