// The canonical lane's fixed leaf tree on the device (DESIGN.md §7), shared by the kernels that
// sum it: sum_parts (layer_kernels.cu), the fused tree GEMMs (tree_gemm.cu, tree_gemm_wgmma.cu).
#pragma once

#include <cuda_runtime.h>

#include <type_traits>
#include <utility>

namespace llm42::cuda {

// The fixed binary tree over v[0..p) into v[0]: ((v0+v1)+(v2+v3))+((v4+v5)+(v6+v7)), each
// addition rounded to fp32 (Backend::sum_parts). With p a compile-time constant the loops unroll.
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float4 add_rn(float4 a, float4 b) {
  return make_float4(__fadd_rn(a.x, b.x), __fadd_rn(a.y, b.y), __fadd_rn(a.z, b.z),
                     __fadd_rn(a.w, b.w));
}
template <typename V>
__device__ __forceinline__ void sum_tree(V* v, int p) {
#pragma unroll
  for (int width = 1; width < p; width *= 2)
#pragma unroll
    for (int j = 0; j + width < p; j += 2 * width) v[j] = add_rn(v[j], v[j + width]);
}

// f(std::integral_constant<int, P>{}) for a leaf count P of 2, 4 or 8, as a compile-time
// constant: how the fused tree GEMMs' launchers pick their kernel instance (any other count
// runs as 8; tree_gemm_takes refuses those before).
template <typename F>
cudaError_t with_leaf_count(int leaves, F&& f) {
  switch (leaves) {
    case 2:
      return std::forward<F>(f)(std::integral_constant<int, 2>{});
    case 4:
      return std::forward<F>(f)(std::integral_constant<int, 4>{});
    default:
      return std::forward<F>(f)(std::integral_constant<int, 8>{});
  }
}

}  // namespace llm42::cuda
