// Device sampling, the twin of core/sampler.cpp without penalties (which need token history
// and stay on the host). Layout: logits (R, vocab) f32. One block of 1024 threads per row;
// every reduction over the vocabulary has one fixed order per row (a thread takes a fixed
// stride of ids, then a fixed shuffle tree and warp order), independent of the number of rows.
//
// Semantics (core/sampler.h): greedy = argmax, ties to the lowest id; sampled = Gumbel-max of
// z = logits / temperature over the ids kept by top-k, then top-p, then min-p, with noise
// -log(-log(u)), u = counter_uniform(seed, position, id), all in double; logprobs are
// log_softmax of the raw logits. Filters need the sorted order (value descending, ties by id),
// which a stable segmented radix sort provides.
#include <cfloat>
#include <cmath>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "util/hash.h"

namespace llm42::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// (value, id) with "better" = larger value, ties to the lower id; id -1 = none.
struct Best {
  double v;
  int32_t id;
};

__device__ __forceinline__ bool better(const Best& a, const Best& b) {
  if (a.id < 0) return false;
  if (b.id < 0) return true;
  return a.v > b.v || (a.v == b.v && a.id < b.id);
}

__device__ Best block_best(Best x, Best* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    Best y{__shfl_xor_sync(0xffffffffu, x.v, o), __shfl_xor_sync(0xffffffffu, x.id, o)};
    if (better(y, x)) x = y;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  if (threadIdx.x == 0) {
    Best b = scratch[0];
    for (int w = 1; w < kWarps; ++w)
      if (better(scratch[w], b)) b = scratch[w];
    scratch[kWarps] = b;
  }
  __syncthreads();
  return scratch[kWarps];
}

__device__ double block_sum(double x, double* scratch) {
  for (int o = 16; o > 0; o >>= 1) x = __dadd_rn(x, __shfl_xor_sync(0xffffffffu, x, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = scratch[0];
    for (int w = 1; w < kWarps; ++w) s = __dadd_rn(s, scratch[w]);
    scratch[kWarps] = s;
  }
  __syncthreads();
  return scratch[kWarps];
}

__device__ __forceinline__ double gumbel_score(double z, uint64_t seed, int64_t position,
                                               int32_t id) {
  const double u =
      counter_uniform(seed, static_cast<uint64_t>(position), static_cast<uint64_t>(id));
  return z - log(-log(u));
}

__global__ void __launch_bounds__(kThreads)
    sample_rows_kernel(const float* logits, int vocab, const SampleRowDev* rows,
                       SampleOutDev* out) {
  __shared__ Best best_scratch[kWarps + 1];
  __shared__ double sum_scratch[kWarps + 1];
  pdl_trigger();
  pdl_wait();
  const SampleRowDev row = rows[blockIdx.x];
  const float* x = logits + static_cast<int64_t>(row.logit_row) * vocab;

  // Argmax: each thread scans its ids in increasing order with a strict comparison.
  Best arg{0.0, -1};
  for (int i = threadIdx.x; i < vocab; i += kThreads)
    if (arg.id < 0 || static_cast<double>(x[i]) > arg.v) arg = Best{static_cast<double>(x[i]), i};
  arg = block_best(arg, best_scratch);
  const double m = arg.v;

  double s = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads)
    s = __dadd_rn(s, exp(static_cast<double>(x[i]) - m));
  const double lse = m + log(block_sum(s, sum_scratch));

  int32_t token = arg.id;
  double larger = 0.0;  // score rows: the ids whose logit is larger than the token's
  if (row.score_token >= 0) {
    token = row.score_token;
    const float xt = x[token];
    for (int i = threadIdx.x; i < vocab; i += kThreads) larger += x[i] > xt ? 1.0 : 0.0;
    larger = block_sum(larger, sum_scratch);
  } else if (row.temperature > 0.0f && row.sorted < 0) {
    const double inv_t = 1.0 / static_cast<double>(row.temperature);
    Best g{0.0, -1};
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const double z = static_cast<double>(x[i]) * inv_t;
      if (isinf(z) && z < 0) continue;
      const double sc = gumbel_score(z, row.seed, row.position, i);
      if (g.id < 0 || sc > g.v) g = Best{sc, i};
    }
    g = block_best(g, best_scratch);
    token = g.id < 0 ? 0 : g.id;
  }
  if (threadIdx.x == 0) {
    SampleOutDev& o = out[blockIdx.x];
    o.lse = lse;
    o.token = token;
    o.logprob = static_cast<float>(static_cast<double>(x[token]) - lse);
    o.rank = row.score_token >= 0 ? 1 + static_cast<int32_t>(larger) : 0;
    o.n_top = 0;
  }
}

__global__ void gather_kernel(const float* logits, int vocab, const SampleRowDev* rows, int n_rows,
                              int first_sorted, int count, float* keys, int32_t* ids,
                              int32_t* offsets) {
  // Block b fills sorted row first_sorted + b (found by a scan of the row list).
  const int target = first_sorted + blockIdx.x;
  __shared__ int row_index;
  if (threadIdx.x == 0) {
    row_index = -1;
    for (int i = 0; i < n_rows; ++i)
      if (rows[i].sorted == target) row_index = i;
  }
  __syncthreads();
  const float* x = logits + static_cast<int64_t>(rows[row_index].logit_row) * vocab;
  float* k = keys + static_cast<int64_t>(blockIdx.x) * vocab;
  int32_t* v = ids + static_cast<int64_t>(blockIdx.x) * vocab;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    k[i] = x[i];
    v[i] = i;
  }
  if (blockIdx.x == 0)
    for (int i = threadIdx.x; i <= count; i += blockDim.x) offsets[i] = i * vocab;
}

