// The canonical lane's row-parallel GEMM as one kernel (Backend::matmul_leaves, DESIGN.md §7):
//
//   out (m, n) = the p leaves summed along the binary tree ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))
//                in fp32, leaf l = x (m, K range l) @ w (n, K range l)^T, the K ranges
//                consecutive slices of k each from column 0 of x and w (row stride ld);
//   out fp32 (a rank's subtree) or bf16 (the whole tree, rounded once).
//
// Why: run as leaves (one cuBLASLt GEMM per leaf or one strided-batched call) and a tree kernel,
// the p fp32 partials are written to memory and read back: at M 1024 and N 4096 that is 268 MB,
// more than the GEMM's own traffic, and it made o_proj 3.3x its plain GEMM (docs/benchmarks.md,
// fourteenth session). Here each block keeps its output tile's leaves in registers: it reduces
// leaf 0 into one accumulator, leaf 1 into another, adds them, and so on down the tree, and
// writes only the result.
//
// Each leaf is one chain of m16n8k16 MMAs over its K range in increasing k into a fresh fp32
// accumulator: gemv_canonical.cu's order, which reproduces cuBLASLt's split-K-free algorithms
// bit for bit (an observation, not a documented guarantee: GemmRunner admits this kernel for an
// M bucket only after it reproduced the unfused path's every output bit on that call's data).
// The tree's additions are the ones sum_parts makes (__fadd_rn of a left and a right subtree).
//
// Tiles: a block computes 128 tokens x 64 weight rows with 8 warps (4 x 2, each 32 x 32: two
// m16 tiles by four n8 tiles, 32 fp32 accumulators a thread per leaf; the tree keeps at most
// log2(p) + 1 of those live, 128 registers at p = 8, hence the modest warp tile). Operands
// stream through a ring of 4 shared-memory stages of 64 k (cp.async, read back with ldmatrix);
// the ring runs on across leaf boundaries, so no leaf waits for its first stage.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"

namespace llm42::cuda {
namespace {

constexpr int kBM = 128;             // tokens of a block
constexpr int kBN = 64;              // weight rows (output columns) of a block
constexpr int kBK = 64;              // k of a stage
constexpr int kStages = 4;           // ring depth: 3 stages in flight while one is read
constexpr int kStride = kBK + 8;     // bf16 per stage row: 16 bytes of padding keep ldmatrix's 8
                                     // row addresses on distinct banks
constexpr int kThreads = 256;        // 8 warps
constexpr int kWarpM = 32, kWarpN = 32;
// A thread's fp32 accumulators for one leaf: D fragments of the warp's m16 x n8 tiles.
struct Acc {
  float d[kWarpM / 16][kWarpN / 8][4];
};
constexpr int kStageElems = (kBM + kBN) * kStride;
constexpr size_t kSmemBytes = size_t{kStages} * kStageElems * 2;
static_assert(kSmemBytes <= 227 * 1024, "tree GEMM ring does not fit in shared memory");

// The block's pipeline over every stage of every leaf, and the MMAs of one stage.
struct TreeTile {
  const uint16_t* x;  // the block's first token row, column 0
  const uint16_t* w;  // the block's first weight row, column 0
  uint16_t* smem;
  int m_rows, n_rows;  // valid tokens and weight rows of the block (the rest zero-filled)
  int64_t ld;
  int stages_per_leaf, total_stages;
  int st = 0;  // the next stage to compute

  // Stage s's weights (constant during the pass: may be loaded before pdl_wait) and x.
  __device__ __forceinline__ void issue_w(int s) const {
    if (s >= total_stages) return;
    uint16_t* dst = smem + (s % kStages) * kStageElems + kBM * kStride;
    const int64_t col0 = int64_t{s} * kBK;
#pragma unroll
    for (int i = 0; i < kBN * kBK / 8 / kThreads; ++i) {
      const int e = threadIdx.x + i * kThreads, r = e / (kBK / 8), c = 8 * (e % (kBK / 8));
      const bool valid = r < n_rows;
      cp_async16(dst + r * kStride + c, valid ? w + r * ld + col0 + c : w, valid);
    }
  }
  __device__ __forceinline__ void issue_x(int s) const {
    if (s >= total_stages) return;
    uint16_t* dst = smem + (s % kStages) * kStageElems;
    const int64_t col0 = int64_t{s} * kBK;
#pragma unroll
    for (int i = 0; i < kBM * kBK / 8 / kThreads; ++i) {
      const int e = threadIdx.x + i * kThreads, r = e / (kBK / 8), c = 8 * (e % (kBK / 8));
      const bool valid = r < m_rows;
      cp_async16(dst + r * kStride + c, valid ? x + r * ld + col0 + c : x, valid);
    }
  }

