#include "model/device_state.h"

#include <cmath>
#include <utility>

namespace llm42 {

KvCache allocate_kv_cache(Backend& backend, const ModelConfig& c, int n_blocks, int block_size,
                          std::vector<Buffer>& storage) {
  KvCache kv;
  kv.n_layers = c.n_layers;
  kv.n_blocks = n_blocks;
  kv.block_size = block_size;
  kv.n_kv_heads = c.n_kv_heads;
  kv.head_dim = c.head_dim;
  kv.dtype = backend.activation_dtype();
  const size_t per =
      static_cast<size_t>(n_blocks) * block_size * c.n_kv_heads * c.head_dim * dtype_size(kv.dtype);
  for (int l = 0; l < c.n_layers; ++l) {
    for (auto* list : {&kv.k, &kv.v}) {
      storage.emplace_back(backend, per);
      list->push_back(Tensor(storage.back().get(), kv.dtype, backend.device(),
                             {n_blocks, block_size, c.n_kv_heads, c.head_dim}));
    }
  }
  return kv;
}

RopeTable make_rope_table(Backend& backend, const ModelConfig& c, int max_positions,
                          std::vector<Buffer>& storage) {
  RopeTable t;
  t.max_positions = max_positions;
  t.half_dim = c.head_dim / 2;
  t.layout = c.rope_layout;
  const std::vector<double> inv_freq = rope_inv_freq(c);
  std::vector<float> cos_h(static_cast<size_t>(max_positions) * t.half_dim);
  std::vector<float> sin_h(cos_h.size());
  for (int p = 0; p < max_positions; ++p) {
    for (int i = 0; i < t.half_dim; ++i) {
      // The angle is rounded to fp32 first, as transformers computes it (fp32 inv_freq * position),
      // then cos/sin are taken in double and rounded: both backends read the same table.
      const float angle = static_cast<float>(p) * static_cast<float>(inv_freq[i]);
      cos_h[static_cast<size_t>(p) * t.half_dim + i] = static_cast<float>(std::cos(angle));
      sin_h[static_cast<size_t>(p) * t.half_dim + i] = static_cast<float>(std::sin(angle));
    }
  }
  for (auto [dst, src] : {std::pair{&t.cos, &cos_h}, std::pair{&t.sin, &sin_h}}) {
    storage.emplace_back(backend, src->size() * sizeof(float));
    *dst = Tensor(storage.back().get(), DType::kF32, backend.device(), {max_positions, t.half_dim});
    backend.copy_to_device(dst->data, src->data(), src->size() * sizeof(float));
  }
  return t;
}

}  // namespace llm42
