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
// the eight partial tiles are summed in warp order through shared memory. The weights reach
// the MMAs through registers or through a cp.async pipeline in shared memory (gemv_kernel). The
// result repeats bit for bit for the same (m, n, k) but its K order differs from cuBLASLt's: this
// kernel never runs in the canonical lane.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"

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

// What a thread of a block of RT 16-row tiles and NT 8-token tiles reads and accumulates.
template <int RT, int NT>
struct Lane {
  int warp, g, c, row0, n_chunks;
  const uint16_t* wrow[RT][2];  // rows beyond n read row 0 of the tile and are never stored
  const uint16_t* xrow[NT];
  bool xvalid[NT];
  float acc[RT][NT][4];

  __device__ Lane(const uint16_t* x, const uint16_t* w, int m, int n, int k) {
    warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    g = lane / 4;
    c = lane % 4;
    row0 = blockIdx.x * 16 * RT;
    n_chunks = (k + 31) / 32;
#pragma unroll
    for (int t = 0; t < RT; ++t)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = row0 + 16 * t + 8 * h + g;
        wrow[t][h] = w + static_cast<int64_t>(r < n ? r : row0) * k + 8 * c;
      }
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int tok = 8 * j + g;
      xvalid[j] = tok < m;
      xrow[j] = x + static_cast<int64_t>(xvalid[j] ? tok : 0) * k + 8 * c;
    }
#pragma unroll
    for (int t = 0; t < RT; ++t)
#pragma unroll
      for (int j = 0; j < NT; ++j) acc[t][j][0] = acc[t][j][1] = acc[t][j][2] = acc[t][j][3] = 0;
  }

  // Does chunk `chunk` hold this thread's 8 values of k?
  __device__ __forceinline__ bool valid(int chunk, int k) const {
    return chunk < n_chunks && chunk * 32 + 8 * c < k;
  }

  // The two MMAs of one chunk: weights a (rows g) and b (rows g + 8) of tile t, tokens xv[j].
  __device__ __forceinline__ void mma_chunk(const U4 (&wv)[RT][2], const U4 (&xv)[NT]) {
#pragma unroll
    for (int t = 0; t < RT; ++t)
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const U4& a = wv[t][0];
        const U4& b = wv[t][1];
        mma_bf16(acc[t][j], a.x, b.x, a.y, b.y, xv[j].x, xv[j].y);
        mma_bf16(acc[t][j], a.z, b.z, a.w, b.w, xv[j].z, xv[j].w);
      }
  }

  __device__ __forceinline__ void load_x(U4 (&xv)[NT], int chunk, int k) const {
    const bool v = valid(chunk, k);
#pragma unroll
    for (int j = 0; j < NT; ++j)
      xv[j] = v && xvalid[j] ? load_cached(xrow[j] + chunk * 32) : U4{0, 0, 0, 0};
  }

  // Sums the 8 warps' tiles in warp order and stores the block's rows.
  __device__ __forceinline__ void reduce_store(float (&red)[kWarps][16 * RT][8 * NT], void* out,
                                               bool out_f32, int m, int n) const {
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
    for (int e = threadIdx.x; e < 16 * RT * 8 * NT; e += kThreads) {
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
};

// RT: 16-row tiles of w per warp (1 or 2); NT: 8-token tiles (1: m <= 8, 2: m <= 16); U: K
// chunks of 32 per iteration of a warp. P = 0: the weights go to registers, U chunks loaded
// before the first MMA of an iteration. P > 0: a per-thread pipeline of P stages in shared
// memory filled by cp.async, P - 1 iterations ahead of the MMAs, so the loads stay in flight
// while the warp computes. Each thread reads back only the bytes it copied (its own column
// of the stage, conflict-free), so the pipeline needs no barrier. All variants add the same
// products in the same order: they give the same bits.
template <int RT, int NT, int U, int P>
__global__ void __launch_bounds__(kThreads)
    gemv_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                void* __restrict__ out, bool out_f32, int m, int n, int k) {
  __shared__ float red[kWarps][16 * RT][8 * NT];
  Lane<RT, NT> L(x, w, m, n, k);
  const int warp = L.warp;
  const int n_chunks = L.n_chunks;
  constexpr int kStep = kWarps * U;  // chunks between a warp's iterations

  if constexpr (P == 0) {
    pdl_wait();
    for (int base = warp; base < n_chunks; base += kStep) {
      U4 wv[U][RT][2];
      U4 xv[U][NT];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int chunk = base + u * kWarps;
        const bool v = L.valid(chunk, k);
#pragma unroll
        for (int t = 0; t < RT; ++t)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            wv[u][t][h] = v ? load_stream(L.wrow[t][h] + chunk * 32) : U4{0, 0, 0, 0};
        L.load_x(xv[u], chunk, k);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) L.mma_chunk(wv[u], xv[u]);
    }
  } else {
    extern __shared__ uint4 stage[];  // [P][U][RT][2][kThreads]
    const int n_iters = warp < n_chunks ? (n_chunks - warp + kStep - 1) / kStep : 0;
    const auto slot = [&](int s, int u, int t, int h) -> uint4* {
      return &stage[(((s * U + u) * RT + t) * 2 + h) * kThreads + threadIdx.x];
    };
    // Past the last iteration the copies zero-fill (read nothing) and the group still counts,
    // so the wait below is the same in every iteration.
    const auto issue = [&](int it) {
      const int s = it % P;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int chunk = warp + it * kStep + u * kWarps;
        const bool v = it < n_iters && L.valid(chunk, k);
#pragma unroll
        for (int t = 0; t < RT; ++t)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            cp_async16(slot(s, u, t, h), v ? L.wrow[t][h] + chunk * 32 : L.wrow[t][h], v);
      }
      cp_async_commit();
    };
    // The weights are constant: the first stages may fill before the kernel that writes x ends.