  // One leaf into acc (overwritten): its stages' k16 steps in increasing k, one MMA chain per
  // accumulator.
  __device__ __forceinline__ void leaf(Acc& acc) {
#pragma unroll
    for (int mt = 0; mt < kWarpM / 16; ++mt)
#pragma unroll
      for (int nt = 0; nt < kWarpN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc.d[mt][nt][e] = 0.0f;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp % (kBM / kWarpM), wn = warp / (kBM / kWarpM);
    // ldmatrix addresses: A (tokens) rows lane % 16 of each m16 tile at k + 8 (lane / 16); B
    // (weights) rows lane % 8 + 8 (lane / 16) of each pair of n8 tiles at k + 8 ((lane / 8) % 2).
    const int a_off = (wm * kWarpM + lane % 16) * kStride + 8 * (lane / 16);
    const int b_off =
        (kBM + wn * kWarpN + lane % 8 + 8 * (lane / 16)) * kStride + 8 * ((lane / 8) % 2);
    for (int j = 0; j < stages_per_leaf; ++j, ++st) {
      // Stage st has landed for every thread, and every warp is done with the stage read last
      // (the one refilled now).
      cp_async_wait<kStages - 2>();
      __syncthreads();
      issue_w(st + kStages - 1);
      issue_x(st + kStages - 1);
      cp_async_commit();
      const uint16_t* stage = smem + (st % kStages) * kStageElems;
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        uint32_t a[kWarpM / 16][4], b[kWarpN / 16][4];
#pragma unroll
        for (int mt = 0; mt < kWarpM / 16; ++mt)
          ldmatrix_x4(a[mt], stage + a_off + mt * 16 * kStride + kk * 16);
#pragma unroll
        for (int np = 0; np < kWarpN / 16; ++np)
          ldmatrix_x4(b[np], stage + b_off + np * 16 * kStride + kk * 16);
#pragma unroll
        for (int mt = 0; mt < kWarpM / 16; ++mt)
#pragma unroll
          for (int nt = 0; nt < kWarpN / 8; ++nt)
            mma_bf16(acc.d[mt][nt], a[mt][0], a[mt][1], a[mt][2], a[mt][3],
                     b[nt / 2][2 * (nt % 2)], b[nt / 2][2 * (nt % 2) + 1]);
      }
    }
  }
};

// The subtree of `Count` consecutive leaves (the next ones of the tile's pipeline) into out:
// left subtree, right subtree, one addition.
template <int Count>
__device__ __forceinline__ void subtree(TreeTile& t, Acc& out) {
  if constexpr (Count == 1) {
    t.leaf(out);
  } else {
    subtree<Count / 2>(t, out);
    Acc right;
    subtree<Count / 2>(t, right);
#pragma unroll
    for (int mt = 0; mt < kWarpM / 16; ++mt)
#pragma unroll
      for (int nt = 0; nt < kWarpN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          out.d[mt][nt][e] = __fadd_rn(out.d[mt][nt][e], right.d[mt][nt][e]);
  }
}

template <int P>
__global__ void __launch_bounds__(kThreads, 1)
    tree_gemm_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                     void* __restrict__ out, bool out_f32, int m, int n, int k, int64_t ld) {
  extern __shared__ __align__(16) uint16_t smem[];
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  TreeTile t{x + int64_t{m0} * ld, w + int64_t{n0} * ld, smem, min(kBM, m - m0), min(kBN, n - n0),
             ld, k / kBK, P * (k / kBK)};
  // The weights of the first stages may arrive before the kernel that writes x ends: one group
  // per weight stage, then x of those stages as one more, all waited for at once.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    t.issue_w(s);
    cp_async_commit();
  }
  pdl_wait();
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) t.issue_x(s);
  cp_async_commit();
  cp_async_wait<0>();
  Acc sum;
  subtree<P>(t, sum);
  cp_async_wait<0>();
  pdl_trigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int wm = warp % (kBM / kWarpM), wn = warp / (kBM / kWarpM);
  // D of tile (mt, nt): tokens g and g + 8, weight rows 2c and 2c + 1 (n is even).
#pragma unroll
  for (int mt = 0; mt < kWarpM / 16; ++mt)
#pragma unroll
    for (int nt = 0; nt < kWarpN / 8; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + wm * kWarpM + mt * 16 + g + 8 * h;
        const int col = n0 + wn * kWarpN + nt * 8 + 2 * c;
        if (row >= m || col >= n) continue;
        const float* v = sum.d[mt][nt] + 2 * h;
        const int64_t o = int64_t{row} * n + col;
        if (out_f32) {
          *reinterpret_cast<float2*>(static_cast<float*>(out) + o) = make_float2(v[0], v[1]);
        } else {
          *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(out) + o) =
              __floats2bfloat162_rn(v[0], v[1]);
        }
      }
}

template <int P>
cudaError_t launch_tree(dim3 grid, cudaStream_t stream, const uint16_t* x, const uint16_t* w,
                        void* out, bool f32, int m, int n, int k, int64_t ld) {
  static const cudaError_t set = cudaFuncSetAttribute(
      tree_gemm_kernel<P>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  if (set != cudaSuccess) return set;
  return launch_kernel(tree_gemm_kernel<P>, grid, kThreads, kSmemBytes, stream, x, w, out, f32, m,
                       n, k, ld);
}

}  // namespace

bool tree_gemm_takes(int64_t m, int64_t n, int64_t k, int64_t ld, int leaves) {
  return m >= 1 && n >= 1 && n % 8 == 0 && k >= kBK && k % kBK == 0 && ld % 8 == 0 &&
         ld >= k * leaves && (leaves == 2 || leaves == 4 || leaves == 8) &&
         n <= INT32_MAX - kBN && m <= int64_t{65535} * kBM && k * leaves <= INT32_MAX;
}

cudaError_t launch_tree_gemm(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                             int64_t m, int64_t n, int64_t k, int64_t ld, int leaves,
                             cudaStream_t stream) {
  if (!tree_gemm_takes(m, n, k, ld, leaves) ||
      (out_dtype != DType::kBF16 && out_dtype != DType::kF32) ||
      reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(out) % 8 != 0)
    return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>((n + kBN - 1) / kBN),
                  static_cast<unsigned>((m + kBM - 1) / kBM));
  const bool f32 = out_dtype == DType::kF32;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  switch (leaves) {
    case 2:
      return launch_tree<2>(grid, stream, x, w, out, f32, mi, ni, ki, ld);
    case 4:
      return launch_tree<4>(grid, stream, x, w, out, f32, mi, ni, ki, ld);
    default:
      return launch_tree<8>(grid, stream, x, w, out, f32, mi, ni, ki, ld);
  }
}

}  // namespace llm42::cuda
