// The fused tree GEMM of tree_gemm.cu on Hopper's warpgroup MMA, one leaf a block, the tree
// summed across a thread-block cluster (sm_90a; kernels.h's tree_gemm variants 2, 3 and 4):
//
//   out (m, n) = the p leaves summed along the binary tree ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))
//                in fp32, leaf l = x (m, K range l) @ w (n, K range l)^T (as tree_gemm.cu).
//
// Why another form: tree_gemm.cu's mma.sync kernels keep every leaf of an output tile in one
// block, so a block runs p times the K loop of a plain GEMM with the tree's partial sums taking
// registers or shared memory from the tiles; they ran 1.5-2.7x slower than the unfused path
// (docs/benchmarks.md, fifteenth and seventeenth sessions). Here the p leaves of a 128 x 128
// or 128 x 256 output tile are p blocks of one cluster (cluster rank = leaf), each a plain
// split-K-free GEMM of its K range on wgmma; the fp32 leaves then meet in distributed shared
// memory instead of global memory: every block parks its leaf in its own shared memory, the cluster
// syncs, and block r reads rows [r 128/p, (r+1) 128/p) of all p leaves, sums them along the tree
// and writes those rows of out. Nothing but the result goes through global memory, and the blocks
// of a tile run in parallel (a split-K whose fixed reduction is the tree).
//
// Each leaf is one chain of k16 MMAs in increasing k into a zeroed fp32 accumulator, as
// gemv_canonical.cu and tree_gemm.cu reduce K: wgmma m64n128k16 per warpgroup (two warpgroups
// a block, 64 tokens each), operands in shared memory in the no-swizzle ("interleaved") layout
// of 8-row x 16-byte core matrices, streamed by cp.async through a ring of stages of 64 k.
// That this gives cuBLASLt's bits is an observation like the others' (0 bits differ on an H100,
// eighteenth session): GemmRunner admits the kernel for a bucket only after it reproduced the
// unfused path's every output bit on that call's data, and tests/cuda checks it at several M and
// leaf counts. It is slower than the unfused path at every M so far (its fastest variant
// 1.8-3.7x on an H100: docs/benchmarks.md, eighteenth session), so it is never admitted; what
// it lacks is TMA loads into 128-byte swizzled stages, which tree_gemm_tma.cu adds (variants 5
// to 7, 2x faster; GemmRunner checks only those). Its wgmma and mbarrier primitives are in
// wgmma.cuh.
//
// The layout is the PTX ISA's K-major canonical layout without swizzling,
// ((8, m), (8, 2k)) : ((8, SBO), (1, LBO)) in bf16 elements: the descriptor's stride byte offset is
// the distance between core matrices adjacent in M/N (128 bytes here), its leading byte offset
// the distance between the two core matrices of a k16 step (rows x 16 bytes).
#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "backend/cuda/cluster_tree.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/tree_sum.cuh"
#include "backend/cuda/wgmma.cuh"

namespace llm42::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kBM = 128;       // tokens a tile
constexpr int kThreads = 256;  // two warpgroups, 64 tokens each

// A variant's shape: kNt halves of 128 weight rows a warpgroup (an m64n128k16 MMA each), a ring
// of kStages stages of 64 k, and whether a warpgroup keeps one stage's MMAs in flight while the
// next stage's are issued (kOverlap; then a slot is refilled one stage later, so the ring is one
// stage deeper for the same distance of prefetch).
template <int Nt, int Stages, bool Overlap>
struct Config {
  static constexpr int kNt = Nt, kBK = 64, kStages = Stages;
  static constexpr bool kOverlap = Overlap;
  static constexpr int kBN = 128 * Nt;
  static constexpr int kXBytes = kBM * kBK * 2, kStageBytes = (kBM + kBN) * kBK * 2;
  static constexpr int kOutStride = kBN + 8;  // floats a row of the parked leaf: 8 banks of shift
  static constexpr size_t kSmem =
      std::max(size_t{kStages} * kStageBytes, size_t{kBM} * kOutStride * 4);
  static constexpr int kBlocksPerSm = 2 * kSmem <= 227 * 1024 ? 2 : 1;
  static_assert(kSmem <= 227 * 1024, "shared memory");
  static_assert(kStages >= (Overlap ? 3 : 2), "prefetch distance");
};
// Variant 2: 128 x 128, 3 stages of 32 KB, two blocks an SM hide each other's waits.
// Variant 3: 128 x 256, 4 stages of 48 KB, one block an SM, MMAs overlapped.
// Variant 4: 128 x 128, 4 stages of 32 KB, one block an SM, MMAs overlapped.
using Small = Config<1, 3, false>;
using Large = Config<2, 4, true>;
using SmallDeep = Config<1, 4, true>;

__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t leading, uint32_t stride) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) | (static_cast<uint64_t>(leading >> 4) << 16) |
         (static_cast<uint64_t>(stride >> 4) << 32);
}

