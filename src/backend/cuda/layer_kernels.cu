// The kernels of a layer other than its GEMMs (gemm.cpp, gemv*.cu), attention (attention.cu)
// and sampling (sampling.cu), each working one row (token) at a time: conversions, dummy weights,
// embedding, RMSNorm (plain and fused with the residual add), Qwen3 qk-norm, RoPE with the paged
// KV write, SwiGLU, bias add, row gather, the CUDA-core GEMM fallback (each output one dot product
// of two rows).
//
// Determinism: no reduction here crosses rows, and every reduction inside a row has one fixed
// order that depends only on the row length (a fixed block of 256 threads, each summing a fixed
// stride of elements, then a fixed shuffle tree), never on the number of rows. Arithmetic that
// the compiler could contract is written with explicit _rn intrinsics, so the same row gives
// the same bits in any pass.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/tree_sum.cuh"
#include "util/hash.h"
#include "util/numeric.h"

namespace llm42::cuda {
namespace {

constexpr int kNormThreads = 256;

__device__ __forceinline__ float bf(uint16_t h) { return __uint_as_float(uint32_t{h} << 16); }
__device__ __forceinline__ uint16_t to_bf(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__device__ __forceinline__ float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return bf(static_cast<const uint16_t*>(p)[i]);
    default:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
}

__device__ __forceinline__ void store_from_f32(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(p)[i] = v;
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(p)[i] = to_bf(v);
      break;
    default:
      static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
      break;
  }
}

__global__ void convert_kernel(const void* src, DType from, void* dst, DType to, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    store_from_f32(dst, to, i, load_as_f32(src, from, i));
}

__global__ void fill_random_kernel(void* dst, DType dtype, int64_t n, uint64_t seed,
                                   bool ones_noise, float scale, int64_t offset, int64_t cols,
                                   int64_t full_cols) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const auto e = static_cast<uint64_t>(window_index(i, offset, cols, full_cols));
    const double u1 = counter_uniform(seed, e, 0);
    const double u2 = counter_uniform(seed, e, 1);
    const double z = sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
    float v = static_cast<float>(z * static_cast<double>(scale));
    if (ones_noise) v = __fadd_rn(v, 1.0f);
    store_from_f32(dst, dtype, i, v);
  }
}

// The block copies n bf16 values, in 16-byte pieces when both ends are 16-byte aligned and n
// allows it.
__device__ __forceinline__ void copy_row(const uint16_t* __restrict__ src,
                                         uint16_t* __restrict__ dst, int64_t n) {
  if (n % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    const auto* from = reinterpret_cast<const uint4*>(src);
    auto* to = reinterpret_cast<uint4*>(dst);
    for (int64_t i = threadIdx.x; i < n / 8; i += blockDim.x) to[i] = from[i];
    return;
  }
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

// One block per token: a copy of the token's row for a bf16 table, a conversion for an f32 one.
// Tokens of another vocabulary shard get -0.0 (x + -0.0 == x when the ranks' rows are summed).
__global__ void embedding_kernel(const void* __restrict__ table, DType dtype, int64_t vocab_begin,
                                 int64_t rows, const int32_t* tokens, int dim,
                                 uint16_t* __restrict__ out) {
  pdl_trigger();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const int64_t id = static_cast<int64_t>(tokens[t]) - vocab_begin;
  if (id < 0 || id >= rows) {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[t * dim + i] = 0x8000;  // -0.0
    return;
  }
  const int64_t src = id * dim;
  if (dtype == DType::kBF16) {
    copy_row(static_cast<const uint16_t*>(table) + src, out + t * dim, dim);
    return;
  }
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    out[t * dim + i] = to_bf(static_cast<const float*>(table)[src + i]);
}

// Sum over the block of one value per thread: shuffle tree within warps, then warp sums in
// warp order by thread 0. The order depends only on blockDim (fixed at kNormThreads).
__device__ float block_sum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = scratch[0];
    for (int w = 1; w < kNormThreads / 32; ++w) s = __fadd_rn(s, scratch[w]);
    scratch[kNormThreads / 32] = s;
  }
  __syncthreads();
  return scratch[kNormThreads / 32];
}

// 1 / sqrt(mean + eps), as the CPU computes it.
__device__ __forceinline__ float inv_rms(float sum_sq, int n, float eps) {
  const float ms = __fdiv_rn(sum_sq, static_cast<float>(n));
  return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(ms, eps)));
}

