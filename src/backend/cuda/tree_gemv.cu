// The canonical lane's row-parallel GEMM at decode sizes (m <= kGemvMaxM) in one launch:
// variants 11 and 12 of launch_tree_gemm. Same result as the other variants (tree_gemm.cu): each
// leaf one chain of m16n8k16 MMAs over its K range in increasing k into a fresh fp32
// accumulator, the leaves summed along the fixed tree ((l0+l1)+(l2+l3))+... in fp32; out f32 or
// bf16 rounded once.
//
// Why: at m = 1 the leaves of o_proj are 8 slices of K 512, and run as the canonical skinny GEMM
// (a block of 32 rows and one leaf: 1,024 blocks that each load 32 KB and stop) plus the tree
// kernel they took 19.7 us on an H100 against the fast lane's 13.7 for the plain GEMV, and 49.3
// against 44.7 for down_proj (docs/benchmarks.md, twentieth session): that is most of what a
// deterministic batch-1 step loses to a fast one. This kernel has the fast GEMV's shape instead
// (gemv.cu): 8 warps over the same weight rows, one grid that fits in one wave, each warp
// streaming its share of K through its own cp.async ring, the warps' results summed in shared
// memory at the end. The warp's share is its leaf (a contiguous K range, not the fast lane's
// interleaved chunks), and the sum across warps is the tree, not warp order.
//
// Each warp: one leaf of 8 * NT weight rows (NT n8 tiles, each its own accumulator chain), its
// ring of P stages of 64 k (the weight rows, and XR rows of x, zero past m), read back with
// ldmatrix in gemv_canonical.cu's fragment order (tokens as A, weight rows as B), so every MMA
// has that kernel's operands and its k order. With fewer than 8 leaves (a rank's subtree at
// TP 2 or 4) the block holds 8 / leaves row groups of `leaves` warps. The ring is the warp's
// own: a __syncwarp both publishes a landed stage and frees the one read before it; the block
// meets only once, before the tree.
//
// The fast lane runs the same kernel on any skinny GEMM whose K splits into 8 slices of a
// multiple of 64 (launch_gemv's variants 8 and 9: the K order is free there, and on the H100 its
// timing picked them at M 1 for qkv, gate_up, down_proj and the LM head; o_proj kept gemv.cu's
// 3-stage pipeline).
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/tree_sum.cuh"

namespace llm42::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kStageK = 64;               // k per stage: 4 MMA steps
constexpr int kStride = kStageK + 8;      // bf16 per stage row: 144 bytes keep ldmatrix's 8 row
                                          // addresses on distinct banks

template <int NT, int XR>
struct Ring {
  static constexpr int kRows = 8 * NT + XR;  // weight rows, then x rows
  static constexpr int kStages = XR == 8 ? 4 : 3;
  static constexpr int kStageElems = kRows * kStride;
  static constexpr size_t kWarpBytes = size_t{kStages} * kStageElems * 2;
  static constexpr size_t kBytes = kWarps * kWarpBytes;
};