// Stage s of the block's leaf into ring slot s % kStages: 128 token rows of x, then kBN weight
// rows of w, 64 k each, in core matrices: the 16 bytes of row r at k chunk c (8 elements) sit at
// byte (c * rows / 8 + r / 8) * 128 + (r % 8) * 16 of the operand. A warp copies 8 rows x 4
// chunks at a time (64 contiguous bytes a row read; four whole core matrices written).
template <int kRows>
__device__ __forceinline__ void load_operand(char* dst, const uint16_t* src, int valid_rows,
                                             int64_t ld, int64_t col0) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < kRows / 8 * 2 / (kThreads / 32); ++i) {
    const int u = warp + i * (kThreads / 32);  // 8 rows x 4 chunks
    const int r = (u / 2) * 8 + lane % 8, c = (u % 2) * 4 + lane / 8;
    const bool valid = r < valid_rows;
    cp_async16(dst + (c * (kRows / 8) + r / 8) * 128 + (r % 8) * 16,
               valid ? src + r * ld + col0 + c * 8 : src, valid);
  }
}

template <typename C, int P>
__global__ void __launch_bounds__(kThreads, C::kBlocksPerSm)
    tree_gemm_wgmma_kernel(const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                           void* __restrict__ out, bool out_f32, int m, int n, int k, int64_t ld) {
  extern __shared__ __align__(128) char smem[];
  cg::cluster_group cluster = cg::this_cluster();
  const int leaf = static_cast<int>(cluster.block_rank());
  const int m0 = blockIdx.y * kBM, n0 = (blockIdx.x / P) * C::kBN;
  const int m_rows = min(kBM, m - m0), n_rows = min(C::kBN, n - n0);
  const uint16_t* xt = x + int64_t{m0} * ld;
  const uint16_t* wt = w + int64_t{n0} * ld;
  const int64_t col_base = int64_t{leaf} * k;
  const int stages = k / C::kBK;
  auto load = [&](int s) {
    char* slot = smem + (s % C::kStages) * C::kStageBytes;
    const int64_t col = col_base + int64_t{s} * C::kBK;
    load_operand<kBM>(slot, xt, m_rows, ld, col);
    load_operand<C::kBN>(slot + C::kXBytes, wt, n_rows, ld, col);
  };
  // Stages in flight ahead of the one computed; with kOverlap a slot is free one stage later.
  constexpr int kAhead = C::kOverlap ? C::kStages - 2 : C::kStages - 1;
  pdl_wait();
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < stages) load(s);
    cp_async_commit();
  }
  float d[C::kNt][64];
#pragma unroll
  for (int h = 0; h < C::kNt; ++h)
#pragma unroll
    for (int i = 0; i < 64; ++i) d[h][i] = 0.0f;
  const int wg = threadIdx.x / 128;
  // Core matrices: 128 bytes apart along M/N, rows * 16 bytes apart along K.
  constexpr uint32_t kAlongMN = 128, kAlongKx = kBM * 16, kAlongKw = C::kBN * 16;
  for (int s = 0; s < stages; ++s) {
    // Stage s has landed for every thread, and every warpgroup is done with the stage whose
    // slot is refilled now (s - 1, or s - 2 with kOverlap: it waited for those MMAs before this
    // barrier).
    cp_async_wait<kAhead - 1>();
    fence_proxy_async();
    __syncthreads();
    if (s + kAhead < stages) load(s + kAhead);
    cp_async_commit();
    const char* slot = smem + (s % C::kStages) * C::kStageBytes;
#pragma unroll
    for (int h = 0; h < C::kNt; ++h) fence_registers(d[h]);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::kBK / 16; ++kk) {
      // k16 step kk: core-matrix columns 2 kk and 2 kk + 1; the warpgroup's 64 tokens are core
      // rows 8 wg .. 8 wg + 7; half h of the weight rows starts at core row 16 h.
      const uint64_t a =
          smem_desc(slot + 2 * kk * kAlongKx + wg * 8 * kAlongMN, kAlongKx, kAlongMN);
#pragma unroll
      for (int h = 0; h < C::kNt; ++h) {
        const uint64_t b = smem_desc(slot + C::kXBytes + 2 * kk * kAlongKw + h * 16 * kAlongMN,
                                     kAlongKw, kAlongMN);
        wgmma_m64n128k16(d[h], a, b);
      }
    }
    wgmma_commit();
    if constexpr (C::kOverlap) {
      wgmma_wait<1>();
    } else {
      wgmma_wait<0>();
    }
#pragma unroll
    for (int h = 0; h < C::kNt; ++h) fence_registers(d[h]);
  }
  wgmma_wait<0>();
