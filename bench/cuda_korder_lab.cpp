// Kernel lab: which K order do cuBLASLt's split-K-free algorithms (the canonical lane) follow?
// For the Llama-3.1-8B layer shapes at small M, compares the canonical lane's fp32 outputs bit
// for bit with kernels whose reduction order is known:
//   seq A / seq B  gemv_sequential.cu: one m16n8k16 MMA after another over K in natural order,
//                  weights as the MMA's A operand (seq A) or as its B operand (seq B);
//   fma            the CUDA-core fallback: one fp32 fma per k, in order;
//   fast           the fast lane's skinny GEMM (K split over 8 warps): expected to differ.
// Also checks that the canonical row of M = 1 is the row of every larger M (its invariance). A
// kernel that matches the canonical lane everywhere could serve it at decode batch sizes.
//
//   ./build/bin/cuda_korder_lab
#ifdef LLM42_HAVE_CUDA
#include <cuda_runtime.h>

#include <cmath>
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

std::vector<float> download(CudaBackend& b, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  b.copy_to_host(v.data(), t.data, v.size() * sizeof(float));
  return v;
}

// Elements whose bits differ, and the largest absolute difference.
struct Diff {
  int64_t differ = 0;
  double max_abs = 0;
};
Diff compare(const std::vector<float>& a, const std::vector<float>& b) {
  Diff d;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) ++d.differ;
    d.max_abs = std::max(d.max_abs, static_cast<double>(std::fabs(a[i] - b[i])));
  }
  return d;
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("cuda_korder_lab: no CUDA GPU, nothing to measure\n");
    return 0;
  }
  BackendOptions opts;
  opts.device = "cuda";
  CudaBackend b(opts, 0);
  std::printf("device: %s; %s\n", b.device_name().c_str(), b.kernel_id().c_str());
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  const Shape shapes[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"down", 4096, 14336}};
  const int ms[] = {1, 3, 8, 16};
  std::printf("%-6s %3s %10s  %-22s %-22s %-22s %-22s %s\n", "shape", "M", "elements",
              "seq A differ (max)", "seq B differ (max)", "fma differ (max)", "fast differ (max)",
              "canonical row 0 = M 1");
  for (const Shape& sh : shapes) {
    lab::Owned w = lab::make(b, DType::kBF16, {sh.n, sh.k});
    b.fill_random(w.t, 3, RandomInit::kNormal, 0.02f);
    lab::Owned x = lab::make(b, DType::kBF16, {16, sh.k});
    b.fill_random(x.t, 5, RandomInit::kNormal, 1.0f);
    std::vector<float> canon_m1;
    for (int m : ms) {
      const Tensor xm = x.t.rows(0, m);
      lab::Owned out = lab::make(b, DType::kF32, {m, sh.n});
      b.matmul(xm, w.t, nullptr, out.t, Schedule::kCanonical);
      const std::vector<float> canon = download(b, out.t);
      if (m == 1) canon_m1 = canon;
      const bool row0_same =
          std::memcmp(canon.data(), canon_m1.data(), canon_m1.size() * sizeof(float)) == 0;
      std::string cells[4];
      for (int v = 0; v < 4; ++v) {
        const auto* xp = static_cast<const uint16_t*>(xm.data);
        const auto* wp = static_cast<const uint16_t*>(w.t.data);
        auto* op = static_cast<float*>(out.t.data);
        if (v < 2) {
          LLM42_CUDA_CHECK(cuda::launch_gemv_sequential(xp, wp, op, m, sh.n, sh.k, v == 0,
                                                        b.stream()));
        } else if (v == 2) {
          LLM42_CUDA_CHECK(
              cuda::launch_gemm_fallback(xp, wp, op, DType::kF32, m, sh.n, sh.k, b.stream()));
        } else {
          b.matmul(xm, w.t, nullptr, out.t, Schedule::kFast);
        }
        const Diff d = compare(download(b, out.t), canon);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%lld (%.2e)", static_cast<long long>(d.differ), d.max_abs);
        cells[v] = buf;
      }
      std::printf("%-6s %3d %10lld  %-22s %-22s %-22s %-22s %s\n", sh.name, m,
                  static_cast<long long>(m * sh.n), cells[0].c_str(), cells[1].c_str(),
                  cells[2].c_str(), cells[3].c_str(), row0_same ? "yes" : "NO");
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