template <int L, int NT, int XR>
__global__ void __launch_bounds__(kThreads)
    tree_gemv_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                     void* __restrict__ out, bool out_f32, int m, int n, int k, int64_t ld) {
  static_assert(L == 2 || L == 4 || L == 8);
  static_assert(XR == 8 || XR == 16);
  using R = Ring<NT, XR>;
  constexpr int kGroups = kWarps / L;  // row groups of a block
  constexpr int kRows = 8 * NT;        // weight rows of a warp
  extern __shared__ __align__(16) uint16_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int leaf = warp % L, group = warp / L;
  const int row0 = (blockIdx.x * kGroups + group) * kRows;
  const int64_t kcol = static_cast<int64_t>(leaf) * k;  // the leaf's first column
  uint16_t* ring = smem + warp * (R::kWarpBytes / 2);
  const int n_stages = k / kStageK;  // tree_gemm_takes: k % 64 == 0
  // The lane's 16-byte pieces of a stage: weight piece i (of 8 * kRows) is row i / 8, column
  // 8 (i % 8); x likewise. Rows past n read row n - 1 and are never stored.
  const auto issue_w = [&](int st) {
    if (st >= n_stages) return;
    uint16_t* stage = ring + (st % R::kStages) * R::kStageElems;
#pragma unroll
    for (int i = lane; i < 8 * kRows; i += 32) {
      const int r = i / 8, col = 8 * (i % 8);
      const int row = min(row0 + r, n - 1);
      cp_async16(stage + r * kStride + col, w + row * ld + kcol + st * kStageK + col, true);
    }
  };
  const auto issue_x = [&](int st) {
    if (st >= n_stages) return;
    uint16_t* stage = ring + (st % R::kStages) * R::kStageElems + kRows * kStride;
#pragma unroll
    for (int i = lane; i < 8 * XR; i += 32) {
      const int r = i / 8, col = 8 * (i % 8);
      const bool valid = r < m;
      cp_async16(stage + r * kStride + col,
                 valid ? x + static_cast<int64_t>(r) * ld + kcol + st * kStageK + col : x, valid);
    }
  };
  // The weights are constant: the first stages may fill before the kernel that writes x ends.
#pragma unroll
  for (int st = 0; st < R::kStages - 1; ++st) {
    issue_w(st);
    cp_async_commit();
  }
  pdl_wait();
#pragma unroll
  for (int st = 0; st < R::kStages - 1; ++st) issue_x(st);
  cp_async_commit();
  cp_async_wait<0>();
  float acc[NT][4];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
  for (int st = 0; st < n_stages; ++st) {
    // Stage st has landed for every lane, and every lane is done with the stage read last
    // iteration, which is refilled now.
    cp_async_wait<R::kStages - 2>();
    __syncwarp();
    issue_w(st + R::kStages - 1);
    issue_x(st + R::kStages - 1);
    cp_async_commit();
    const uint16_t* sw = ring + (st % R::kStages) * R::kStageElems;
    const uint16_t* sx = sw + kRows * kStride;
    // gemv_canonical_kernel's fragments: B of steps 2i and 2i + 1 from one ldmatrix.x4 at row
    // lane % 8 of the n8 tile, column 32 i + 8 (lane / 8); A likewise when m <= 8 (rows 8-15
    // are zero), else one step at a time.
    uint32_t b[NT][2][4];
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int i = 0; i < 2; ++i)
        ldmatrix_x4(b[t][i], sw + (8 * t + lane % 8) * kStride + 32 * i + 8 * (lane / 8));
    if constexpr (XR == 8) {
      uint32_t a[2][4];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        ldmatrix_x4(a[i], sx + (lane % 8) * kStride + 32 * i + 8 * (lane / 8));
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          mma_bf16(acc[t], a[i][0], 0u, a[i][1], 0u, b[t][i][0], b[t][i][1]);
          mma_bf16(acc[t], a[i][2], 0u, a[i][3], 0u, b[t][i][2], b[t][i][3]);
        }
    } else {
      uint32_t a[4][4];
#pragma unroll
      for (int q = 0; q < 4; ++q)
        ldmatrix_x4(a[q], sx + (lane % 8 + 8 * ((lane / 8) % 2)) * kStride + 16 * q +
                              8 * (lane / 16));
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          mma_bf16(acc[t], a[2 * i][0], a[2 * i][1], a[2 * i][2], a[2 * i][3], b[t][i][0],
                   b[t][i][1]);
          mma_bf16(acc[t], a[2 * i + 1][0], a[2 * i + 1][1], a[2 * i + 1][2], a[2 * i + 1][3],
                   b[t][i][2], b[t][i][3]);
        }
    }
  }
  cp_async_wait<0>();
  pdl_trigger();  // the next kernel may launch while this one sums and stores
  // The leaves' results, red[warp][row][token], over the rings (every warp is past its last
  // read once the block has met).
  __syncthreads();
  float* red = reinterpret_cast<float*>(smem);
  // D: tokens g and g + 8, weight rows 2c and 2c + 1 of the n8 tile.
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int tok = g + (e / 2) * 8, r = 8 * t + 2 * c + e % 2;
      if (tok < XR) red[(warp * kRows + r) * XR + tok] = acc[t][e];
    }
  __syncthreads();
  constexpr int kBlockRows = kGroups * kRows;
  const int block_row0 = blockIdx.x * kBlockRows;
  for (int e = threadIdx.x; e < kBlockRows * m; e += kThreads) {
    const int lr = e % kBlockRows, tok = e / kBlockRows;
    const int row = block_row0 + lr;
    if (row >= n) continue;
    const int grp = lr / kRows, r = lr % kRows;
    float v[L];
#pragma unroll
    for (int l = 0; l < L; ++l) v[l] = red[((grp * L + l) * kRows + r) * XR + tok];
    sum_tree(v, L);
    const int64_t o = static_cast<int64_t>(tok) * n + row;
    if (out_f32) {
      static_cast<float*>(out)[o] = v[0];
    } else {
      static_cast<__nv_bfloat16*>(out)[o] = __float2bfloat16_rn(v[0]);
    }
  }
}

template <int L, int NT, int XR>
cudaError_t launch_shape(cudaStream_t stream, const uint16_t* x, const uint16_t* w, void* out,
                         bool f32, int m, int n, int k, int64_t ld) {
  using R = Ring<NT, XR>;
  static_assert(R::kBytes <= 227 * 1024, "tree GEMV ring does not fit in shared memory");
  static_assert(size_t{kWarps} * 8 * NT * XR * 4 <= R::kBytes, "the tree's inputs fit the ring");
  constexpr auto kernel = tree_gemv_kernel<L, NT, XR>;
  if (const cudaError_t e = allow_dynamic_smem<kernel>(R::kBytes); e != cudaSuccess) return e;
  const int block_rows = (kWarps / L) * 8 * NT;
  const unsigned blocks = static_cast<unsigned>((n + block_rows - 1) / block_rows);
  return launch_kernel(kernel, blocks, kThreads, R::kBytes, stream, x, w, out, f32, m, n, k, ld);
}

template <int NT>
cudaError_t launch_tiles(cudaStream_t stream, const uint16_t* x, const uint16_t* w, void* out,
                         bool f32, int m, int n, int k, int64_t ld, int leaves) {
  return with_leaf_count(leaves, [&](auto p) {
    constexpr int L = decltype(p)::value;
    return m <= 8 ? launch_shape<L, NT, 8>(stream, x, w, out, f32, m, n, k, ld)
                  : launch_shape<L, NT, 16>(stream, x, w, out, f32, m, n, k, ld);
  });
}

}  // namespace

cudaError_t launch_tree_gemv(const uint16_t* x, const uint16_t* w, void* out, bool out_f32, int m,
                             int n, int k, int64_t ld, int leaves, int shape,
                             cudaStream_t stream) {
  if (m > kGemvMaxM || (shape != 0 && shape != 1)) return cudaErrorInvalidValue;
  return shape == 0 ? launch_tiles<2>(stream, x, w, out, out_f32, m, n, k, ld, leaves)
                    : launch_tiles<1>(stream, x, w, out, out_f32, m, n, k, ld, leaves);
}

}  // namespace llm42::cuda