// The last step of both RMSNorm kernels: the row's values v and weights wv, held by this thread
// for elements i = thread + 256 j (j < E), are scaled by inv and stored to out_row.
template <int E>
__device__ __forceinline__ void store_normalized(const float (&v)[E], const float (&wv)[E],
                                                 float inv, int dim, uint16_t* out_row) {
#pragma unroll
  for (int j = 0; j < E; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    if (i < dim) out_row[i] = to_bf(__fmul_rn(__fmul_rn(v[j], inv), wv[j]));
  }
}

// One block per row, each thread holding the E elements i = thread + 256 j of it in registers
// (dim <= 256 E). Every load of a row is issued before the row's first store, so a row costs
// one memory latency and not one per element: the stores may alias the inputs (`out` may be
// `delta`), so a loop that loads, computes and stores per element runs one round trip at a time.
// The sum of squares still adds element i, i + 256, ... in that order: the reduction is the
// loop's, so the bits are too.
template <int E>
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_kernel(const uint16_t* x, const float* w, float eps, uint16_t* out, int dim) {
  pdl_trigger();
  pdl_wait();
  __shared__ float scratch[kNormThreads / 32 + 1];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float v[E], wv[E];
#pragma unroll
  for (int j = 0; j < E; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    v[j] = i < dim ? bf(x[base + i]) : 0.0f;
    wv[j] = i < dim ? w[i] : 0.0f;
  }
  float acc = 0.0f;
#pragma unroll
  for (int j = 0; j < E; ++j)
    if (threadIdx.x + j * kNormThreads < dim) acc = __fmaf_rn(v[j], v[j], acc);
  store_normalized<E>(v, wv, inv_rms(block_sum(acc, scratch), dim, eps), dim, out + base);
}

// rmsnorm_kernel after residual = bf16(residual + delta), which it writes back. `out` may alias
// `delta`: all of delta is read before any store.
template <int E>
__global__ void __launch_bounds__(kNormThreads)
    add_rmsnorm_kernel(uint16_t* residual, const uint16_t* delta, const float* w, float eps,
                       uint16_t* out, int dim) {
  pdl_trigger();
  pdl_wait();
  __shared__ float scratch[kNormThreads / 32 + 1];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  float v[E], wv[E];
#pragma unroll
  for (int j = 0; j < E; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    v[j] = i < dim ? bf(to_bf(__fadd_rn(bf(residual[base + i]), bf(delta[base + i])))) : 0.0f;
    wv[j] = i < dim ? w[i] : 0.0f;
  }
  // The residual's stores and the sum of squares in one loop: with the sum in a loop of its own
  // after the stores the kernel took 3.2 instead of 1.8 us at batch 1 on the H200 (same PTX
  // arithmetic; docs/benchmarks.md, fourth session).
  float acc = 0.0f;
#pragma unroll
  for (int j = 0; j < E; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    if (i < dim) {
      residual[base + i] = to_bf(v[j]);
      acc = __fmaf_rn(v[j], v[j], acc);
    }
  }
  store_normalized<E>(v, wv, inv_rms(block_sum(acc, scratch), dim, eps), dim, out + base);
}

// The kernels by log2 of E; a row takes the smallest E that holds it.
constexpr decltype(&rmsnorm_kernel<1>) kRmsNorm[] = {
    rmsnorm_kernel<1>,  rmsnorm_kernel<2>,  rmsnorm_kernel<4>, rmsnorm_kernel<8>,
    rmsnorm_kernel<16>, rmsnorm_kernel<32>, rmsnorm_kernel<64>};
constexpr decltype(&add_rmsnorm_kernel<1>) kAddRmsNorm[] = {
    add_rmsnorm_kernel<1>,  add_rmsnorm_kernel<2>,  add_rmsnorm_kernel<4>, add_rmsnorm_kernel<8>,
    add_rmsnorm_kernel<16>, add_rmsnorm_kernel<32>, add_rmsnorm_kernel<64>};
static_assert(kNormThreads << 6 == kMaxNormDim);
// Index into those tables for a row of dim elements; -1 when longer than the kernels take.
int norm_variant(int dim) {
  for (int v = 0; v < 7; ++v)
    if (dim <= kNormThreads << v) return v;
  return -1;
}

