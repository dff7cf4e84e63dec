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
// Two variants (tile configurations), 8 warps a block, operands streamed through a ring of 4
// shared-memory stages (cp.async, read back with ldmatrix) that runs on across leaf boundaries,
// so no leaf waits for its first stage:
//   0 "narrow"  128 tokens x 64 weight rows, warps 32 x 32, 64 k a stage; every partial of the
//               tree in registers (at most log2(p) + 1 sets of 32 a thread: 128 at p = 8). Low
//               operand reuse (43 FLOP per byte from L2).
//   1 "wide"    128 x 128, warps 32 x 64, 32 k a stage (64 FLOP per byte); the current leaf and
//               a pending left leaf in registers (64 each), subtree sums of two leaves or more
//               parked in shared memory while their right sibling is reduced (each thread its
//               own values, word-interleaved: no bank conflicts), up to 2 x 64 KB at p = 8.
// GemmRunner times both and keeps the faster where they reproduce the unfused path.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/tree_sum.cuh"

namespace llm42::cuda {
namespace {

constexpr int kThreads = 256;  // 8 warps
constexpr int kStages = 4;     // ring depth: 3 stages in flight while one is read

template <int BM, int BN, int BK, int WM, int WN, bool kParkInSmem>
struct Tile {
  static constexpr int kBM = BM, kBN = BN, kBK = BK, kWarpM = WM, kWarpN = WN;
  static constexpr bool kPark = kParkInSmem;
  static constexpr int kWarpsM = BM / WM;
  static_assert((BM / WM) * (BN / WN) * 32 == kThreads, "8 warps cover the tile");
  static constexpr int kStride = BK + 8;  // bf16 per stage row: 16 bytes of padding keep
                                          // ldmatrix's 8 row addresses on distinct banks
  static constexpr int kStageElems = (BM + BN) * kStride;
  static constexpr int kMt = WM / 16, kNt = WN / 8;  // a warp's m16 and n8 tiles
  static constexpr int kAccFloats = kMt * kNt * 4;    // a thread's accumulators for one leaf
  static constexpr size_t kRingBytes = size_t{kStages} * kStageElems * 2;
  // Parked subtree sums: a slot per level from 1 to log2(p) - 1.
  static constexpr size_t smem_bytes(int p) {
    const int slots = !kPark ? 0 : p == 8 ? 2 : p == 4 ? 1 : 0;
    return kRingBytes + static_cast<size_t>(slots) * kThreads * kAccFloats * 4;
  }
};
using Narrow = Tile<128, 64, 64, 32, 32, false>;
using Wide = Tile<128, 128, 32, 32, 64, true>;
static_assert(Narrow::smem_bytes(8) <= 227 * 1024 && Wide::smem_bytes(8) <= 227 * 1024,
              "tree GEMM shared memory");

// A thread's fp32 accumulators for one leaf: D fragments of the warp's m16 x n8 tiles.
template <typename T>
struct Acc {
  float d[T::kMt][T::kNt][4];
};

// The block's pipeline over every stage of every leaf, and the MMAs of one stage.
template <typename T>
struct TreeTile {
  const uint16_t* x;  // the block's first token row, column 0
  const uint16_t* w;  // the block's first weight row, column 0
  uint16_t* smem;     // the ring
  float* park;        // parked subtree sums (T::kPark), after the ring
  int m_rows, n_rows;  // valid tokens and weight rows of the block (the rest zero-filled)
  int64_t ld;
  int stages_per_leaf, total_stages;
  int st = 0;  // the next stage to compute

  // Stage s's rows of one operand into its part of the ring: `rows` rows from `src` (row
  // stride ld), those from `valid_rows` on zero-filled; `at` is the part's first row in the
  // stage (x at 0, the weights after x's rows).
  template <int kRows>
  __device__ __forceinline__ void issue(int s, const uint16_t* src, int valid_rows, int at) const {
    if (s >= total_stages) return;
    uint16_t* dst = smem + (s % kStages) * T::kStageElems + at * T::kStride;
    const int64_t col0 = int64_t{s} * T::kBK;
#pragma unroll
    for (int i = 0; i < kRows * T::kBK / 8 / kThreads; ++i) {
      const int e = threadIdx.x + i * kThreads, r = e / (T::kBK / 8), c = 8 * (e % (T::kBK / 8));
      const bool valid = r < valid_rows;
      cp_async16(dst + r * T::kStride + c, valid ? src + r * ld + col0 + c : src, valid);
    }
  }
  // Stage s's weights (constant during the pass: may be loaded before pdl_wait) and x.
  __device__ __forceinline__ void issue_w(int s) const { issue<T::kBN>(s, w, n_rows, T::kBM); }
  __device__ __forceinline__ void issue_x(int s) const { issue<T::kBM>(s, x, m_rows, 0); }

