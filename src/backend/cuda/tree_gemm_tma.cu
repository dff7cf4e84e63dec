// The fused tree GEMM of tree_gemm_wgmma.cu with its operands loaded by the Tensor Memory
// Accelerator (sm_90a; kernels.h's tree_gemm variants 5 to 10):
//
//   out (m, n) = the p leaves summed along the binary tree ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))
//                in fp32, leaf l = x (m, K range l) @ w (n, K range l)^T (as tree_gemm.cu).
//
// Why: tree_gemm_wgmma.cu's blocks fill their stages with 16-byte cp.async copies and a block
// barrier a stage; profiled on an H100 (docs/benchmarks.md, nineteenth session) they keep
// neither the memory system nor the tensor cores busy (o at M 2048: L2 71 %, DRAM 9 %, SM 16 %;
// the warps waiting on their copies). Here one producer warp has the TMA unit copy each stage
// (a 128 x 64 box of x and a BN x 64 box of w, 128-byte swizzled: the layout wgmma reads) into a
// ring of stages, and the two consumer warpgroups wait only on that stage's mbarrier, keeping
// one stage's MMAs in flight while the next stage's are issued: no block barrier in the main
// loop.
//
// The rest is tree_gemm_wgmma.cu's: the blocks of a 128 x BN output tile form one thread-block
// cluster, each runs its leaf (or, variants 7 to 10, consecutive leaves one after the other) as
// one chain of wgmma m64n128k16 (or m64n64k16) steps in increasing k into zeroed fp32
// accumulators (warpgroup g: tokens 64 g .. 64 g + 63), and the blocks' fp32 subtrees meet in
// distributed shared memory (cluster_tree.cuh). A block of several leaves sums their subtree
// itself as each leaf ends (fold_leaf), so its cluster is that much smaller and its main loop
// that much longer; variants 8 and 10 run every leaf in one block, a plain GEMM's grid with the
// tree folded in at the leaves' boundaries and nothing parked across blocks. Variant 7 was the
// first form on an H100 to beat the unfused path (o_proj from M 256 up). GemmRunner admits a
// variant for a bucket only after it reproduced the unfused path's every output bit there, and
// only where it is faster.
#include <cooperative_groups.h>
#include <cuda.h>
#include <cuda_bf16.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "backend/cuda/cluster_tree.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/tree_sum.cuh"
#include "backend/cuda/wgmma.cuh"

namespace llm42::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kBM = 128, kBK = 64;      // a 64-wide k stage: one 128-byte swizzle row
constexpr int kConsumers = 256;           // two warpgroups of MMAs
constexpr int kThreads = kConsumers + 32;  // and one producer warp
constexpr int kXBytes = kBM * kBK * 2;

// A variant's shape: kNt parts of kMmaN weight rows (an m64nNk16 MMA each per warpgroup and
// k16 step, N = kMmaN: 128, or 64 for narrow tiles), a ring of kStages stages, kBlocksPerSm
// blocks an SM (two: one block's prologue and tree overlap the other's main loop), and kLeaves
// leaves a block, one after the other (0: all of them, no cluster). A block of several leaves
// sums their subtree as it goes (fold_leaf): a left subtree waits for its right sibling, the
// bottom kRegLevels levels' in registers, the levels above in shared memory; the cluster is
// P / kLeaves blocks and each block's main loop kLeaves leaves long.
template <int Nt, int Stages, int BlocksPerSm, int LeavesPerBlock = 1, int MmaN = 128,
          int RegLevels = 1>