// One warp per (token, head) of q and k; lanes take a fixed stride of head_dim.
__global__ void qk_norm_kernel(uint16_t* qkv, int n_tokens, int row_stride, int n_heads,
                               int n_kv_heads, int head_dim, const float* q_w, const float* k_w,
                               float eps) {
  pdl_trigger();
  pdl_wait();
  const int heads = n_heads + n_kv_heads;
  const int64_t item = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
  if (item >= static_cast<int64_t>(n_tokens) * heads) return;
  const int lane = threadIdx.x % 32;
  const int64_t t = item / heads;
  const int h = static_cast<int>(item % heads);
  uint16_t* x = qkv + t * row_stride + static_cast<int64_t>(h) * head_dim;  // k follows q
  const float* w = h < n_heads ? q_w : k_w;
  float acc = 0.0f;
  for (int i = lane; i < head_dim; i += 32) {
    const float v = bf(x[i]);
    acc = __fmaf_rn(v, v, acc);
  }
  for (int o = 16; o > 0; o >>= 1) acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, o));
  const float inv = inv_rms(acc, head_dim, eps);
  for (int i = lane; i < head_dim; i += 32) x[i] = to_bf(__fmul_rn(__fmul_rn(bf(x[i]), inv), w[i]));
}

// Rotates the pair (a, b) of head x by (c, s): the CPU's arithmetic, each product rounded.
__device__ __forceinline__ void rotate_pair(uint16_t* x, int a, int b, float c, float s) {
  const float x0 = bf(x[a]), x1 = bf(x[b]);
  x[a] = to_bf(__fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)));
  x[b] = to_bf(__fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)));
}

// RoPE and the KV write in one launch: block (t, g) rotates, in place, the q heads of
// KV group g of token t and its k head (rotate_pair), then copies the rotated
// k head and the v head into the token's slot. The barrier orders the rotation before the copy.
__global__ void rope_kv_write_kernel(uint16_t* qkv, int row_stride, int n_heads, int n_kv_heads,
                                     int head_dim, bool interleaved, const int32_t* positions,
                                     const float* cos_t, const float* sin_t, const int32_t* slots,
                                     uint16_t* k_cache, uint16_t* v_cache) {
  pdl_trigger();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const int g = blockIdx.y, group = n_heads / n_kv_heads;
  const int half = head_dim / 2;
  const int64_t p = positions[t];
  uint16_t* row = qkv + t * row_stride;
  const int pairs = (group + 1) * half;
  for (int e = threadIdx.x; e < pairs; e += blockDim.x) {
    const int i = e % half, j = e / half;
    const int h = j < group ? g * group + j : n_heads + g;
    rotate_pair(row + static_cast<int64_t>(h) * head_dim, interleaved ? 2 * i : i,
                interleaved ? 2 * i + 1 : i + half, cos_t[p * half + i], sin_t[p * half + i]);
  }
  const int64_t slot = slots[t];
  if (slot < 0) return;  // padding row (uniform over the block)
  __syncthreads();
  const int64_t kv_dim = static_cast<int64_t>(n_kv_heads) * head_dim;
  const uint16_t* k = row + static_cast<int64_t>(n_heads + g) * head_dim;
  const uint16_t* v = k + kv_dim;
  const int64_t dst = slot * kv_dim + static_cast<int64_t>(g) * head_dim;
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    k_cache[dst + i] = k[i];
    v_cache[dst + i] = v[i];
  }
}

// silu(g) * u of one element: the only arithmetic of both SwiGLU kernels.
__device__ __forceinline__ uint16_t swiglu_one(uint16_t gate, uint16_t up) {
  const float g = bf(gate);
  const float silu = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
  return to_bf(__fmul_rn(silu, bf(up)));
}

// Any f and alignment: one element per thread, the row by division.
__global__ void swiglu_kernel(const uint16_t* gate_up, uint16_t* out, int64_t rows, int f) {
  pdl_trigger();
  pdl_wait();
  const int64_t total = rows * f;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = e / f;
    const int64_t i = e % f;
    out[e] = swiglu_one(gate_up[r * 2 * f + i], gate_up[r * 2 * f + f + i]);
  }
}

