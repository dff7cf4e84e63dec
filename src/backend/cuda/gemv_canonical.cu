// Skinny GEMMs that reduce K in its natural order, one m16n8k16 tensor-core MMA after another
// into a single fp32 accumulator per output: out (m, n) = x (m, k) @ w (n, k)^T, m <= 16.
//
// Why: the canonical lane needs a GEMM whose every output element is one K-ordered dot product
// whatever M is. It uses cuBLASLt's split-K-free algorithms, which agree with each other bit for
// bit at every M (shared/notes/cublas-batch-invariance.md) but are slow at decode batch sizes
// (down_proj at M = 1 on the H200: 51-61 us against 32 for the fast lane's skinny GEMM). On the
// H200 a chain of k16 MMAs over K in order reproduces those algorithms' outputs bit for bit
// (cuda_korder_lab: qkv, o and down at M = 1, 3, 8 and 16, fp32 outputs, none of 401,408
// elements differs), so such a kernel can serve the canonical lane at small M. That is an
// observation, not a documented guarantee: the canonical autotune (gemm.cpp), when allowed to
// (--cuda-canonical-skinny), admits the kernel for a bucket only after it reproduced the chosen
// cuBLASLt algorithm's every output bit on the tuning call's own data.
//
//   gemv_sequential_kernel  the reference: each thread loads the 4-byte fragment pieces of the
//                           MMA layouts straight from global memory; obviously in order, slow.
//                           Two orientations (weights as the MMA's A or B operand). The lab's.
//   gemv_canonical_kernel   the one the canonical lane runs: tokens as A (16 rows, zero beyond
//                           m), 8 weight rows per warp as B, streamed through a per-warp
//                           cp.async ring of shared-memory stages and read back with ldmatrix;
//                           the same MMAs in the same order as the reference.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"

namespace llm42::cuda {
namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ uint32_t ld32(const uint16_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Fragments of m16n8k16.row.col for thread (g = lane / 4, c = lane % 4): A rows g and g + 8 at
// k = 2c, 2c + 1 and 2c + 8, 2c + 9; B column g at the same k; D rows g and g + 8, columns 2c
// and 2c + 1.
template <bool kWeightsAsA>
__global__ void gemv_sequential_kernel(const uint16_t* x, const uint16_t* w, float* out, int m,
                                       int n, int k) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  if constexpr (kWeightsAsA) {
    const int row0 = (blockIdx.x * kWarps + warp) * 16;
    if (row0 >= n) return;
    const int ra = min(row0 + g, n - 1), rb = min(row0 + g + 8, n - 1);
    for (int j = 0; j * 8 < m; ++j) {
      const int tok = 8 * j + g;
      const bool tv = tok < m;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int k0 = 0; k0 < k; k0 += 16) {
        const int64_t ka = k0 + 2 * c, kb = ka + 8;
        mma_bf16(acc, ld32(w + ra * int64_t{k} + ka), ld32(w + rb * int64_t{k} + ka),
                 ld32(w + ra * int64_t{k} + kb), ld32(w + rb * int64_t{k} + kb),
                 tv ? ld32(x + tok * int64_t{k} + ka) : 0u,
                 tv ? ld32(x + tok * int64_t{k} + kb) : 0u);
      }
      for (int e = 0; e < 4; ++e) {
        const int row = row0 + g + (e / 2) * 8, t = 8 * j + 2 * c + e % 2;
        if (row < n && t < m) out[int64_t{t} * n + row] = acc[e];
      }
    }
  } else {
    const int row0 = (blockIdx.x * kWarps + warp) * 8;
    if (row0 >= n) return;
    const int wr = min(row0 + g, n - 1);
    const bool va = g < m, vb = g + 8 < m;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < k; k0 += 16) {
      const int64_t ka = k0 + 2 * c, kb = ka + 8;
      mma_bf16(acc, va ? ld32(x + g * int64_t{k} + ka) : 0u,
               vb ? ld32(x + (g + 8) * int64_t{k} + ka) : 0u,
               va ? ld32(x + g * int64_t{k} + kb) : 0u,
               vb ? ld32(x + (g + 8) * int64_t{k} + kb) : 0u, ld32(w + wr * int64_t{k} + ka),
               ld32(w + wr * int64_t{k} + kb));
    }
    for (int e = 0; e < 4; ++e) {
      const int t = g + (e / 2) * 8, row = row0 + 2 * c + e % 2;
      if (row < n && t < m) out[int64_t{t} * n + row] = acc[e];
    }
  }
}

constexpr int kCanonWarps = 4;                  // warps per block, each on its own 8 weight rows
constexpr int kCanonStageK = 256;               // k per shared-memory stage (16 MMA steps)
constexpr int kCanonStages = 4;                 // stages per warp: 3 in flight while one is read
constexpr int kCanonStride = kCanonStageK + 8;  // bf16 per stage row: 16 bytes of padding keep
                                                // ldmatrix's 8 row addresses on distinct banks
constexpr size_t kCanonSmem = size_t{kCanonWarps} * kCanonStages * 8 * kCanonStride * 2;

