// Programmatic dependent launch (PDL, sm_90): a kernel launched with the attribute may start
// while the kernel before it on the stream is still running, so its launch, block scheduling
// and any loads of constant data (weights) overlap the tail of its predecessor. The rules every
// kernel launched through launch_kernel follows:
//   - pdl_trigger() at the start (row kernels) or after the main loop (the skinny GEMM): lets
//     the next kernel launch once every block of this one has triggered (its blocks then wait
//     in pdl_wait; they never take the place of a block of this kernel that has yet to start,
//     so the chain cannot deadlock);
//   - pdl_wait() before the first read of anything an earlier kernel wrote and before the first
//     write: it returns when the previous kernel has completed and its writes are visible
//     (and that kernel waited for its own predecessor, so every earlier kernel is done too).
//     Only reads of data no kernel still running may write (weights) may come before it.
// PDL changes when kernels run, never what they compute: results are bit-identical with it off.
// pdl_wait is a no-op in a kernel launched without the attribute (PDL off); pdl_trigger still
// lets a PDL-launched successor start early. Weights are read before the wait only in the
// forward pass, where no kernel just before writes them (they are written at load time, followed
// by a synchronization). The attention kernel also reads before its wait what the host uploaded
// for the pass (stream-ordered copies before the pass's first kernel) and the keys of earlier
// positions, which no kernel of the pass writes.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace llm42::cuda {

// Process-wide switch (set_programmatic_launch in kernels.h); on by default.
bool programmatic_launch();

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...) with the PDL attribute when it is switched on,
// in thread-block clusters of cluster_x blocks along x where cluster_x > 1 (grid.x a multiple).
template <typename... Params, typename... Args>
cudaError_t launch_kernel_in_clusters(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                                      cudaStream_t stream, unsigned cluster_x, Args... args) {
  cudaLaunchAttribute attrs[2] = {};
  attrs[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[0].val.programmaticStreamSerializationAllowed = programmatic_launch() ? 1 : 0;
  attrs[1].id = cudaLaunchAttributeClusterDimension;
  attrs[1].val.clusterDim.x = cluster_x;
  attrs[1].val.clusterDim.y = 1;
  attrs[1].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attrs;
  cfg.numAttrs = cluster_x > 1 ? 2 : 1;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
  if (e != cudaSuccess) cudaGetLastError();  // reported here; not left for the next launch
  return e != cudaSuccess ? e : cudaGetLastError();
}

template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, Args... args) {
  return launch_kernel_in_clusters(kernel, grid, block, smem, stream, 1, args...);
}

// Lets Kernel use `bytes` of dynamic shared memory, past the default 48 KiB. The limit is a
// property of the kernel on the current device, so it is set at the kernel's first launch on
// each device (under NCCL a rank thread drives a GPU each) and remembered per device ordinal.
// Callers pass the same arguments for one Kernel every time. `max_carveout` also asks for the
// largest shared-memory share of the L1 (for kernels that want more than one block per SM).
// Setting them is not a stream operation: it is allowed while a stream is being captured.
template <auto Kernel>
cudaError_t allow_dynamic_smem(size_t bytes, bool max_carveout = false) {
  static std::atomic<uint64_t> set_on{0};  // a bit per device ordinal below 64
  int device = 0;
  if (const cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (set_on.load(std::memory_order_acquire) & bit) != 0) return cudaSuccess;
  cudaError_t e = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes));
  if (e == cudaSuccess && max_carveout)
    e = cudaFuncSetAttribute(Kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
  if (e == cudaSuccess) set_on.fetch_or(bit, std::memory_order_release);
  return e;
}

}  // namespace llm42::cuda
