#include "backend/backend.h"

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

void check_backend_options(const BackendOptions& opts) {
  check_cuda_options(opts.cuda);  // refused on every device
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

}  // namespace llm42
