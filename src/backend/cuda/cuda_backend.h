// The CUDA backend: every kernel of the Backend interface on the GPU (bf16 activations, fp32
// accumulation), cuBLASLt GEMMs with a canonical algorithm table, paged attention for prefill
// and decode. Built only when nvcc is found (LLM42_HAVE_CUDA).
//
// Host code (this header, cuda_backend.cpp: planning, memory, cuBLASLt, errors with fmt) is
// compiled by the C++ compiler; device code lives in the .cu files under kernels/, which include
// no fmt (nvcc cannot compile its consteval checks) and expose plain launch functions.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace llm42 {

// Creates the backend on GPU `ordinal`. Throws llm42::Error when no usable GPU is present.
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts, int ordinal);

// Number of CUDA devices visible (0 when the driver or a GPU is missing).
int cuda_device_count();

}  // namespace llm42
