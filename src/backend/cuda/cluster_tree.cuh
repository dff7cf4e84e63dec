// The end of the cluster forms of the fused tree GEMM (tree_gemm_wgmma.cu, tree_gemm_tma.cu):
// each block of a thread-block cluster parks its fp32 subtree (a leaf, or the sum of its
// leaves) of a 128-token output tile in its own shared memory; after a cluster barrier, block r
// of q sums rows [r 128/q, (r+1) 128/q) of all q parked subtrees along the fixed tree
// (sum_tree) from distributed shared memory and writes them, rounded once into bf16 or as fp32.
#pragma once

#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/tree_sum.cuh"

namespace llm42::cuda {

// Warpgroup wg's accumulators (Nt parts of 2 A weight rows, wgmma m64nNk16's fp32 layout, A a
// thread: 64 for N 128, 32 for N 64) as rows wg 64 .. wg 64 + 63 of `park` (rows of `stride`
// floats). In that layout warp j of the warpgroup holds tokens 16 j .. 16 j + 15; register
// 4 t + e of a thread (lane = 4 g + c) is token g + 8 (e / 2), weight row 8 t + 2 c + e % 2 of
// its part.
template <int Nt, int A>
__device__ __forceinline__ void park_accumulators(float* park, int stride, const float (&d)[Nt][A],
                                                  int wg) {
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int row0 = wg * 64 + warp * 16 + g;
#pragma unroll
  for (int h = 0; h < Nt; ++h)
#pragma unroll
    for (int t = 0; t < A / 4; ++t)
#pragma unroll
      for (int e = 0; e < 2; ++e)
        *reinterpret_cast<float2*>(park + (row0 + 8 * e) * stride + 2 * A * h + 8 * t + 2 * c) =
            make_float2(d[h][4 * t + 2 * e], d[h][4 * t + 2 * e + 1]);
}

// After the cluster barrier that follows every block's park: this block (rank `rank` of Q)
// sums its share of the BM x BN tile at (m0, n0) of out (m_rows x n_rows of it inside out,
// row length n; n % 8 == 0, so a group of 4 columns is whole or outside) with `threads`
// threads. Q 1: a block alone, no cluster; after a block barrier it rounds and writes its own
// park.
template <int Q, int BM, int BN>
__device__ __forceinline__ void sum_parked_subtrees(cooperative_groups::cluster_group& cluster,
                                                    float* park, int stride, int rank, int threads,
                                                    void* out, bool out_f32, int m0, int n0,
                                                    int m_rows, int n_rows, int n) {
  const float* parked[Q];
#pragma unroll
  for (int l = 0; l < Q; ++l) parked[l] = Q == 1 ? park : cluster.map_shared_rank(park, l);
  constexpr int kRowsEach = BM / Q, kGroups = kRowsEach * (BN / 4);
  for (int gi = threadIdx.x; gi < kGroups; gi += threads) {
    const int r = rank * kRowsEach + gi / (BN / 4), c4 = 4 * (gi % (BN / 4));
    if (r >= m_rows || c4 >= n_rows) continue;
    float4 v[Q];
#pragma unroll
    for (int l = 0; l < Q; ++l)
      v[l] = *reinterpret_cast<const float4*>(parked[l] + r * stride + c4);
    sum_tree(v, Q);
    const int64_t o = int64_t{m0 + r} * n + n0 + c4;
    if (out_f32) {  // two 8-byte stores: out is only known to be 8-byte aligned
      float2* f = reinterpret_cast<float2*>(static_cast<float*>(out) + o);
      f[0] = make_float2(v[0].x, v[0].y);
      f[1] = make_float2(v[0].z, v[0].w);
    } else {
      __nv_bfloat162 lo = __floats2bfloat162_rn(v[0].x, v[0].y);
      __nv_bfloat162 hi = __floats2bfloat162_rn(v[0].z, v[0].w);
      uint2 packed;
      packed.x = *reinterpret_cast<uint32_t*>(&lo);
      packed.y = *reinterpret_cast<uint32_t*>(&hi);
      *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(out) + o) = packed;
    }
  }
}

}  // namespace llm42::cuda