__global__ void __launch_bounds__(kThreads)
    sample_sorted_kernel(const float* logits, const float* keys, const int32_t* ids, int vocab,
                         const SampleRowDev* rows, int n_rows, int first_sorted,
                         SampleOutDev* out) {
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ Best best_scratch[kWarps + 1];
  __shared__ double sum_scratch[kWarps + 1];
  __shared__ int found;
  __shared__ int row_index;
  const int target = first_sorted + blockIdx.x;
  if (threadIdx.x == 0) {
    row_index = -1;
    for (int i = 0; i < n_rows; ++i)
      if (rows[i].sorted == target) row_index = i;
  }
  __syncthreads();
  const SampleRowDev row = rows[row_index];
  SampleOutDev& o = out[row_index];
  const float* x = logits + static_cast<int64_t>(row.logit_row) * vocab;
  const float* k = keys + static_cast<int64_t>(blockIdx.x) * vocab;
  const int32_t* id = ids + static_cast<int64_t>(blockIdx.x) * vocab;
  const double lse = o.lse;

  if (row.temperature > 0.0f && row.score_token < 0) {
    const double inv_t = 1.0 / static_cast<double>(row.temperature);
    int n = row.top_k > 0 ? min(row.top_k, vocab) : vocab;
    const double zmax = static_cast<double>(k[0]) * inv_t;
    auto prob = [&](int i) { return exp(static_cast<double>(k[i]) * inv_t - zmax); };
    if (row.top_p < 1.0f) {
      double total = 0.0;
      for (int i = threadIdx.x; i < n; i += kThreads) total = __dadd_rn(total, prob(i));
      total = block_sum(total, sum_scratch);
      // Smallest prefix whose cumulative probability reaches top_p, scanned 1024 ids at a time.
      if (threadIdx.x == 0) found = n;
      double carry = 0.0;
      for (int base = 0; base < n; base += kThreads) {
        const int i = base + static_cast<int>(threadIdx.x);
        const double v = i < n ? prob(i) / total : 0.0;
        double incl;
        double chunk_total;
        __syncthreads();
        Scan(scan_storage).InclusiveSum(v, incl, chunk_total);
        const double cum = carry + incl;
        if (i < n && cum >= static_cast<double>(row.top_p)) atomicMin(&found, i + 1);
        carry += chunk_total;
        __syncthreads();
        if (found < n) break;
      }
      n = found;
    }
    if (row.min_p > 0.0f) {
      // Sorted probabilities do not increase: keep ids down to the first below the threshold.
      const double threshold = static_cast<double>(row.min_p) * prob(0);
      __syncthreads();
      if (threadIdx.x == 0) found = n;
      __syncthreads();
      for (int i = 1 + static_cast<int>(threadIdx.x); i < n; i += kThreads)
        if (prob(i) < threshold) atomicMin(&found, i);
      __syncthreads();
      n = found;
    }
    Best g{0.0, -1};
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const double z = static_cast<double>(k[i]) * inv_t;
      if (isinf(z) && z < 0) continue;
      const Best c{gumbel_score(z, row.seed, row.position, id[i]), id[i]};
      if (better(c, g)) g = c;
    }
    g = block_best(g, best_scratch);
    if (threadIdx.x == 0) {
      o.token = g.id < 0 ? 0 : g.id;
      o.logprob = static_cast<float>(static_cast<double>(x[o.token]) - lse);
    }
  }
  if (threadIdx.x == 0) {
    const int n_top = min(row.top_logprobs, min(kSampleMaxTop, vocab));
    o.n_top = n_top;
    for (int j = 0; j < n_top; ++j) {
      o.top_ids[j] = id[j];
      o.top_logprobs[j] = static_cast<float>(static_cast<double>(k[j]) - lse);
    }
  }
}

}  // namespace

cudaError_t launch_sample_rows(const float* logits, int vocab, const SampleRowDev* rows, int n_rows,
                               SampleOutDev* out, cudaStream_t stream) {
  if (n_rows <= 0) return cudaSuccess;
  return launch_kernel(sample_rows_kernel, n_rows, kThreads, 0, stream, logits, vocab, rows, out);
}

cudaError_t launch_sample_gather(const float* logits, int vocab, const SampleRowDev* rows,
                                 int n_rows, int first_sorted, int count, float* keys, int32_t* ids,
                                 int32_t* offsets, cudaStream_t stream) {
  if (count > 0)
    gather_kernel<<<count, 256, 0, stream>>>(logits, vocab, rows, n_rows, first_sorted, count, keys,
                                             ids, offsets);
  return cudaGetLastError();
}

cudaError_t sort_segments_descending(void* temp, size_t& temp_bytes, const float* keys_in,
                                     float* keys_out, const int32_t* ids_in, int32_t* ids_out,
                                     int count, int vocab, const int32_t* offsets,
                                     cudaStream_t stream) {
  return cub::DeviceSegmentedRadixSort::SortPairsDescending(
      temp, temp_bytes, keys_in, keys_out, ids_in, ids_out, static_cast<int64_t>(count) * vocab,
      count, offsets, offsets + 1, 0, static_cast<int>(sizeof(float) * 8), stream);
}

cudaError_t launch_sample_sorted(const float* logits, const float* sorted_keys,
                                 const int32_t* sorted_ids, int vocab, const SampleRowDev* rows,
                                 int n_rows, int first_sorted, int count, SampleOutDev* out,
                                 cudaStream_t stream) {
  if (count > 0)
    sample_sorted_kernel<<<count, kThreads, 0, stream>>>(logits, sorted_keys, sorted_ids, vocab,
                                                         rows, n_rows, first_sorted, out);
  return cudaGetLastError();
}

}  // namespace llm42::cuda