struct Config {
  static constexpr int kNt = Nt, kStages = Stages, kBlocksPerSm = BlocksPerSm;
  static constexpr int kLeaves = LeavesPerBlock, kMmaN = MmaN, kRegLevels = RegLevels;
  static constexpr int kAcc = MmaN / 2;  // accumulators a thread a part
  static constexpr int kBN = MmaN * Nt;
  static constexpr int kWBytes = kBN * kBK * 2;
  static constexpr int kStageBytes = kXBytes + kWBytes;
  static_assert(kStageBytes % 1024 == 0, "every stage starts 1,024-byte aligned (swizzling)");
  static constexpr int kOutStride = kBN + 8;             // floats a row of the parked leaf
  static constexpr size_t kRingBytes = size_t{kStages} * kStageBytes;
  static_assert(size_t{kBM} * kOutStride * 4 <= kRingBytes, "the parked leaf fits in the ring");
};
// Variant 5: 128 x 256, 4 stages of 48 KB, one block an SM.
// Variant 6: 128 x 128, 3 stages of 32 KB, two blocks an SM.
// Variant 7: 128 x 128, 4 stages of 32 KB, one block an SM, two leaves a block.
// Variant 8: 128 x 128, 3 stages, every leaf in one block (two waiting subtrees of 64 KB in
//            shared memory at 8 leaves): a plain GEMM's grid, no cluster.
// Variant 9: 128 x 128, 4 stages, four leaves a block (one waiting subtree in shared memory).
// Variant 10: 128 x 64, 6 stages of 24 KB, every leaf in one block, all three waiting subtrees
//            in registers (32 floats a thread each): twice variant 8's blocks, for small M.
using Wide = Config<2, 4, 1>;
using Pair = Config<1, 3, 2>;
using Long = Config<1, 4, 1, 2>;
using Whole = Config<1, 3, 1, 0>;
using Quad = Config<1, 4, 1, 4>;
using Narrow = Config<1, 6, 1, 0, 64, 3>;

constexpr int log2_of(int v) { return v <= 1 ? 0 : 1 + log2_of(v / 2); }

// Variant C at P leaves.
template <typename C, int P>
struct Plan {
  static constexpr int kLeaves = C::kLeaves == 0 || C::kLeaves > P ? P : C::kLeaves;
  static constexpr int kQ = P / kLeaves;               // blocks a cluster
  static constexpr int kLevels = log2_of(kLeaves);     // tree levels inside a block
  static constexpr int kRegLevels = kLevels < C::kRegLevels ? kLevels : C::kRegLevels;
  static constexpr int kSlots = kLevels - kRegLevels;  // levels waiting in shared memory
  static constexpr size_t kSlotBytes = size_t{kConsumers} * C::kAcc * 4 * C::kNt;
  // The ring, the waiting subtrees, 2 kStages mbarriers, and 1,024 bytes to align the ring.
  static constexpr size_t kSmem =
      C::kRingBytes + kSlots * kSlotBytes + 2 * C::kStages * sizeof(uint64_t) + 1024;
  static_assert(kSmem * C::kBlocksPerSm <= 227 * 1024, "shared memory");
};

// Leaf `leaf` of a block's leaves, reduced into d, folded into the block's subtree: at each
// level b from the bottom, a left child (bit b of leaf clear) waits and the fold stops; a right
// child is added to its waiting sibling, left + right rounded to fp32, and goes up. The bottom
// RegLevels levels, which wait most often (level 0 every other leaf), wait in registers `wait`;
// the levels above in this thread's part of shared-memory slot b - RegLevels. After the last
// leaf d holds the sum of all 2^Levels leaves along the tree ((l0+l1)+(l2+l3))+... (sum_tree's
// tree).
template <int Levels, int RegLevels, int Nt, int A>
__device__ __forceinline__ void fold_leaf(int leaf, float (&d)[Nt][A],
                                          float (&wait)[RegLevels > 0 ? RegLevels : 1][Nt][A],
                                          float4* slots) {
  const int tid = threadIdx.x;  // consumer threads 0 .. 255
#pragma unroll
  for (int b = 0; b < Levels; ++b) {
    const bool in_registers = b < RegLevels;
    const int r = in_registers ? b : 0;
    float4* slot = slots + static_cast<size_t>(in_registers ? 0 : b - RegLevels) * Nt * (A / 4) *
                               kConsumers;
    if (((leaf >> b) & 1) == 0) {
#pragma unroll
      for (int h = 0; h < Nt; ++h)
#pragma unroll
        for (int i = 0; i < A / 4; ++i) {
          if (in_registers) {
#pragma unroll
            for (int e = 0; e < 4; ++e) wait[r][h][4 * i + e] = d[h][4 * i + e];
          } else {
            slot[(h * (A / 4) + i) * kConsumers + tid] =
                make_float4(d[h][4 * i], d[h][4 * i + 1], d[h][4 * i + 2], d[h][4 * i + 3]);
          }
        }
      return;
    }
#pragma unroll
    for (int h = 0; h < Nt; ++h)
#pragma unroll
      for (int i = 0; i < A / 4; ++i) {
        float4 l;
        if (in_registers) {
          l = make_float4(wait[r][h][4 * i], wait[r][h][4 * i + 1], wait[r][h][4 * i + 2],
                          wait[r][h][4 * i + 3]);
        } else {
          l = slot[(h * (A / 4) + i) * kConsumers + tid];
        }
        d[h][4 * i] = add_rn(l.x, d[h][4 * i]);
        d[h][4 * i + 1] = add_rn(l.y, d[h][4 * i + 1]);
        d[h][4 * i + 2] = add_rn(l.z, d[h][4 * i + 2]);
        d[h][4 * i + 3] = add_rn(l.w, d[h][4 * i + 3]);
      }
  }
}

