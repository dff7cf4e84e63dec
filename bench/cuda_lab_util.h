// Shared pieces of the CUDA kernel labs: device tensors that own their memory, event timing and
// the device-to-device copy ceiling, measured in the same run as the kernels it bounds.
#pragma once
#ifdef LLM42_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/check.h"
#include "backend/cuda/cuda_backend.h"

namespace llm42::lab {

// "1,8,64" -> {1, 8, 64} (a lab's list arguments).
inline std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  for (size_t at = 0; at <= s.size();) {
    const size_t comma = std::min(s.find(',', at), s.size());
    v.push_back(std::atoi(s.substr(at, comma - at).c_str()));
    at = comma + 1;
  }
  return v;
}

struct Owned {
  Buffer buf;
  Tensor t;
};

inline Owned make(CudaBackend& b, DType dtype, std::initializer_list<int64_t> shape) {
  Owned o;
  o.t = Tensor(nullptr, dtype, Device::kCUDA, shape);
  o.buf = Buffer(b, o.t.nbytes());
  o.t.data = o.buf.get();
  return o;
}

// Median time in microseconds of `reps` runs of f(rep) on the backend's stream, after one
// untimed run.
template <typename F>
double time_us(CudaBackend& b, int reps, F&& f) {
  f(0);
  b.synchronize();
  cudaEvent_t start, stop;
  LLM42_CUDA_CHECK(cudaEventCreate(&start));
  LLM42_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    LLM42_CUDA_CHECK(cudaEventRecord(start, b.stream()));
    f(r);
    LLM42_CUDA_CHECK(cudaEventRecord(stop, b.stream()));
    LLM42_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    LLM42_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    t.push_back(ms * 1000.0f);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// A pass of sequences given as (prefix, queries), token ids 1000 + sequence + query, no logit
// rows. Sequence i's blocks start at block i * blocks_per_seq, or right after the previous
// sequence's where blocks_per_seq is 0.
inline PassInput pass_of(const std::vector<std::pair<int, int>>& seqs, int block_size,
                         int blocks_per_seq, Schedule schedule) {
  PassInput p;
  p.schedule = schedule;
  int32_t next_block = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto [prefix, q_len] = seqs[i];
    PassSeq q;
    q.q_begin = p.n_tokens();
    q.q_len = q_len;
    q.pos_begin = prefix;
    q.block_begin = static_cast<int32_t>(p.block_tables.size());
    q.n_blocks = (prefix + q_len + block_size - 1) / block_size;
    if (blocks_per_seq > 0) next_block = static_cast<int32_t>(i) * blocks_per_seq;
    for (int k = 0; k < q.n_blocks; ++k) p.block_tables.push_back(next_block++);
    for (int j = 0; j < q_len; ++j) {
      const int pos = prefix + j;
      p.tokens.push_back(1000 + static_cast<int>(i) + j);
      p.positions.push_back(pos);
      p.slots.push_back(p.block_tables[q.block_begin + pos / block_size] * block_size +
                        pos % block_size);
    }
    p.seqs.push_back(q);
  }
  return p;
}

// An ArXiv-like step (the offline ArXiv-like workload's passes of ~1,800 tokens hold three or
// four prefill chunks at long prefixes beside ~56 decode rows), as (prefix, queries): chunks of
// 512 at prefixes 1,024 / 3,072 / 5,120 and a first chunk of 200, then 56 decode rows at
// contexts spread over 4,000-7,929. The first kArxivChunks sequences are the chunks.
inline constexpr int kArxivChunks = 4;
inline std::vector<std::pair<int, int>> arxiv_step() {
  std::vector<std::pair<int, int>> seqs = {{1024, 512}, {3072, 512}, {5120, 512}, {0, 200}};
  for (int i = 0; i < 56; ++i) seqs.emplace_back(4000 + i * 4000 / 56, 1);
  return seqs;
}

// Bytes per second of a 2 GiB device-to-device copy, counting bytes read plus bytes written.
inline double copy_bandwidth(CudaBackend& b) {
  const size_t bytes = 2ull << 30;
  Owned a = make(b, DType::kBF16, {static_cast<int64_t>(bytes / 2)});
  Owned c = make(b, DType::kBF16, {static_cast<int64_t>(bytes / 2)});
  b.fill_random(a.t, 1, RandomInit::kNormal, 1.0f);
  const double us = time_us(b, 10, [&](int) {
    LLM42_CUDA_CHECK(
        cudaMemcpyAsync(c.t.data, a.t.data, bytes, cudaMemcpyDeviceToDevice, b.stream()));
  });
  return 2.0 * bytes / (us * 1e-6);
}

}  // namespace llm42::lab
#endif
