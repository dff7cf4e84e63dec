// Error checks for CUDA runtime and cuBLASLt calls in host code: every call goes through one of
// these macros, so a failure names the call, its file:line and the library's own message.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "util/error.h"

namespace llm42::cuda {

[[noreturn]] inline void cuda_failed(cudaError_t e, const char* expr, const char* file, int line) {
  fail("CUDA error at {}:{}: {} returned {} ({})", file, line, expr, cudaGetErrorName(e),
       cudaGetErrorString(e));
}

[[noreturn]] inline void cublas_failed(cublasStatus_t s, const char* expr, const char* file,
                                       int line) {
  fail("cuBLASLt error at {}:{}: {} returned status {}", file, line, expr, static_cast<int>(s));
}

}  // namespace llm42::cuda

#define LLM42_CUDA_CHECK(expr)                                         \
  do {                                                                 \
    const cudaError_t llm42_e_ = (expr);                               \
    if (llm42_e_ != cudaSuccess) [[unlikely]]                          \
      ::llm42::cuda::cuda_failed(llm42_e_, #expr, __FILE__, __LINE__); \
  } while (0)

#define LLM42_CUBLAS_CHECK(expr)                                         \
  do {                                                                   \
    const cublasStatus_t llm42_s_ = (expr);                              \
    if (llm42_s_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                  \
      ::llm42::cuda::cublas_failed(llm42_s_, #expr, __FILE__, __LINE__); \
  } while (0)
