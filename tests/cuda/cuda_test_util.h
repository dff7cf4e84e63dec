// Helpers for the CUDA tests: one CUDA backend per test binary, CPU oracles, transfers, poisoned
// outputs and the relative-error metric of the GPU method notes (‖out − ref‖ / ‖ref‖; NaN never
// passes). Every test skips cleanly where no GPU is present (CI compiles them without one).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "util/numeric.h"

namespace llm42::test {

// Tolerances (relative L2 error), from the bf16 unit roundoff u = 2^-9 ≈ 1.95e-3:
//   one bf16 rounding of each output element gives a relative error of about u/sqrt(3) ≈ 1.1e-3
//   in L2, so kBf16Out = 8e-3 leaves a margin of 7 for that plus fp32 reordering;
//   attention also rounds its probabilities to bf16 before the P·V product: kAttention = 1e-2;
//   fp32 GEMM output with K up to 14336 reordered sums: ~sqrt(K) * 2^-24 ≈ 7e-6, kF32Out = 1e-4.
inline constexpr double kBf16Out = 8e-3;
inline constexpr double kAttention = 1e-2;
inline constexpr double kF32Out = 1e-4;

#define LLM42_REQUIRE_GPU()                                                                 \
  do {                                                                                      \
    if (::llm42::cuda_device_count() == 0)                                                  \
      GTEST_SKIP() << "no CUDA GPU on this machine (CI builds the CUDA tests without one)"; \
  } while (0)

// The backend shared by the tests of one binary (creating one costs a cuBLASLt handle and
// workspaces).
inline CudaBackend& gpu() {
  static std::unique_ptr<CudaBackend> b = [] {
    BackendOptions o;
    o.device = "cuda";
    o.cuda.memory_fraction = 0.9;
    return std::make_unique<CudaBackend>(o, 0);
  }();
  return *b;
}

// The CPU oracle, rounding activations to bf16 after every kernel like the GPU does.
inline CpuBackend& cpu_bf16() {
  static CpuBackend b = [] {
    BackendOptions o;
    o.threads = 0;
    o.round_activations_bf16 = true;
    return CpuBackend(o);
  }();
  return b;
}

inline std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) {
    do {
      x = d(rng);
    } while (x == 0.0f);
  }
  return v;
}

// Rounds every element to bf16 (so CPU and GPU see identical inputs).
inline std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = round_bf16(x);
  return v;
}

// A device tensor owning its memory.
struct DevTensor {
  Buffer buf;
  Tensor t;
};

inline DevTensor dev_tensor(DType dtype, std::initializer_list<int64_t> shape) {
  DevTensor d;
  d.t = Tensor(nullptr, dtype, Device::kCUDA, shape);
  d.buf = Buffer(gpu(), d.t.nbytes());
  d.t.data = d.buf.get();
  return d;
}

// Fills with all-ones bytes: NaN in bf16 and f32, so an element the kernel misses is caught.
inline void poison(const Tensor& t) {
  EXPECT_EQ(cudaMemsetAsync(t.data, 0xff, t.nbytes(), gpu().stream()), cudaSuccess);
}

inline DevTensor upload(const std::vector<float>& host, DType dtype,
                        std::initializer_list<int64_t> shape) {
  DevTensor d = dev_tensor(dtype, shape);
  EXPECT_EQ(static_cast<size_t>(d.t.numel()), host.size());
  gpu().upload_convert(host.data(), DType::kF32, d.t);
  return d;
}

inline std::vector<float> download(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::kF32) {
    gpu().copy_to_host(out.data(), t.data, t.nbytes());
  } else {
    std::vector<uint16_t> raw(out.size());
    gpu().copy_to_host(raw.data(), t.data, t.nbytes());
    for (size_t i = 0; i < raw.size(); ++i) out[i] = bf16_to_f32(raw[i]);
  }
  return out;
}

inline std::vector<uint16_t> download_bits(const Tensor& t) {
  std::vector<uint16_t> out(t.nbytes() / 2);
  gpu().copy_to_host(out.data(), t.data, t.nbytes());
  return out;
}

// A host f32 tensor over a vector.
inline Tensor host_tensor(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor(v.data(), DType::kF32, Device::kCPU, shape);
}

// ‖got − ref‖ / ‖ref‖ in double; infinity when got holds a NaN or an infinity.
inline double rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace llm42::test
