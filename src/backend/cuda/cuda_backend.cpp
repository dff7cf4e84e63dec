#include "backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include "util/error.h"

namespace llm42 {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts, int ordinal) {
  if (cuda_device_count() <= ordinal)
    fail("--device {}: no CUDA device {} (found {})", opts.device, ordinal, cuda_device_count());
  fail("--device {}: the CUDA backend is not complete in this build", opts.device);
}

}  // namespace llm42