// 2 * W elements (W 32-bit words) per thread, f a multiple of 2 * W and rows aligned to 4 * W
// bytes, the row from blockIdx.y: no division per element (the element-wise kernel's 64-bit
// division cost more than the arithmetic: 17.8 us for 256 rows of Llama-3.1-8B's 14336, 3x its
// memory time; 5.5 us with W = 4).
template <int W>
__global__ void swiglu_rows_kernel(const uint16_t* gate_up, uint16_t* out, int f) {
  using Vec = std::conditional_t<W == 4, uint4, uint32_t>;
  static_assert(sizeof(Vec) == 4 * W);
  pdl_trigger();
  pdl_wait();
  const int c = blockIdx.x * blockDim.x + threadIdx.x;  // chunk of 2 * W elements of the row
  if (c * 2 * W >= f) return;
  const int64_t r = blockIdx.y;
  const Vec g = *reinterpret_cast<const Vec*>(gate_up + r * 2 * f + c * 2 * W);
  const Vec u = *reinterpret_cast<const Vec*>(gate_up + r * 2 * f + f + c * 2 * W);
  const uint32_t* gw = reinterpret_cast<const uint32_t*>(&g);
  const uint32_t* uw = reinterpret_cast<const uint32_t*>(&u);
  Vec o;
  uint32_t* ow = reinterpret_cast<uint32_t*>(&o);
#pragma unroll
  for (int j = 0; j < W; ++j) {
    const uint16_t lo = swiglu_one(static_cast<uint16_t>(gw[j]), static_cast<uint16_t>(uw[j]));
    const uint16_t hi =
        swiglu_one(static_cast<uint16_t>(gw[j] >> 16), static_cast<uint16_t>(uw[j] >> 16));
    ow[j] = uint32_t{lo} | (uint32_t{hi} << 16);
  }
  *reinterpret_cast<Vec*>(out + r * f + c * 2 * W) = o;
}

__global__ void gemm_fallback_kernel(const uint16_t* x, const uint16_t* w, void* out,
                                     DType out_dtype, int64_t n, int64_t k, int64_t ld) {
  pdl_trigger();
  pdl_wait();
  const int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t row = blockIdx.y;
  if (j >= n) return;
  const uint16_t* xr = x + row * ld;
  const uint16_t* wr = w + j * ld;
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i) acc = __fmaf_rn(bf(xr[i]), bf(wr[i]), acc);
  store_from_f32(out, out_dtype, row * n + j, acc);
}

__global__ void add_bias_kernel(const float* tmp, const float* bias, void* out, DType out_dtype,
                                int64_t m, int64_t n) {
  pdl_trigger();
  pdl_wait();
  const int64_t total = m * n;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total;
       e += int64_t{gridDim.x} * blockDim.x)
    store_from_f32(out, out_dtype, e, __fadd_rn(tmp[e], bias[e % n]));
}

// One block per row.
__global__ void gather_rows_kernel(const uint16_t* __restrict__ x, const int32_t* rows,
                                   int64_t row_elems, uint16_t* __restrict__ out) {
  pdl_trigger();
  pdl_wait();
  const int64_t r = blockIdx.x;
  const uint16_t* src = x + static_cast<int64_t>(rows[r]) * row_elems;
  copy_row(src, out + r * row_elems, row_elems);
}

int grid_for(int64_t n, int threads) {
  return static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535 * 8));
}

}  // namespace

cudaError_t launch_convert(const void* src, DType from, void* dst, DType to, int64_t n,
                           cudaStream_t stream) {
  if (n > 0) convert_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, from, dst, to, n);
  return cudaGetLastError();
}

cudaError_t launch_fill_random(void* dst, DType dtype, int64_t n, uint64_t seed, bool ones_noise,
                               float scale, int64_t offset, int64_t cols, int64_t full_cols,
                               cudaStream_t stream) {
  if (n > 0)
    fill_random_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dst, dtype, n, seed, ones_noise,
                                                             scale, offset, cols, full_cols);
  return cudaGetLastError();
}

// One thread per output element: the parts summed in the fixed binary tree, rounded once.
__global__ void sum_parts_kernel(const void* __restrict__ parts, DType parts_dtype, int p,
                                 int64_t n, void* __restrict__ out, DType out_dtype) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float v[8];
    for (int j = 0; j < p; ++j) v[j] = load_as_f32(parts, parts_dtype, j * n + i);
    sum_tree(v, p);
    store_from_f32(out, out_dtype, i, v[0]);
  }
}

