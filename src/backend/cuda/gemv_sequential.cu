// A skinny GEMM that reduces K in its natural order, one m16n8k16 tensor-core MMA after another
// into a single fp32 accumulator per output: out (m, n) f32 = x (m, k) @ w (n, k)^T, m <= 16.
//
// Why it exists: the canonical lane needs a GEMM whose every output element is one K-ordered dot
// product whatever M is. It uses cuBLASLt's split-K-free algorithms, which agree with each other
// bit for bit at every M (shared/notes/cublas-batch-invariance.md) but are slow at decode batch
// sizes (at M = 1 on the H200, down_proj takes 51-55 us against the skinny GEMM's 32). If the
// tensor cores' k16 step is the same operation in cuBLASLt's kernels and in mma.sync, a kernel
// that chains those steps over K in order gives cuBLASLt's bits, and could serve the canonical
// lane at small M. cuda_korder_lab checks that hypothesis on the device; nothing else calls this
// kernel. It is written to be obviously in order, not fast: each thread loads the 4-byte
// fragment pieces of the MMA layouts straight from global memory.
//
// Two orientations: weights as the MMA's A operand (16 weight rows per warp, tokens as the 8
// columns of B) or tokens as A (16 token rows, zero beyond m) and 8 weight rows as B.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"

namespace llm42::cuda {
namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ uint32_t ld32(const uint16_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
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
