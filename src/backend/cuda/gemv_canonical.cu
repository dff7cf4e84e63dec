// Skinny GEMMs that reduce K in its natural order, one m16n8k16 tensor-core MMA after another
// into a single fp32 accumulator per output: out (m, n) = x (m, k) @ w (n, k)^T, m <= 16.
//
// Why: the canonical lane needs a GEMM whose every output element is one K-ordered dot product
// whatever M is. It uses cuBLASLt's split-K-free algorithms, which agree with each other bit for
// bit at every M (measured: docs/cuda-backend.md#cublas-batch-variance) but are slow at decode
// batch sizes (down_proj at M = 1 on the H200: 51-61 us against 32 for the fast lane's skinny
// GEMM). On the H200 a chain of k16 MMAs over K in order reproduces those algorithms' outputs
// bit for bit (cuda_korder_lab: qkv, o and down at M = 1, 3, 8 and 16, fp32 outputs, none of
// 401,408 elements differs), so such a kernel can serve the canonical lane at small M. That is an
// observation, not a documented guarantee: the canonical autotune (gemm.cpp), unless told not
// to (--no-cuda-canonical-skinny), admits the kernel for a bucket only after it reproduced the
// chosen cuBLASLt algorithm's every output bit on the tuning call's own data.
//
//   gemv_sequential_kernel  the reference: each thread loads the 4-byte fragment pieces of the
//                           MMA layouts straight from global memory; obviously in order, slow.
//                           Two orientations (weights as the MMA's A or B operand). The lab's.
//   gemv_canonical_kernel   the one the canonical lane runs: tokens as A (zero beyond m), 8
//                           weight rows per warp as B, both streamed through a block-wide
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
constexpr int kCanonStages = 4;                 // stages: 3 in flight while one is read
constexpr int kCanonStride = kCanonStageK + 8;  // bf16 per stage row: 16 bytes of padding keep
                                                // ldmatrix's 8 row addresses on distinct banks
constexpr int kCanonWRows = 8 * kCanonWarps;    // weight rows of a block
// A stage holds the block's 32 weight rows and XR rows of x (8 when m <= 8, else 16) over 256
// values of k. (Deeper rings, up to 10 stages where a grid is one wave, measured no faster on
// the H200: docs/benchmarks.md, fourth session.)
template <int XR>
constexpr size_t canon_smem() {
  return size_t{kCanonStages} * (kCanonWRows + XR) * kCanonStride * 2;
}