// The common case (the canonical row-parallel GEMM's fp32 leaves, n a multiple of 4): four
// consecutive elements a thread, every part read with one 16-byte load, the tree unrolled. The
// same tree (sum_tree) as sum_parts_kernel, so the same bits; what changes is the
// memory traffic's shape: at M 2048 and N 4096 the 8 parts are 268 MB, a copy-bound kernel
// (cuda_tp_lab's `tree` column times it against the copy bandwidth).
template <int P, bool kOutF32>
__global__ void sum_parts_f32x4_kernel(const float* __restrict__ parts, int64_t n,
                                       void* __restrict__ out) {
  pdl_trigger();
  pdl_wait();
  const int64_t groups = n / 4;
  for (int64_t g = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; g < groups;
       g += int64_t{gridDim.x} * blockDim.x) {
    float4 v[P];
#pragma unroll
    for (int j = 0; j < P; ++j) v[j] = reinterpret_cast<const float4*>(parts + j * n)[g];
    sum_tree(v, P);
    if constexpr (kOutF32) {
      reinterpret_cast<float4*>(out)[g] = v[0];
    } else {
      const uint2 packed{uint32_t{to_bf(v[0].x)} | uint32_t{to_bf(v[0].y)} << 16,
                         uint32_t{to_bf(v[0].z)} | uint32_t{to_bf(v[0].w)} << 16};
      reinterpret_cast<uint2*>(out)[g] = packed;
    }
  }
}

template <int P>
cudaError_t launch_sum_parts_f32x4(const float* parts, int64_t n, void* out, bool out_f32,
                                   cudaStream_t stream) {
  const int grid = grid_for(n / 4, 256);
  return out_f32 ? launch_kernel(sum_parts_f32x4_kernel<P, true>, grid, 256, 0, stream, parts, n, out)
                 : launch_kernel(sum_parts_f32x4_kernel<P, false>, grid, 256, 0, stream, parts, n,
                                 out);
}

cudaError_t launch_sum_parts(const void* parts, DType parts_dtype, int p, int64_t n, void* out,
                             DType out_dtype, cudaStream_t stream) {
  if (p < 1 || p > 8 || (p & (p - 1)) != 0) return cudaErrorInvalidValue;
  const bool out_f32 = out_dtype == DType::kF32;
  if (n > 0 && n % 4 == 0 && parts_dtype == DType::kF32 && (out_f32 || out_dtype == DType::kBF16) &&
      reinterpret_cast<uintptr_t>(parts) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(out) % (out_f32 ? 16 : 8) == 0) {
    const auto* f = static_cast<const float*>(parts);
    switch (p) {
      case 1:
        return launch_sum_parts_f32x4<1>(f, n, out, out_f32, stream);
      case 2:
        return launch_sum_parts_f32x4<2>(f, n, out, out_f32, stream);
      case 4:
        return launch_sum_parts_f32x4<4>(f, n, out, out_f32, stream);
      default:
        return launch_sum_parts_f32x4<8>(f, n, out, out_f32, stream);
    }
  }
  if (n > 0)
    sum_parts_kernel<<<grid_for(n, 256), 256, 0, stream>>>(parts, parts_dtype, p, n, out,
                                                           out_dtype);
  return cudaGetLastError();
}

cudaError_t launch_embedding(const void* table, DType table_dtype, int64_t vocab_begin,
                             int64_t rows, const int32_t* tokens, int n_tokens, int dim,
                             uint16_t* out, cudaStream_t stream) {
  if (n_tokens <= 0) return cudaSuccess;
  return launch_kernel(embedding_kernel, n_tokens, 256, 0, stream, table, table_dtype,
                       vocab_begin, rows, tokens, dim, out);
}

cudaError_t launch_rmsnorm(const uint16_t* x, const float* w, float eps, uint16_t* out, int rows,
                           int dim, cudaStream_t stream) {
  const int v = norm_variant(dim);
  if (v < 0) return cudaErrorInvalidValue;
  if (rows <= 0) return cudaSuccess;
  return launch_kernel(kRmsNorm[v], rows, kNormThreads, 0, stream, x, w, eps, out, dim);
}