// Ring slot `slot` back to the producer once warpgroup wg's MMAs that read it are done: one
// arrival for the warpgroup, after all its warps are past their wait (named barriers 1 and 2;
// 0 is __syncthreads'; immediate ids).
__device__ __forceinline__ void release_stage(uint64_t* empty, int slot, int wg) {
  if (wg == 0) {
    asm volatile("bar.sync 1, 128;\n" ::: "memory");
  } else {
    asm volatile("bar.sync 2, 128;\n" ::: "memory");
  }
  if (threadIdx.x % 128 == 0) mbarrier_arrive(&empty[slot]);
}

template <typename C, int P>
__global__ void __launch_bounds__(kThreads, C::kBlocksPerSm)
    tree_gemm_tma_kernel(const __grid_constant__ CUtensorMap x_map,
                         const __grid_constant__ CUtensorMap w_map, void* __restrict__ out,
                         bool out_f32, int m, int n, int k) {
  using S = Plan<C, P>;
  constexpr int kStages = C::kStages, kStageBytes = C::kStageBytes, kBN = C::kBN;
  constexpr int kOutStride = C::kOutStride;
  constexpr size_t kRingBytes = C::kRingBytes;
  constexpr int kQ = S::kQ;  // blocks a cluster: each a subtree of S::kLeaves leaves
  extern __shared__ __align__(16) char smem_raw[];
  // Every block's dynamic shared memory starts at the same address, so the aligned ring (and the
  // parked leaf read across the cluster) sits at the same offset in each.
  char* ring = smem_raw + ((1024 - smem_u32(smem_raw) % 1024) % 1024);
  float4* slots = reinterpret_cast<float4*>(ring + kRingBytes);  // the waiting subtrees
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + kRingBytes + S::kSlots * S::kSlotBytes);
  uint64_t* empty = full + kStages;  // stage read by both MMAs
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = kQ > 1 ? static_cast<int>(cluster.block_rank()) : 0;
  // Clusters walk the token tiles first (blockIdx.x / kQ), the weight tiles second (blockIdx.y):
  // the clusters in flight share one weight tile, which stays in L2, and stream x, the smaller
  // operand (down at M 2048: w 117 MB, x 59 MB).
  const int m0 = (blockIdx.x / kQ) * kBM, n0 = blockIdx.y * kBN;
  const int m_rows = min(kBM, m - m0), n_rows = min(kBN, n - n0);
  const int leaf_stages = k / kBK, stages = leaf_stages * S::kLeaves;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&full[s], 1);
      mbarrier_init(&empty[s], 2);  // one arrival per consumer warpgroup
    }
    fence_mbarrier_init();
  }
  __syncthreads();
  // Every thread, before anything it does depends on the previous kernel: the producer's copies
  // of x, and the result's writes.
  pdl_wait();
  const int warp = threadIdx.x / 32;
  constexpr int kAcc = C::kAcc;
  float d[C::kNt][kAcc], wait[S::kRegLevels > 0 ? S::kRegLevels : 1][C::kNt][kAcc];
  if (warp == kConsumers / 32) {
    // The producer: one thread issues every copy, as far ahead as the ring's free slots allow
    // (a slot comes back once both warpgroups' MMAs that read it are done).
    if (threadIdx.x % 32 == 0) {
      const int col0 = rank * S::kLeaves * k;  // the block's leaves are consecutive K ranges
      for (int s = 0; s < stages; ++s) {
        const int slot = s % kStages;
        if (s >= kStages) mbarrier_wait(&empty[slot], ((s / kStages) - 1) & 1);
        char* stage = ring + slot * kStageBytes;
        mbarrier_arrive_expect_tx(&full[slot], kStageBytes);
        tma_load_2d(stage, &x_map, col0 + s * kBK, m0, &full[slot]);
        tma_load_2d(stage + kXBytes, &w_map, col0 + s * kBK, n0, &full[slot]);
      }
    }
  } else {
    const int wg = threadIdx.x / 128;
    int s = 0;
    // Unrolled: each leaf's fold is known at compile time (no branch holds a third set live).
#pragma unroll
    for (int leaf = 0; leaf < S::kLeaves; ++leaf) {
      // Each leaf a fresh chain into zeroed accumulators.
#pragma unroll
      for (int h = 0; h < C::kNt; ++h)
#pragma unroll
        for (int i = 0; i < kAcc; ++i) d[h][i] = 0.0f;
      for (int j = 0; j < leaf_stages; ++j, ++s) {
        const int slot = s % kStages;
        mbarrier_wait(&full[slot], (s / kStages) & 1);
        const char* stage = ring + slot * kStageBytes;
#pragma unroll
        for (int h = 0; h < C::kNt; ++h) fence_registers(d[h]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBK / 16; ++kk) {
          // Rows of 128 bytes: the warpgroup's 64 tokens start 64 rows in per warpgroup, weight
          // part h kMmaN rows in per part; k16 step kk is 32 bytes into each row.
          const uint64_t a = smem_desc_sw128(stage + wg * 64 * 128 + kk * 32);
#pragma unroll
          for (int h = 0; h < C::kNt; ++h)
            wgmma_m64k16(d[h], a,
                         smem_desc_sw128(stage + kXBytes + h * C::kMmaN * 128 + kk * 32));
        }
        wgmma_commit();
        // This stage's MMAs stay in flight while the next stage's are issued; the previous
        // stage's are done, and its slot goes back to the producer.
        wgmma_wait<1>();
#pragma unroll
        for (int h = 0; h < C::kNt; ++h) fence_registers(d[h]);
        // (A leaf's first stage: the stage before it went back when the last leaf ended.)
        if (j > 0) release_stage(empty, (s - 1) % kStages, wg);
      }
      wgmma_wait<0>();
#pragma unroll
      for (int h = 0; h < C::kNt; ++h) fence_registers(d[h]);
      // The leaf's last stage goes back before the fold, so the producer refills it meanwhile.
      release_stage(empty, (s - 1) % kStages, wg);
      // Every thread folds its own accumulators; its shared-memory slots are its own too.
      fold_leaf<S::kLevels, S::kRegLevels>(leaf, d, wait, slots);
    }
  }
  pdl_trigger();
  __syncthreads();  // every copy landed and was read: the ring becomes the parked leaf
  float* park = reinterpret_cast<float*>(ring);
  if (warp < kConsumers / 32) park_accumulators(park, kOutStride, d, threadIdx.x / 128);
  // Every subtree of the tile parked, and visible to the cluster.
  if constexpr (kQ > 1) {
    cluster.sync();
  } else {
    __syncthreads();
  }
  // The tree's upper levels over the blocks' subtrees (at kQ 1: the rounding and the write).
  sum_parked_subtrees<kQ, kBM, kBN>(cluster, park, kOutStride, rank, kThreads, out, out_f32, m0,
                                    n0, m_rows, n_rows, n);
  // No block leaves while another still reads its shared memory.
  if constexpr (kQ > 1) cluster.sync();
}

