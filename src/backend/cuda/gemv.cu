// Skinny GEMM for the fast lane at decode batch sizes: out (m, n) = x (m, k) @ w (n, k)^T with
// m <= kGemvMaxM, bf16 in, fp32 accumulation. At such m a GEMM only streams the weights, and
// cuBLASLt's kernels reach 40-85 % of the HBM bandwidth on the Llama-3.1-8B shapes
// (docs/results/2026-11-24-h100/run5-cuda_gemm_lab.txt); this kernel is built to stream.
//
// Tensor cores with the operands swapped: the weight rows are the MMA's M side (a warp tile is
// 16 or 32 rows of w) and the tokens its N side (8 per n-tile, zero beyond m). Because the order
// of the K reduction is free in the fast lane, K is permuted so that each thread loads 16
// contiguous bytes: in every 32-wide chunk of K, thread (g = lane / 4, c = lane % 4) loads
// k = 8c .. 8c+7 of rows g and g + 8 (and of token g), and feeds the first four to one
// m16n8k16 MMA and the last four to a second, as the logical k pairs (2c, 2c+1) and
// (2c+8, 2c+9) of the fragment layouts. A and B use the same permutation, so every product
// pairs the right elements.
//
// A block is 8 warps over the same rows; warp w takes chunks w, w + 8, w + 16, ... of K, and
// the eight partial tiles are summed in warp order through shared memory. Launched with PDL
// (launch.cuh), a block issues its first iteration's weight loads before it waits for the
// kernel that writes x, so the weight stream starts while that kernel finishes. The result repeats
// bit for bit for the same (m, n, k) but its K order differs from cuBLASLt's: this kernel never
// runs in the canonical lane.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

namespace llm42::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;

struct U4 {
  uint32_t x, y, z, w;
};

// Weights are read once: stream them past L1 (which keeps x, read by every warp).
__device__ __forceinline__ U4 load_stream(const uint16_t* p) {
  U4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ U4 load_cached(const uint16_t* p) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
  return U4{v.x, v.y, v.z, v.w};
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// RT: 16-row tiles of w per warp (1 or 2); NT: 8-token tiles (1: m <= 8, 2: m <= 16); U: K
// chunks of 32 loaded before the first MMA of an iteration (loads in flight per thread: U
// times 2 RT weight vectors and NT token vectors).
template <int RT, int NT, int U>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                void* __restrict__ out, bool out_f32, int m, int n, int k) {
  constexpr int kRows = 16 * RT;
  __shared__ float red[kWarps][kRows][8 * NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c = lane % 4;
  const int row0 = blockIdx.x * kRows;
  const int n_chunks = (k + 31) / 32;

  // Row pointers of this thread (rows beyond n read row 0 of the tile and are never stored).
  const uint16_t* wrow[RT][2];
#pragma unroll
  for (int t = 0; t < RT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row0 + 16 * t + 8 * h + g;
      wrow[t][h] = w + static_cast<int64_t>(r < n ? r : row0) * k + 8 * c;
    }
  const uint16_t* xrow[NT];
  bool xvalid[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int tok = 8 * j + g;
    xvalid[j] = tok < m;
    xrow[j] = x + static_cast<int64_t>(xvalid[j] ? tok : 0) * k + 8 * c;
  }

  float acc[RT][NT][4];
#pragma unroll
  for (int t = 0; t < RT; ++t)
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[t][j][0] = acc[t][j][1] = acc[t][j][2] = acc[t][j][3] = 0.0f;

  U4 wv[U][RT][2];
  const auto load_weights = [&](int base) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int chunk = base + u * kWarps;
      const int kk = chunk * 32;
      const bool valid = chunk < n_chunks && kk + 8 * c < k;
#pragma unroll
      for (int t = 0; t < RT; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wv[u][t][h] = valid ? load_stream(wrow[t][h] + kk) : U4{0, 0, 0, 0};
    }
  };
  // The weights are constant: the first iteration's loads may precede the wait for x.
  pdl_trigger();
  load_weights(warp);
  pdl_wait();

  for (int base = warp; base < n_chunks; base += kWarps * U) {
    if (base != warp) load_weights(base);
    U4 xv[U][NT];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int chunk = base + u * kWarps;
      const int kk = chunk * 32;
      const bool valid = chunk < n_chunks && kk + 8 * c < k;
#pragma unroll
      for (int j = 0; j < NT; ++j)
        xv[u][j] = valid && xvalid[j] ? load_cached(xrow[j] + kk) : U4{0, 0, 0, 0};
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int t = 0; t < RT; ++t)
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const U4& a = wv[u][t][0];
          const U4& b = wv[u][t][1];
          mma_bf16(acc[t][j], a.x, b.x, a.y, b.y, xv[u][j].x, xv[u][j].y);
          mma_bf16(acc[t][j], a.z, b.z, a.w, b.w, xv[u][j].z, xv[u][j].w);
        }
  }

  // D fragment: (row g, tokens 2c, 2c+1) and (row g + 8, tokens 2c, 2c+1) of each tile.
