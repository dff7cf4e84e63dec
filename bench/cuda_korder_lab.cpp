// Kernel lab: which K order do cuBLASLt's split-K-free algorithms (the canonical lane) follow?
// For the Llama-3.1-8B layer shapes at small M, compares the canonical lane's fp32 outputs bit
// for bit with kernels whose reduction order is known:
//   seq A / seq B  gemv_sequential.cu: one m16n8k16 MMA after another over K in natural order,
//                  weights as the MMA's A operand (seq A) or as its B operand (seq B);
//   fma            the CUDA-core fallback: one fp32 fma per k, in order;
//   fast           the fast lane's skinny GEMM (K split over 8 warps): expected to differ;
//   skinny         gemv_canonical.cu's pipelined kernel, the one the canonical lane may run.
// The reference is the canonical bucket's cuBLASLt algorithm (GemmRunner::run_canonical_cublaslt).
// Also checks that the canonical row of M = 1 is the row of every larger M (its invariance), and
// times the cuBLASLt algorithm against the skinny kernel (single launches), and names what the
// canonical lane runs for the bucket.
//
//   ./build/bin/cuda_korder_lab
#ifdef LLM42_HAVE_CUDA
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/check.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kernels.h"
#include "cuda_lab_util.h"

namespace {

using namespace llm42;

// A device tensor's elements, as the type T of their bits (float for f32, uint16_t for bf16).
template <typename T>
std::vector<T> download(CudaBackend& b, const Tensor& t) {
  std::vector<T> v(static_cast<size_t>(t.numel()));
  b.copy_to_host(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

// Elements whose bits differ.
template <typename T>
int64_t differing(const std::vector<T>& a, const std::vector<T>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return n;
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("cuda_korder_lab: no CUDA GPU, nothing to measure\n");
    return 0;
  }
  BackendOptions opts;
  opts.device = "cuda";
  opts.cuda.canonical_skinny = true;  // so that the last column shows what the autotune admits
  CudaBackend b(opts, 0);
  std::printf("device: %s; %s\n", b.device_name().c_str(), b.kernel_id().c_str());
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  const Shape shapes[] = {{"qkv", 6144, 4096},
                          {"o", 4096, 4096},
                          {"gate_up", 28672, 4096},
                          {"down", 4096, 14336},
                          {"lm_head", 128256, 4096}};
  const int ms[] = {1, 3, 8, 16};
  const char* names[] = {"seq A", "seq B", "fma", "fast", "skinny"};
  std::printf(
      "elements whose bits differ from the canonical cuBLASLt algorithm (f32 out; bf16 out"
      " for skinny in brackets), then us per launch\n%-8s %3s %9s",
      "shape", "M", "elements");
  for (const char* nm : names) std::printf(" %10s", nm);
  std::printf(" %8s %9s %9s  %s\n", "row0=M1", "cublas us", "skinny us", "canonical lane runs");
  for (const Shape& sh : shapes) {
    lab::Owned w = lab::make(b, DType::kBF16, {sh.n, sh.k});
    b.fill_random(w.t, 3, RandomInit::kNormal, 0.02f);
    lab::Owned x = lab::make(b, DType::kBF16, {16, sh.k});
    b.fill_random(x.t, 5, RandomInit::kNormal, 1.0f);
    std::vector<float> canon_m1;
    for (int m : ms) {
      const Tensor xm = x.t.rows(0, m);
      lab::Owned out = lab::make(b, DType::kF32, {m, sh.n});
      lab::Owned out16 = lab::make(b, DType::kBF16, {m, sh.n});
      const auto* xp = static_cast<const uint16_t*>(xm.data);
      const auto* wp = static_cast<const uint16_t*>(w.t.data);
      b.gemm().run_canonical_cublaslt(xm.data, w.t.data, out.t.data, m, sh.n, sh.k, DType::kF32);
      const std::vector<float> canon = download<float>(b, out.t);
      b.gemm().run_canonical_cublaslt(xm.data, w.t.data, out16.t.data, m, sh.n, sh.k, DType::kBF16);
      const std::vector<uint16_t> canon16 = download<uint16_t>(b, out16.t);
      if (m == 1) canon_m1 = canon;
      const bool row0_same =
          std::memcmp(canon.data(), canon_m1.data(), canon_m1.size() * sizeof(float)) == 0;
      std::printf("%-8s %3d %9lld", sh.name, m, static_cast<long long>(m * sh.n));
      for (int v = 0; v < 5; ++v) {
        auto* op = static_cast<float*>(out.t.data);
        if (v < 2) {
          LLM42_CUDA_CHECK(
              cuda::launch_gemv_sequential(xp, wp, op, m, sh.n, sh.k, v == 0, b.stream()));
        } else if (v == 2) {
          LLM42_CUDA_CHECK(
              cuda::launch_gemm_fallback(xp, wp, op, DType::kF32, m, sh.n, sh.k, b.stream()));
        } else if (v == 3) {
          b.matmul(xm, w.t, nullptr, out.t, Schedule::kFast);
        } else {
          LLM42_CUDA_CHECK(
              cuda::launch_gemv_canonical(xp, wp, op, DType::kF32, m, sh.n, sh.k, b.stream()));
        }
        const int64_t d = differing(download<float>(b, out.t), canon);
        if (v < 4) {
          std::printf(" %10lld", static_cast<long long>(d));
          continue;
        }
        LLM42_CUDA_CHECK(cuda::launch_gemv_canonical(xp, wp, out16.t.data, DType::kBF16, m, sh.n,
                                                     sh.k, b.stream()));
        const int64_t d16 = differing(download<uint16_t>(b, out16.t), canon16);
        char cell[32];
        std::snprintf(cell, sizeof cell, "%lld (%lld)", static_cast<long long>(d),
                      static_cast<long long>(d16));
        std::printf(" %10s", cell);
      }
      const double cublas_us = lab::time_us(b, 9, [&](int) {
        b.gemm().run_canonical_cublaslt(xm.data, w.t.data, out16.t.data, m, sh.n, sh.k,
                                        DType::kBF16);
      });
      const double skinny_us = lab::time_us(b, 9, [&](int) {
        LLM42_CUDA_CHECK(cuda::launch_gemv_canonical(xp, wp, out16.t.data, DType::kBF16, m, sh.n,
                                                     sh.k, b.stream()));
      });
      const std::string runs = b.gemm().describe(xm.data, w.t.data, out16.t.data, m, sh.n, sh.k,
                                                 DType::kBF16, Schedule::kCanonical);
      std::printf(" %8s %9.1f %9.1f  %s\n", row0_same ? "yes" : "NO", cublas_us, skinny_us,
                  runs.c_str());
    }
  }
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("cuda_korder_lab: this build has no CUDA backend\n");
  return 0;
}
#endif