// cuTensorMapEncodeTiled from the driver, found once through the runtime (no link to libcuda).
PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// The tensor map of a bf16 matrix of `rows` rows of `cols` valid columns, row stride ld
// elements, read in boxes of box_rows x 64 columns with 128-byte swizzling.
bool make_map(CUtensorMap* map, const uint16_t* base, int64_t rows, int64_t cols, int64_t ld,
              int box_rows) {
  const auto encode = encode_tiled();
  if (encode == nullptr) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(ld) * 2};
  const cuuint32_t box[2] = {kBK, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<uint16_t*>(base), dims,
                strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <typename C, int P>
cudaError_t launch_tma_tree(cudaStream_t stream, const uint16_t* x, const uint16_t* w, int64_t ld,
                            void* out, bool f32, int m, int n, int k) {
  if ((int64_t{n} + C::kBN - 1) / C::kBN > 65535) return cudaErrorInvalidValue;  // gridDim.y
  CUtensorMap xm, wm;
  const int64_t cols = int64_t{k} * P;
  if (!make_map(&xm, x, m, cols, ld, kBM) || !make_map(&wm, w, n, cols, ld, C::kBN))
    return cudaErrorInvalidValue;
  constexpr auto kernel = tree_gemm_tma_kernel<C, P>;
  constexpr size_t kSmem = Plan<C, P>::kSmem;
  if (const cudaError_t e = allow_dynamic_smem<kernel>(kSmem, true); e != cudaSuccess) return e;
  constexpr int kQ = Plan<C, P>::kQ;
  const dim3 grid(static_cast<unsigned>(kQ * ((int64_t{m} + kBM - 1) / kBM)),
                  static_cast<unsigned>((n + C::kBN - 1) / C::kBN));
  const cudaError_t e = launch_kernel_in_clusters(kernel, grid, kThreads, kSmem, stream, kQ, xm,
                                                  wm, out, f32, m, n, k);
  // A GPU that cannot hold a cluster of P such blocks refuses the launch, as for a shape the
  // kernel does not take: the caller runs the unfused path.
  if (e == cudaErrorInvalidClusterSize || e == cudaErrorLaunchOutOfResources)
    return cudaErrorInvalidValue;
  return e;
}

}  // namespace