cudaError_t launch_add_rmsnorm(uint16_t* residual, const uint16_t* delta, const float* w, float eps,
                               uint16_t* out, int rows, int dim, cudaStream_t stream) {
  const int v = norm_variant(dim);
  if (v < 0) return cudaErrorInvalidValue;
  if (rows <= 0) return cudaSuccess;
  return launch_kernel(kAddRmsNorm[v], rows, kNormThreads, 0, stream, residual, delta, w, eps, out,
                       dim);
}

cudaError_t launch_qk_norm(uint16_t* qkv, int n_tokens, int row_stride, int n_heads, int n_kv_heads,
                           int head_dim, const float* q_w, const float* k_w, float eps,
                           cudaStream_t stream) {
  const int64_t warps = static_cast<int64_t>(n_tokens) * (n_heads + n_kv_heads);
  if (warps <= 0) return cudaSuccess;
  return launch_kernel(qk_norm_kernel, static_cast<int>((warps + 7) / 8), 256, 0, stream, qkv,
                       n_tokens, row_stride, n_heads, n_kv_heads, head_dim, q_w, k_w, eps);
}

cudaError_t launch_rope_kv_write(uint16_t* qkv, int n_tokens, int row_stride, int n_heads,
                                 int n_kv_heads, int head_dim, bool interleaved,
                                 const int32_t* positions, const float* cos, const float* sin,
                                 const int32_t* slots, uint16_t* k_cache, uint16_t* v_cache,
                                 cudaStream_t stream) {
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return cudaErrorInvalidValue;
  if (n_tokens <= 0) return cudaSuccess;
  return launch_kernel(rope_kv_write_kernel, dim3(n_tokens, n_kv_heads), 128, 0, stream, qkv,
                       row_stride, n_heads, n_kv_heads, head_dim, interleaved, positions, cos, sin,
                       slots, k_cache, v_cache);
}

cudaError_t launch_swiglu(const uint16_t* gate_up, uint16_t* out, int rows, int f,
                          cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(rows) * f;
  if (n <= 0) return cudaSuccess;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(gate_up) | reinterpret_cast<uintptr_t>(out);
  // Few rows (decode): two elements a thread, for more threads; else eight in 16-byte accesses.
  const bool wide = rows >= 32;
  const int per_thread = wide ? 8 : 2;
  if (f % per_thread == 0 && addr % (2 * per_thread) == 0 && rows <= 65535) {
    const dim3 grid(static_cast<unsigned>((f / per_thread + 127) / 128),
                    static_cast<unsigned>(rows));
    return wide ? launch_kernel(swiglu_rows_kernel<4>, grid, 128, 0, stream, gate_up, out, f)
                : launch_kernel(swiglu_rows_kernel<1>, grid, 128, 0, stream, gate_up, out, f);
  }
  return launch_kernel(swiglu_kernel, grid_for(n, 256), 256, 0, stream, gate_up, out, int64_t{rows},
                       f);
}

cudaError_t launch_gemm_fallback(const uint16_t* x, const uint16_t* w, void* out, DType out_dtype,
                                 int64_t m, int64_t n, int64_t k, cudaStream_t stream,
                                 int64_t ld) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((n + 127) / 128), static_cast<unsigned>(m));
  return launch_kernel(gemm_fallback_kernel, grid, 128, 0, stream, x, w, out, out_dtype, n, k,
                       ld == 0 ? k : ld);
}

cudaError_t launch_add_bias(const float* tmp, const float* bias, void* out, DType out_dtype,
                            int64_t m, int64_t n, cudaStream_t stream) {
  if (m * n <= 0) return cudaSuccess;
  return launch_kernel(add_bias_kernel, grid_for(m * n, 256), 256, 0, stream, tmp, bias, out,
                       out_dtype, m, n);
}

cudaError_t launch_gather_rows(const void* x, const int32_t* rows, int n_rows, int64_t row_bytes,
                               void* out, cudaStream_t stream) {
  if (n_rows <= 0) return cudaSuccess;
  return launch_kernel(gather_rows_kernel, n_rows, 256, 0, stream, static_cast<const uint16_t*>(x),
                       rows, row_bytes / 2, static_cast<uint16_t*>(out));
}

namespace {
bool g_programmatic_launch = true;
}  // namespace

bool programmatic_launch() { return g_programmatic_launch; }
void set_programmatic_launch(bool on) { g_programmatic_launch = on; }

}  // namespace llm42::cuda
