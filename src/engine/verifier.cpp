#include "engine/verifier.h"

#include <algorithm>

#include "util/hash.h"

namespace llm42 {

int injected_mismatch_position(const VerifyOptions& opts, uint64_t seed, int64_t window_position,
                               int k) {
  if (opts.inject_mismatch_rate <= 0.0 || k <= 0) return -1;
  const uint64_t stream = seed ^ 0x6661756c74ULL;  // "fault"
  if (counter_uniform(stream, static_cast<uint64_t>(window_position), 0) >=
      opts.inject_mismatch_rate)
    return -1;
  if (opts.inject_position >= 0) return std::min(opts.inject_position, k - 1);
  const double u = counter_uniform(stream, static_cast<uint64_t>(window_position), 1);
  return static_cast<int>(u * k);
}

}  // namespace llm42