cudaError_t launch_tree_gemm_tma(const uint16_t* x, const uint16_t* w, void* out, bool out_f32,
                                 int m, int n, int k, int64_t ld, int leaves, int shape,
                                 cudaStream_t stream) {
  // TMA needs a row stride that is a multiple of 16 bytes (ld % 8 == 0: launch_tree_gemm's
  // check) and 16-byte aligned bases.
  if (!wgmma_runs_here() || k % kBK != 0) return cudaErrorInvalidValue;
  return with_leaf_count(leaves, [&](auto p) {
    constexpr int kP = decltype(p)::value;
    switch (shape) {
      case 0:
        return launch_tma_tree<Wide, kP>(stream, x, w, ld, out, out_f32, m, n, k);
      case 1:
        return launch_tma_tree<Pair, kP>(stream, x, w, ld, out, out_f32, m, n, k);
      case 2:
        return launch_tma_tree<Long, kP>(stream, x, w, ld, out, out_f32, m, n, k);
      case 3:
        return launch_tma_tree<Whole, kP>(stream, x, w, ld, out, out_f32, m, n, k);
      case 4:
        return launch_tma_tree<Quad, kP>(stream, x, w, ld, out, out_f32, m, n, k);
      default:
        return launch_tma_tree<Narrow, kP>(stream, x, w, ld, out, out_f32, m, n, k);
    }
  });
}

}  // namespace llm42::cuda