#pragma unroll
  for (int h = 0; h < C::kNt; ++h) fence_registers(d[h]);
  cp_async_wait<0>();
  pdl_trigger();
  __syncthreads();  // the ring is read by no one: it becomes the parked leaf
  float* park = reinterpret_cast<float*>(smem);
  park_accumulators(park, C::kOutStride, d, wg);
  cluster.sync();  // every leaf of the tile parked, and visible to the cluster
  sum_parked_subtrees<P, kBM, C::kBN>(cluster, park, C::kOutStride, leaf, kThreads, out, out_f32,
                                      m0, n0, m_rows, n_rows, n);
  cluster.sync();  // no block leaves while another still reads its shared memory
}

template <typename C, int P>
cudaError_t launch_wgmma_tree(cudaStream_t stream, const uint16_t* x, const uint16_t* w, void* out,
                              bool f32, int m, int n, int k, int64_t ld) {
  constexpr auto kernel = tree_gemm_wgmma_kernel<C, P>;
  if (const cudaError_t e = allow_dynamic_smem<kernel>(C::kSmem, true); e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>(P * ((int64_t{n} + C::kBN - 1) / C::kBN)),
                  static_cast<unsigned>((m + kBM - 1) / kBM));
  const cudaError_t e = launch_kernel_in_clusters(kernel, grid, kThreads, C::kSmem, stream, P, x, w,
                                                  out, f32, m, n, k, ld);
  // A GPU that cannot hold a cluster of P such blocks (a partition with few SMs a GPC, another
  // process's blocks) refuses the launch, as for a shape the kernel does not take: the caller
  // runs the unfused path.
  if (e == cudaErrorInvalidClusterSize || e == cudaErrorLaunchOutOfResources)
    return cudaErrorInvalidValue;
  return e;
}

template <typename C>
cudaError_t launch_leaves(int leaves, cudaStream_t stream, const uint16_t* x, const uint16_t* w,
                          void* out, bool f32, int m, int n, int k, int64_t ld) {
  return with_leaf_count(leaves, [&](auto p) {
    return launch_wgmma_tree<C, decltype(p)::value>(stream, x, w, out, f32, m, n, k, ld);
  });
}

// Built with the sm_90a feature set (wgmma, TMA, mbarrier tx counts), this kernel has 16 bytes
// of static shared memory; built for plain sm_90, where those instructions are compiled out of
// every kernel here, none. cudaFuncGetAttributes tells which without a launch (allowed while a
// stream is captured). Never launched.
__global__ void sm90a_probe_kernel(int* sink) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ int probe[4];
  probe[threadIdx.x % 4] = static_cast<int>(threadIdx.x);
  __syncthreads();
  if (sink != nullptr) sink[threadIdx.x] = probe[(threadIdx.x + 1) % 4];
#else
  if (sink != nullptr) sink[threadIdx.x] = 0;
#endif
}

}  // namespace

// Whether the current GPU is compute 9.0 and the code loaded for it has the sm_90a feature set
// (asked once per device ordinal below 64). binaryVersion alone does not tell sm_90a from sm_90:
// a build for plain sm_90 would run the wgmma and TMA kernels as no-ops writing zeros.
bool wgmma_runs_here() {
  static std::atomic<uint64_t> known{0}, ok{0};  // a bit per device ordinal
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device >= 64) return false;
  const uint64_t bit = uint64_t{1} << device;
  if ((known.load(std::memory_order_acquire) & bit) != 0)
    return (ok.load(std::memory_order_relaxed) & bit) != 0;
  int major = 0, minor = 0;
  cudaFuncAttributes a{};
  const bool runs =
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
      cudaFuncGetAttributes(&a, sm90a_probe_kernel) == cudaSuccess && major == 9 && minor == 0 &&
      a.binaryVersion == 90 && a.sharedSizeBytes >= 16;
  if (runs) ok.fetch_or(bit, std::memory_order_relaxed);
  known.fetch_or(bit, std::memory_order_release);
  return runs;
}

cudaError_t launch_tree_gemm_wgmma(const uint16_t* x, const uint16_t* w, void* out, bool out_f32,
                                   int m, int n, int k, int64_t ld, int leaves, int shape,
                                   cudaStream_t stream) {
  // A compute-9.0 GPU with sm_90 code for the kernel (CMAKE_CUDA_ARCHITECTURES 90a); else the
  // launch is refused, as for a shape the kernel does not take.
  if (!wgmma_runs_here()) return cudaErrorInvalidValue;
  switch (shape) {
    case 0:
      return launch_leaves<Small>(leaves, stream, x, w, out, out_f32, m, n, k, ld);
    case 1:
      return launch_leaves<Large>(leaves, stream, x, w, out, out_f32, m, n, k, ld);
    default:
      return launch_leaves<SmallDeep>(leaves, stream, x, w, out, out_f32, m, n, k, ld);
  }
}

}  // namespace llm42::cuda