// Warp w of block b owns weight rows [8 (4 b + w), + 8). Its stages hold those 8 rows over 256
// values of k each; a lane copies 16-byte pieces (row j, bytes 16 lane .. of the row's stage
// slice, j = 0..7), so each copy instruction of the warp reads 512 contiguous bytes. Once a stage
// has landed (every lane waited for its own copies, then __syncwarp), ldmatrix.x4 at row
// lane % 8, column 16 q + 8 (lane / 8) gives the B fragments of MMA steps q and q + 1 (matrices:
// k 0-7 and 8-15 of step q, then of step q + 1), and the A fragments (tokens g and g + 8 at k
// 2c, 2c + 8) come from x through L1. One accumulator, steps in increasing k: the reference's
// order exactly.
__global__ void __launch_bounds__(32 * kCanonWarps)
    gemv_canonical_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                          void* __restrict__ out, bool out_f32, int m, int n, int k) {
  extern __shared__ __align__(16) uint16_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int row0 = (blockIdx.x * kCanonWarps + warp) * 8;
  if (row0 >= n) return;  // the whole warp; the kernel has no block-wide barrier
  uint16_t* ring = smem + warp * (kCanonStages * 8 * kCanonStride);
  const int n_stages = (k + kCanonStageK - 1) / kCanonStageK;
  const uint16_t* wrow[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) wrow[j] = w + static_cast<int64_t>(min(row0 + j, n - 1)) * k;
  // Stages past the last one copy nothing and still commit (an empty group), so every wait
  // below is the same. Columns past k are zero-filled; no MMA step reads them.
  const auto issue = [&](int st) {
    if (st < n_stages) {
      const int kbase = st * kCanonStageK, col = 8 * lane;
      const bool valid = kbase + col < k;
      uint16_t* stage = ring + (st % kCanonStages) * 8 * kCanonStride;
#pragma unroll
      for (int j = 0; j < 8; ++j)
        cp_async16(stage + j * kCanonStride + col, valid ? wrow[j] + kbase + col : wrow[j], valid);
    }
    cp_async_commit();
  };
  // The weights are constant: the first stages may fill before the kernel that writes x ends.
#pragma unroll
  for (int st = 0; st < kCanonStages - 1; ++st) issue(st);
  pdl_wait();
  const bool va = g < m, vb = g + 8 < m;
  const uint16_t* xa = x + static_cast<int64_t>(va ? g : 0) * k + 2 * c;
  const uint16_t* xb = x + static_cast<int64_t>(vb ? g + 8 : 0) * k + 2 * c;
  const auto x32 = [](const uint16_t* p) { return __ldg(reinterpret_cast<const uint32_t*>(p)); };
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int st = 0; st < n_stages; ++st) {
    issue(st + kCanonStages - 1);
    cp_async_wait<kCanonStages - 1>();  // stage st's copies (this lane's) have landed
    __syncwarp();                       // and every other lane's
    const uint16_t* stage = ring + (st % kCanonStages) * 8 * kCanonStride;
    const int kbase = st * kCanonStageK;
    const int steps = min(kCanonStageK, k - kbase) / 16;
#pragma unroll
    for (int q = 0; q < kCanonStageK / 16; q += 2) {
      if (q >= steps) break;
      uint32_t b[4];
      ldmatrix_x4(b, stage + (lane % 8) * kCanonStride + 16 * q + 8 * (lane / 8));
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (q + h >= steps) break;
        const int kk = kbase + 16 * (q + h);
        mma_bf16(acc, va ? x32(xa + kk) : 0u, vb ? x32(xb + kk) : 0u, va ? x32(xa + kk + 8) : 0u,
                 vb ? x32(xb + kk + 8) : 0u, b[2 * h], b[2 * h + 1]);
      }
    }
    __syncwarp();  // every lane has read the stage before it is refilled
  }
  cp_async_wait<0>();
  pdl_trigger();
  // D: tokens g and g + 8, weight rows 2c and 2c + 1 of the warp's 8.
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int t = g + (e / 2) * 8, row = row0 + 2 * c + e % 2;
    if (row >= n || t >= m) continue;
    const int64_t o = static_cast<int64_t>(t) * n + row;
    if (out_f32) {
      static_cast<float*>(out)[o] = acc[e];
    } else {
      static_cast<__nv_bfloat16*>(out)[o] = __float2bfloat16_rn(acc[e]);
    }
  }
}

}  // namespace

cudaError_t launch_gemv_sequential(const uint16_t* x, const uint16_t* w, float* out, int64_t m,
                                   int64_t n, int64_t k, bool weights_as_a, cudaStream_t stream) {
  if (m < 1 || m > kGemvMaxM || k % 16 != 0 || n > INT32_MAX || k > INT32_MAX)
    return cudaErrorInvalidValue;
  const int rows_per_block = kWarps * (weights_as_a ? 16 : 8);
  const int blocks = static_cast<int>((n + rows_per_block - 1) / rows_per_block);
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (weights_as_a) {
    gemv_sequential_kernel<true><<<blocks, 32 * kWarps, 0, stream>>>(x, w, out, mi, ni, ki);
  } else {
    gemv_sequential_kernel<false><<<blocks, 32 * kWarps, 0, stream>>>(x, w, out, mi, ni, ki);
  }
  return cudaGetLastError();
}

}  // namespace llm42::cuda

namespace llm42::cuda {

cudaError_t launch_gemv_canonical(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                                  int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (m < 1 || m > kGemvMaxM || n < 1 || k < 16 || k % 16 != 0 || n > INT32_MAX - 32 ||
      k > INT32_MAX || (out_dtype != DType::kBF16 && out_dtype != DType::kF32) ||
      reinterpret_cast<uintptr_t>(x) % 4 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0)
    return cudaErrorInvalidValue;
  // The ring passes 48 KiB. Set once per process: one process drives one GPU.
  static const cudaError_t set = cudaFuncSetAttribute(
      gemv_canonical_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kCanonSmem);
  if (set != cudaSuccess) return set;
  const int rows_per_block = 8 * kCanonWarps;
  const int blocks = static_cast<int>((n + rows_per_block - 1) / rows_per_block);
  return launch_kernel(gemv_canonical_kernel, blocks, 32 * kCanonWarps, kCanonSmem, stream, x, w,
                       out, out_dtype == DType::kF32, static_cast<int>(m), static_cast<int>(n),
                       static_cast<int>(k));
}

}  // namespace llm42::cuda
