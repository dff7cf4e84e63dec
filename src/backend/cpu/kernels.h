// CPU kernels as free functions over raw arrays, so the CUDA tests can call them as the
// reference ("CPU as the oracle"). Each states its layout and what it reduces.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace llm42::cpu {

// Parallel regions below this many elements of work run on one thread: forking and joining an
// OpenMP team costs microseconds, and far more when the machine is oversubscribed (a spinning
// barrier waits for a descheduled thread). Only which thread computes an output depends on this,
// never the output's arithmetic.
inline constexpr int64_t kMinParallelWork = int64_t{1} << 15;
inline bool worth_parallel(int64_t work) { return work >= kMinParallelWork; }

// Canonical dot product of length n: 8 lanes, lane l accumulates elements l, l+8, l+16, ...
// with fused multiply-adds in index order, then the lanes are summed in a fixed tree. Every
// canonical reduction over a model dimension uses this order, whatever the batch.
float dot_f32(const float* a, const float* b, int64_t n);
float dot_bf16(const float* a, const uint16_t* b, int64_t n);  // b: bf16 weights
float sum_squares(const float* a, int64_t n);

// out (M, N) = x (M, K) @ w (N, K)^T + bias (N). w is f32 or bf16. split_k = 1 reduces each
// output over K in one canonical dot; split_k = S cuts K into S contiguous ranges reduced
// separately and added in order (the fast schedule's choice for small M).
void gemm(const float* x, const void* w, DType w_dtype, const float* bias, float* out, int64_t m,
          int64_t n, int64_t k, int split_k, int threads);

// The canonical lane's row-parallel GEMM (Backend::matmul_leaves): out (M, N) f32 = x (M, K) @
// w (N, K)^T with K cut at `leaves` (n_leaves + 1 ascending offsets from 0 to K; n_leaves 1, 2,
// 4 or 8); each leaf is one canonical dot over its range (as gemm with split_k 1), and the
// leaves are summed along the binary tree ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)).
void gemm_leaves(const float* x, const void* w, DType w_dtype, float* out, int64_t m, int64_t n,
                 int64_t k, const int64_t* leaves, int n_leaves, int threads);

// Sums p (1, 2, 4 or 8) values in place along the binary tree: v[0] = ((v0+v1)+(v2+v3))+...
float tree_sum(float* v, int p);

// Fast-schedule split-K for a GEMM of this shape on `threads` threads (1 = no split).
int fast_split_k(int64_t m, int64_t n, int64_t k, int threads);

}  // namespace llm42::cpu