#pragma unroll
    for (int it = 0; it < P - 1; ++it) issue(it);
    pdl_wait();
    for (int it = 0; it < n_iters; ++it) {
      issue(it + P - 1);
      cp_async_wait<P - 1>();  // iteration it's group has landed
      const int s = it % P;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int chunk = warp + it * kStep + u * kWarps;
        U4 xv[NT];
        L.load_x(xv, chunk, k);
        U4 wv[RT][2];
#pragma unroll
        for (int t = 0; t < RT; ++t)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const uint4 q = *slot(s, u, t, h);
            wv[t][h] = U4{q.x, q.y, q.z, q.w};
          }
        L.mma_chunk(wv, xv);
      }
    }
    cp_async_wait<0>();
  }
  pdl_trigger();  // the next kernel may launch while this one sums and stores
  L.reduce_store(red, out, out_f32, m, n);
}

template <int RT, int NT, int U, int P>
cudaError_t launch(const uint16_t* x, const uint16_t* w, void* out, bool out_f32, int m, int n,
                   int k, cudaStream_t stream) {
  constexpr size_t kStageBytes = size_t{P} * U * RT * 2 * kThreads * sizeof(uint4);
  // The stages and the static reduction tile may pass 48 KiB together.
  if constexpr (P > 0) {
    if (const cudaError_t e = allow_dynamic_smem<gemv_kernel<RT, NT, U, P>>(kStageBytes);
        e != cudaSuccess)
      return e;
  }
  const int blocks = (n + 16 * RT - 1) / (16 * RT);
  return launch_kernel(gemv_kernel<RT, NT, U, P>, blocks, kThreads, kStageBytes, stream, x, w, out,
                       out_f32, m, n, k);
}

// The variants the fast lane times per shape: {rows per warp, chunks per iteration, stages}.
struct Variant {
  int rt, u, p;
  const char* name;
};
constexpr Variant kVariants[kGemvSameOrderVariants] = {
    {1, 2, 0, "gemv rows 16 unroll 2"},          {1, 4, 0, "gemv rows 16 unroll 4"},
    {2, 2, 0, "gemv rows 32 unroll 2"},          {2, 4, 0, "gemv rows 32 unroll 4"},
    {1, 2, 3, "gemv rows 16 unroll 2 stages 3"}, {1, 2, 4, "gemv rows 16 unroll 2 stages 4"},
    {1, 2, 5, "gemv rows 16 unroll 2 stages 5"}, {2, 2, 3, "gemv rows 32 unroll 2 stages 3"},
};

template <int NT, int V = 0>
cudaError_t launch_variant(int variant, const uint16_t* x, const uint16_t* w, void* out,
                           bool out_f32, int m, int n, int k, cudaStream_t stream) {
  if constexpr (V == kGemvSameOrderVariants) {
    return cudaErrorInvalidValue;
  } else {
    if (variant != V)
      return launch_variant<NT, V + 1>(variant, x, w, out, out_f32, m, n, k, stream);
    constexpr Variant v = kVariants[V];
    return launch<v.rt, NT, v.u, v.p>(x, w, out, out_f32, m, n, k, stream);
  }
}

}  // namespace

const char* gemv_variant_name(int variant) {
  if (variant == kGemvSameOrderVariants) return "gemv K in 8 slices, 16 rows a warp";
  if (variant == kGemvSameOrderVariants + 1) return "gemv K in 8 slices, 8 rows a warp";
  return variant >= 0 && variant < kGemvSameOrderVariants ? kVariants[variant].name : "gemv ?";
}

bool gemv_variant_takes(int variant, int64_t n, int64_t k) {
  if (variant < 0 || variant >= kGemvVariants) return false;
  return variant < kGemvSameOrderVariants || (k % 8 == 0 && tree_gemm_takes(1, n, k / 8, k, 8));
}

cudaError_t launch_gemv(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype, int64_t m,
                        int64_t n, int64_t k, int variant, cudaStream_t stream) {
  if (m < 1 || m > kGemvMaxM || k % 8 != 0 || n > INT32_MAX || k > INT32_MAX ||
      (out_dtype != DType::kBF16 && out_dtype != DType::kF32) ||
      reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0)
    return cudaErrorInvalidValue;
  const bool f32 = out_dtype == DType::kF32;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (!gemv_variant_takes(variant, n, k)) return cudaErrorInvalidValue;
  if (variant >= kGemvSameOrderVariants) {  // K in 8 slices: the leaf tree's kernel
    return launch_tree_gemv(x, w, out, f32, mi, ni, ki / 8, k, 8,
                            variant - kGemvSameOrderVariants, stream);
  }
  return m <= 8 ? launch_variant<1>(variant, x, w, out, f32, mi, ni, ki, stream)
                : launch_variant<2>(variant, x, w, out, f32, mi, ni, ki, stream);
}

}  // namespace llm42::cuda
