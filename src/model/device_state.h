// Building the device state a model runs with: its paged KV cache and its RoPE table (the
// structures are the backend's, backend/backend.h; their sizes come from the model's config).
#pragma once

#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace llm42 {

// Allocates a KV cache of n_blocks blocks on `backend`; `storage` receives the allocations.
KvCache allocate_kv_cache(Backend& backend, const ModelConfig& c, int n_blocks, int block_size,
                          std::vector<Buffer>& storage);
// cos and sin of position * inv_freq (rope_inv_freq of the config) for max_positions positions,
// computed on the host and uploaded.
RopeTable make_rope_table(Backend& backend, const ModelConfig& c, int max_positions,
                          std::vector<Buffer>& storage);

}  // namespace llm42