// Warp w of block b owns weight rows [8 (4 b + w), + 8); lane l copies 16-byte pieces (row j,
// bytes 16 l .. of the row's stage slice, j = 0..7), so each copy instruction of the warp reads
// 512 contiguous bytes. The block copies x's rows of the stage once for all its warps (rows past
// m zero-filled, so the MMA operands are exactly the reference's), and one barrier per stage
// both publishes the landed stage and frees the one read before it. Fragments come from shared
// memory only (ldmatrix.x4: B of steps q and q + 1 at row lane % 8, column 16 q + 8 (lane / 8);
// A likewise when m <= 8, else one step at a time, rows lane % 8 + 8 ((lane / 8) % 2)), a full
// stage's written as one batch ahead of its 16 MMAs: none depends on the accumulator, so only
// the MMAs form the serial chain. One accumulator, steps in increasing k: the reference's order
// exactly.
template <int XR>
__global__ void __launch_bounds__(32 * kCanonWarps)
    gemv_canonical_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                          void* __restrict__ out, bool out_f32, int m, int n, int k, int64_t ld) {
  static_assert(XR == 8 || XR == 16);
  // blockIdx.y: the leaf (a K range of k at column blockIdx.y * k; its own m x n output).
  x += static_cast<int64_t>(blockIdx.y) * k;
  w += static_cast<int64_t>(blockIdx.y) * k;
  out = static_cast<char*>(out) +
        static_cast<int64_t>(blockIdx.y) * m * n * (out_f32 ? 4 : 2);
  constexpr int kStageElems = (kCanonWRows + XR) * kCanonStride;
  constexpr int kSteps = kCanonStageK / 16;
  extern __shared__ __align__(16) uint16_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int row0 = (blockIdx.x * kCanonWarps + warp) * 8;
  const bool active = row0 < n;  // a warp past n copies and computes nothing, and keeps the
                                 // barriers
  const int n_stages = (k + kCanonStageK - 1) / kCanonStageK;
  const uint16_t* wrow[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) wrow[j] = w + static_cast<int64_t>(min(row0 + j, n - 1)) * ld;
  // Columns past k are zero-filled; no MMA step reads them.
  const auto issue_w = [&](int st) {
    if (st >= n_stages || !active) return;
    const int kbase = st * kCanonStageK, col = 8 * lane;
    const bool valid = kbase + col < k;
    uint16_t* stage = smem + (st % kCanonStages) * kStageElems + warp * 8 * kCanonStride;
#pragma unroll
    for (int j = 0; j < 8; ++j)
      cp_async16(stage + j * kCanonStride + col, valid ? wrow[j] + kbase + col : wrow[j], valid);
  };
  const auto issue_x = [&](int st) {
    if (st >= n_stages) return;
    const int kbase = st * kCanonStageK;
    uint16_t* stage = smem + (st % kCanonStages) * kStageElems + kCanonWRows * kCanonStride;
#pragma unroll
    for (int e = threadIdx.x; e < XR * 32; e += 32 * kCanonWarps) {
      const int r = e / 32, col = 8 * (e % 32);
      const bool valid = r < m && kbase + col < k;
      cp_async16(stage + r * kCanonStride + col,
                 valid ? x + static_cast<int64_t>(r) * ld + kbase + col : x, valid);
    }
  };
  // The weights are constant: the first stages may fill before the kernel that writes x ends.
  // One group per weight stage, then x of those stages as one more, all waited for at once.
#pragma unroll
  for (int st = 0; st < kCanonStages - 1; ++st) {
    issue_w(st);
    cp_async_commit();
  }
  pdl_wait();
#pragma unroll
  for (int st = 0; st < kCanonStages - 1; ++st) issue_x(st);
  cp_async_commit();
  cp_async_wait<0>();
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int st = 0; st < n_stages; ++st) {
    // Stage st has landed (the groups after it: the S - 2 stages issued since) for every
    // thread, and every warp is done with the stage read last iteration, which is refilled now.
    cp_async_wait<kCanonStages - 2>();
    __syncthreads();
    issue_w(st + kCanonStages - 1);
    issue_x(st + kCanonStages - 1);
    cp_async_commit();
    if (!active) continue;
    const uint16_t* sw = smem + (st % kCanonStages) * kStageElems + warp * 8 * kCanonStride;
    const uint16_t* sx = smem + (st % kCanonStages) * kStageElems + kCanonWRows * kCanonStride;
    const int steps = min(kCanonStageK, k - st * kCanonStageK) / 16;
    const uint16_t* bw = sw + (lane % 8) * kCanonStride + 8 * (lane / 8);
    const uint16_t* ax =
        XR == 8 ? sx + (lane % 8) * kCanonStride + 8 * (lane / 8)
                : sx + (lane % 8 + 8 * ((lane / 8) % 2)) * kCanonStride + 8 * (lane / 16);
    if (steps == kSteps) {
      uint32_t b[kSteps / 2][4];
#pragma unroll
      for (int i = 0; i < kSteps / 2; ++i) ldmatrix_x4(b[i], bw + 32 * i);
      if constexpr (XR == 8) {
        uint32_t a[kSteps / 2][4];
#pragma unroll
        for (int i = 0; i < kSteps / 2; ++i) ldmatrix_x4(a[i], ax + 32 * i);
#pragma unroll
        for (int i = 0; i < kSteps / 2; ++i) {
          mma_bf16(acc, a[i][0], 0u, a[i][1], 0u, b[i][0], b[i][1]);
          mma_bf16(acc, a[i][2], 0u, a[i][3], 0u, b[i][2], b[i][3]);
        }
      } else {
        uint32_t a[kSteps][4];
#pragma unroll
        for (int q = 0; q < kSteps; ++q) ldmatrix_x4(a[q], ax + 16 * q);
#pragma unroll
        for (int i = 0; i < kSteps / 2; ++i) {
          mma_bf16(acc, a[2 * i][0], a[2 * i][1], a[2 * i][2], a[2 * i][3], b[i][0], b[i][1]);
          mma_bf16(acc, a[2 * i + 1][0], a[2 * i + 1][1], a[2 * i + 1][2], a[2 * i + 1][3], b[i][2],
                   b[i][3]);
        }
      }
      continue;
    }
    // The last stage of a k that is not a multiple of 256: step by step.
    for (int q = 0; q < steps; q += 2) {
      uint32_t b[4];
      ldmatrix_x4(b, bw + 16 * q);
      if constexpr (XR == 8) {
        uint32_t a[4];
        ldmatrix_x4(a, ax + 16 * q);
        mma_bf16(acc, a[0], 0u, a[1], 0u, b[0], b[1]);
        if (q + 1 < steps) mma_bf16(acc, a[2], 0u, a[3], 0u, b[2], b[3]);
      } else {
        uint32_t a[4];
        ldmatrix_x4(a, ax + 16 * q);
        mma_bf16(acc, a[0], a[1], a[2], a[3], b[0], b[1]);
        if (q + 1 < steps) {
          ldmatrix_x4(a, ax + 16 * (q + 1));
          mma_bf16(acc, a[0], a[1], a[2], a[3], b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();
  pdl_trigger();
  if (!active) return;
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
namespace {

// One instantiation's launch; its shared-memory size is past 48 KiB.
template <int XR>
cudaError_t launch_canon(dim3 blocks, cudaStream_t stream, const uint16_t* x, const uint16_t* w,
                         void* out, bool f32, int m, int n, int k, int64_t ld) {
  constexpr size_t kSmem = canon_smem<XR>();
  static_assert(kSmem <= 227 * 1024, "canonical skinny ring does not fit in shared memory");
  if (const cudaError_t e = allow_dynamic_smem<gemv_canonical_kernel<XR>>(kSmem); e != cudaSuccess)
    return e;
  return launch_kernel(gemv_canonical_kernel<XR>, blocks, 32 * kCanonWarps, kSmem, stream, x, w,
                       out, f32, m, n, k, ld);
}

}  // namespace

cudaError_t launch_gemv_canonical(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                                  int64_t m, int64_t n, int64_t k, cudaStream_t stream, int64_t ld,
                                  int leaves) {
  if (ld == 0) ld = k;
  if (m < 1 || m > kGemvMaxM || n < 1 || k < 16 || k % 16 != 0 || n > INT32_MAX - 32 ||
      k > INT32_MAX || (out_dtype != DType::kBF16 && out_dtype != DType::kF32) ||
      reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0 ||
      ld % 8 != 0 || ld < int64_t{k} * leaves || leaves < 1 || leaves > 8)
    return cudaErrorInvalidValue;
  const dim3 blocks(static_cast<unsigned>((n + kCanonWRows - 1) / kCanonWRows),
                    static_cast<unsigned>(leaves));
  const bool f32 = out_dtype == DType::kF32;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (m <= 8) return launch_canon<8>(blocks, stream, x, w, out, f32, mi, ni, ki, ld);
  return launch_canon<16>(blocks, stream, x, w, out, f32, mi, ni, ki, ld);
}

}  // namespace llm42::cuda
