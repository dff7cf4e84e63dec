#include "backend/backend.h"

#include <cmath>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

#ifdef LLM42_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace llm42 {

void PassInput::check(int block_size, int n_blocks) const {
  const int t = n_tokens();
  LLM42_ASSERT(static_cast<int>(positions.size()) == t && static_cast<int>(slots.size()) == t,
               "pass arrays disagree: {} tokens, {} positions, {} slots", t, positions.size(),
               slots.size());
  int row = 0;
  for (const PassSeq& s : seqs) {
    LLM42_ASSERT(s.q_begin == row && s.q_len > 0, "sequence rows not contiguous at row {}", row);
    LLM42_ASSERT(s.block_begin >= 0 &&
                 s.block_begin + s.n_blocks <= static_cast<int>(block_tables.size()));
    const int64_t kv_len = static_cast<int64_t>(s.pos_begin) + s.q_len;
    LLM42_ASSERT(static_cast<int64_t>(s.n_blocks) * block_size >= kv_len,
                 "{} blocks of {} cannot hold {} positions", s.n_blocks, block_size, kv_len);
    for (int i = 0; i < s.q_len; ++i) {
      const int r = s.q_begin + i;
      const int pos = s.pos_begin + i;
      LLM42_ASSERT(positions[r] == pos, "row {} position {} != {}", r, positions[r], pos);
      const int block = block_tables[s.block_begin + pos / block_size];
      LLM42_ASSERT(block >= 0 && block < n_blocks, "block id {} out of range", block);
      LLM42_ASSERT(slots[r] == block * block_size + pos % block_size, "row {} slot mismatch", r);
    }
    row += s.q_len;
  }
  LLM42_ASSERT(row == t, "sequences cover {} rows of {}", row, t);
  for (int r : logit_rows) LLM42_ASSERT(r >= 0 && r < t, "logit row {} out of range", r);
}

std::vector<int> Backend::matmul_tuning_sizes(int limit) const {
  std::vector<int> m;
  for (int v = 1; v < limit; v *= 2) m.push_back(v);
  if (limit > 0) m.push_back(limit);
  return m;
}

void Backend::begin_graph_pass(const PassInput&, const KvCache&, const QkvLayout&) {
  fail("the {} backend cannot run passes as graphs", device_name(device()));
}

std::unique_ptr<PassGraph> Backend::capture(const std::function<void()>&) {
  fail("the {} backend cannot capture graphs", device_name(device()));
}

bool Backend::replay(const PassGraph&) {
  fail("the {} backend cannot replay graphs", device_name(device()));
}

size_t KvCache::bytes() const {
  return 2ull * n_layers * n_blocks * block_size * n_kv_heads * head_dim * dtype_size(dtype);
}

void check_canonical_m_step(int step) {
  if (step != 0 && (step < 8 || step > 4096 || (step & (step - 1)) != 0))
    fail("--cuda-canonical-m-step {}: must be 0 (powers of two) or a power of two from 8 to 4096",
         step);
}

AttentionTall parse_attention_tall(const std::string& policy) {
  if (policy == "auto") return AttentionTall::kAuto;
  if (policy == "mixed") return AttentionTall::kMixed;
  if (policy == "never") return AttentionTall::kNever;
  fail("--cuda-attention-tall '{}': expected auto, mixed or never", policy);
}

void check_backend_options(const BackendOptions& opts) {
  check_canonical_m_step(opts.canonical_m_step);
  parse_attention_tall(opts.attention_tall);  // refused on every device
}

std::unique_ptr<Backend> make_backend(const BackendOptions& opts) {
  check_backend_options(opts);
  if (opts.device == "cpu") return std::make_unique<CpuBackend>(opts);
  if (opts.device == "cuda" || opts.device.rfind("cuda:", 0) == 0) {
#ifdef LLM42_HAVE_CUDA
    int ordinal = 0;
    if (opts.device.size() > 5) ordinal = std::stoi(opts.device.substr(5));
    return make_cuda_backend(opts, ordinal);
#else
    fail("--device {}: this build of llm42 has no CUDA backend (nvcc was not found at build time)",
         opts.device);
#endif
  }
  fail("--device '{}': unknown device (expected cpu or cuda)", opts.device);
}

KvCache allocate_kv_cache(Backend& backend, const ModelConfig& c, int n_blocks, int block_size,
                          std::vector<Buffer>& storage) {
  KvCache kv;
  kv.n_layers = c.n_layers;
  kv.n_blocks = n_blocks;
  kv.block_size = block_size;
  kv.n_kv_heads = c.n_kv_heads;
  kv.head_dim = c.head_dim;
  kv.dtype = backend.activation_dtype();
  const size_t per = static_cast<size_t>(n_blocks) * block_size * c.n_kv_heads * c.head_dim *
                     dtype_size(kv.dtype);
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