#pragma unroll
  for (int t = 0; t < RT; ++t)
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      red[warp][16 * t + g][8 * j + 2 * c] = acc[t][j][0];
      red[warp][16 * t + g][8 * j + 2 * c + 1] = acc[t][j][1];
      red[warp][16 * t + g + 8][8 * j + 2 * c] = acc[t][j][2];
      red[warp][16 * t + g + 8][8 * j + 2 * c + 1] = acc[t][j][3];
    }
  __syncthreads();
  for (int e = threadIdx.x; e < kRows * 8 * NT; e += kThreads) {
    const int r = e / (8 * NT), tok = e % (8 * NT);
    const int row = row0 + r;
    if (row >= n || tok >= m) continue;
    float s = red[0][r][tok];
#pragma unroll
    for (int v = 1; v < kWarps; ++v) s = __fadd_rn(s, red[v][r][tok]);
    const int64_t o = static_cast<int64_t>(tok) * n + row;
    if (out_f32) {
      static_cast<float*>(out)[o] = s;
    } else {
      static_cast<__nv_bfloat16*>(out)[o] = __float2bfloat16_rn(s);
    }
  }
}

template <int RT, int NT, int U>
cudaError_t launch(const uint16_t* x, const uint16_t* w, void* out, bool out_f32, int m, int n,
                   int k, cudaStream_t stream) {
  const int blocks = (n + 16 * RT - 1) / (16 * RT);
  return launch_kernel(gemv_kernel<RT, NT, U>, blocks, kThreads, 0, stream, x, w, out, out_f32, m,
                       n, k);
}

template <int NT>
cudaError_t launch_variant(int variant, const uint16_t* x, const uint16_t* w, void* out,
                           bool out_f32, int m, int n, int k, cudaStream_t stream) {
  switch (variant) {
    case 0:
      return launch<1, NT, 2>(x, w, out, out_f32, m, n, k, stream);
    case 1:
      return launch<1, NT, 4>(x, w, out, out_f32, m, n, k, stream);
    case 2:
      return launch<2, NT, 2>(x, w, out, out_f32, m, n, k, stream);
    case 3:
      return launch<2, NT, 4>(x, w, out, out_f32, m, n, k, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

const char* gemv_variant_name(int variant) {
  switch (variant) {
    case 0:
      return "gemv rows 16 unroll 2";
    case 1:
      return "gemv rows 16 unroll 4";
    case 2:
      return "gemv rows 32 unroll 2";
    case 3:
      return "gemv rows 32 unroll 4";
    default:
      return "gemv ?";
  }
}

cudaError_t launch_gemv(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype, int64_t m,
                        int64_t n, int64_t k, int variant, cudaStream_t stream) {
  if (m < 1 || m > kGemvMaxM || k % 8 != 0 || n > INT32_MAX || k > INT32_MAX ||
      (out_dtype != DType::kBF16 && out_dtype != DType::kF32) ||
      reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0)
    return cudaErrorInvalidValue;
  const bool f32 = out_dtype == DType::kF32;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  return m <= 8 ? launch_variant<1>(variant, x, w, out, f32, mi, ni, ki, stream)
                : launch_variant<2>(variant, x, w, out, f32, mi, ni, ki, stream);
}

}  // namespace llm42::cuda