  // One leaf into acc (overwritten): its stages' k16 steps in increasing k, one MMA chain per
  // accumulator.
  __device__ __forceinline__ void leaf(Acc<T>& acc) {
#pragma unroll
    for (int mt = 0; mt < T::kMt; ++mt)
#pragma unroll
      for (int nt = 0; nt < T::kNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc.d[mt][nt][e] = 0.0f;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp % T::kWarpsM, wn = warp / T::kWarpsM;
    // ldmatrix addresses: A (tokens) rows lane % 16 of each m16 tile at k + 8 (lane / 16); B
    // (weights) rows lane % 8 + 8 (lane / 16) of each pair of n8 tiles at k + 8 ((lane / 8) % 2).
    const int a_off = (wm * T::kWarpM + lane % 16) * T::kStride + 8 * (lane / 16);
    const int b_off = (T::kBM + wn * T::kWarpN + lane % 8 + 8 * (lane / 16)) * T::kStride +
                      8 * ((lane / 8) % 2);
    for (int j = 0; j < stages_per_leaf; ++j, ++st) {
      // Stage st has landed for every thread, and every warp is done with the stage read last
      // (the one refilled now).
      cp_async_wait<kStages - 2>();
      __syncthreads();
      issue_w(st + kStages - 1);
      issue_x(st + kStages - 1);
      cp_async_commit();
      const uint16_t* stage = smem + (st % kStages) * T::kStageElems;
#pragma unroll
      for (int kk = 0; kk < T::kBK / 16; ++kk) {
        uint32_t a[T::kMt][4], b[T::kNt / 2][4];
#pragma unroll
        for (int mt = 0; mt < T::kMt; ++mt)
          ldmatrix_x4(a[mt], stage + a_off + mt * 16 * T::kStride + kk * 16);
#pragma unroll
        for (int np = 0; np < T::kNt / 2; ++np)
          ldmatrix_x4(b[np], stage + b_off + np * 16 * T::kStride + kk * 16);
#pragma unroll
        for (int mt = 0; mt < T::kMt; ++mt)
#pragma unroll
          for (int nt = 0; nt < T::kNt; ++nt)
            mma_bf16(acc.d[mt][nt], a[mt][0], a[mt][1], a[mt][2], a[mt][3],
                     b[nt / 2][2 * (nt % 2)], b[nt / 2][2 * (nt % 2) + 1]);
      }
    }
  }

  // Parking slot `slot`: each thread's kAccFloats values, word-interleaved with the others'.
  __device__ __forceinline__ void park_store(int slot, const Acc<T>& a) const {
    float* p = park + slot * kThreads * T::kAccFloats + threadIdx.x;
    int i = 0;
#pragma unroll
    for (int mt = 0; mt < T::kMt; ++mt)
#pragma unroll
      for (int nt = 0; nt < T::kNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e, ++i) p[i * kThreads] = a.d[mt][nt][e];
  }
  // out = parked left + out (right), as the tree adds.
  __device__ __forceinline__ void park_add(int slot, Acc<T>& out) const {
    const float* p = park + slot * kThreads * T::kAccFloats + threadIdx.x;
    int i = 0;
#pragma unroll
    for (int mt = 0; mt < T::kMt; ++mt)
#pragma unroll
      for (int nt = 0; nt < T::kNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e, ++i)
          out.d[mt][nt][e] = __fadd_rn(p[i * kThreads], out.d[mt][nt][e]);
  }
};

// The subtree of `Count` consecutive leaves (the next ones of the tile's pipeline) into out:
// left subtree, right subtree, one addition. A left subtree of two leaves or more is parked in
// shared memory where the variant does so (its slot: its level - 1; a right sibling's own
// parked sums sit at lower levels), else kept in registers beside the right one.
template <int Count, typename T>
__device__ __forceinline__ void subtree(TreeTile<T>& t, Acc<T>& out) {
  if constexpr (Count == 1) {
    t.leaf(out);
  } else if constexpr (T::kPark && Count >= 4) {
    subtree<Count / 2>(t, out);
    constexpr int slot = Count == 4 ? 0 : 1;
    t.park_store(slot, out);
    subtree<Count / 2>(t, out);
    t.park_add(slot, out);
  } else {
    subtree<Count / 2>(t, out);
    Acc<T> right;
    subtree<Count / 2>(t, right);
#pragma unroll
    for (int mt = 0; mt < T::kMt; ++mt)
#pragma unroll
      for (int nt = 0; nt < T::kNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          out.d[mt][nt][e] = __fadd_rn(out.d[mt][nt][e], right.d[mt][nt][e]);
  }
}

template <typename T, int P>
__global__ void __launch_bounds__(kThreads, 1)
    tree_gemm_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                     void* __restrict__ out, bool out_f32, int m, int n, int k, int64_t ld) {
  extern __shared__ __align__(16) uint16_t smem[];
  const int m0 = blockIdx.y * T::kBM, n0 = blockIdx.x * T::kBN;
  TreeTile<T> t{x + int64_t{m0} * ld,
                w + int64_t{n0} * ld,
                smem,
                reinterpret_cast<float*>(reinterpret_cast<char*>(smem) + T::kRingBytes),
                min(T::kBM, m - m0),
                min(T::kBN, n - n0),
                ld,
                k / T::kBK,
                P * (k / T::kBK)};
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
  Acc<T> sum;
  subtree<P>(t, sum);
  cp_async_wait<0>();
  pdl_trigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int wm = warp % T::kWarpsM, wn = warp / T::kWarpsM;
  // D of tile (mt, nt): tokens g and g + 8, weight rows 2c and 2c + 1 (n is even).
#pragma unroll
  for (int mt = 0; mt < T::kMt; ++mt)
#pragma unroll
    for (int nt = 0; nt < T::kNt; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + wm * T::kWarpM + mt * 16 + g + 8 * h;
        const int col = n0 + wn * T::kWarpN + nt * 8 + 2 * c;
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

template <typename T, int P>
cudaError_t launch_tree(cudaStream_t stream, const uint16_t* x, const uint16_t* w, void* out,
                        bool f32, int m, int n, int k, int64_t ld) {
  constexpr size_t kSmem = T::smem_bytes(P);
  if (const cudaError_t e = allow_dynamic_smem<tree_gemm_kernel<T, P>>(kSmem); e != cudaSuccess)
    return e;
  const dim3 grid(static_cast<unsigned>((n + T::kBN - 1) / T::kBN),
                  static_cast<unsigned>((m + T::kBM - 1) / T::kBM));
  return launch_kernel(tree_gemm_kernel<T, P>, grid, kThreads, kSmem, stream, x, w, out, f32, m,
                       n, k, ld);
}

template <typename T>
cudaError_t launch_variant(int leaves, cudaStream_t stream, const uint16_t* x, const uint16_t* w,
                           void* out, bool f32, int m, int n, int k, int64_t ld) {
  return with_leaf_count(leaves, [&](auto p) {
    return launch_tree<T, decltype(p)::value>(stream, x, w, out, f32, m, n, k, ld);
  });
}

}  // namespace

bool tree_gemm_takes(int64_t m, int64_t n, int64_t k, int64_t ld, int leaves) {
  // k a multiple of both variants' stage depth (64 and 32).
  return m >= 1 && n >= 1 && n % 8 == 0 && k >= 64 && k % 64 == 0 && ld % 8 == 0 &&
         ld >= k * leaves && (leaves == 2 || leaves == 4 || leaves == 8) &&
         n <= INT32_MAX - 128 && m <= int64_t{65535} * 128 && k * leaves <= INT32_MAX;
}

const char* tree_gemm_variant_name(int variant) {
  switch (variant) {
    case 0:
      return "narrow 128x64";
    case 1:
      return "wide 128x128";
    case 2:
      return "wgmma cluster 128x128";
    case 3:
      return "wgmma cluster 128x256";
    case 4:
      return "wgmma cluster 128x128 deep";
    case 5:
      return "tma cluster 128x256";
    case 6:
      return "tma cluster 128x128 x2";
    case 7:
      return "tma cluster 128x128 leaf pairs";
    case 8:
      return "tma 128x128 all leaves a block";
    case 9:
      return "tma cluster 128x128 four leaves a block";
    case 10:
      return "tma 128x64 all leaves a block";
    case 11:
      return "skinny 16 rows a warp, a warp a leaf";
    default:
      return "skinny 8 rows a warp, a warp a leaf";
  }
}

bool tree_gemm_variant_takes(int variant, int64_t m) {
  return variant < kTreeGemvVariant || m <= kGemvMaxM;
}

cudaError_t launch_tree_gemm(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                             int64_t m, int64_t n, int64_t k, int64_t ld, int leaves,
                             cudaStream_t stream, int variant) {
  if (!tree_gemm_takes(m, n, k, ld, leaves) || variant < 0 || variant >= kTreeGemmVariants ||
      (out_dtype != DType::kBF16 && out_dtype != DType::kF32) ||
      reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(w) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(out) % 8 != 0)
    return cudaErrorInvalidValue;
  const bool f32 = out_dtype == DType::kF32;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (variant == 0) return launch_variant<Narrow>(leaves, stream, x, w, out, f32, mi, ni, ki, ld);
  if (variant >= kTreeGemvVariant)
    return launch_tree_gemv(x, w, out, f32, mi, ni, ki, ld, leaves, variant - kTreeGemvVariant,
                            stream);
  if (variant >= 5)
    return launch_tree_gemm_tma(x, w, out, f32, mi, ni, ki, ld, leaves, variant - 5, stream);
  if (variant >= 2)
    return launch_tree_gemm_wgmma(x, w, out, f32, mi, ni, ki, ld, leaves, variant - 2, stream);
  return launch_variant<Wide>(leaves, stream, x, w, out, f32, mi, ni, ki, ld);
}

}  // namespace llm42::cuda
