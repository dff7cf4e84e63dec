// Kernel lab: the CUDA backend's cuBLASLt GEMMs in both lanes for the Llama-3.1-8B shapes.
// Checks both lanes against the CPU GEMM, measures the two ceilings (a device-to-device copy,
// a large GEMM), then sweeps M: fast (heuristic's first choice, may split K) against canonical
// (autotuned split-K-free algorithm per M bucket), with the floor max(bytes / bandwidth,
// flops / GEMM rate) for each shape.
//
//   ./build-cuda/bin/cuda_gemm_lab [--quick]
#ifdef LLM42_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cuda/check.h"
#include "backend/cuda/cuda_backend.h"
#include "util/numeric.h"

namespace {

using namespace llm42;

struct Owned {
  Buffer buf;
  Tensor t;
};

Owned make(CudaBackend& b, DType dtype, std::initializer_list<int64_t> shape) {
  Owned o;
  o.t = Tensor(nullptr, dtype, Device::kCUDA, shape);
  o.buf = Buffer(b, o.t.nbytes());
  o.t.data = o.buf.get();
  return o;
}

// Median time in microseconds of `reps` runs of f on the backend's stream (after a warm-up).
template <typename F>
double time_us(CudaBackend& b, int reps, F&& f) {
  f(0);
  b.synchronize();
  cudaEvent_t start, stop;
  LLM42_CUDA_CHECK(cudaEventCreate(&start));
  LLM42_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    LLM42_CUDA_CHECK(cudaEventRecord(start, b.stream()));
    f(r);
    LLM42_CUDA_CHECK(cudaEventRecord(stop, b.stream()));
    LLM42_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    LLM42_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    t.push_back(ms * 1000.0f);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  if (cuda_device_count() == 0) {
    std::printf("cuda_gemm_lab: no CUDA GPU, nothing to measure\n");
    return 0;
  }
  BackendOptions opts;
  opts.device = "cuda";
  CudaBackend b(opts, 0);
  std::printf("device: %s, %d SMs; %s\n", b.device_name().c_str(), b.sm_count(),
              b.kernel_id().c_str());

  // CPU check of both lanes on a small shape.
  {
    const int m = 5, n = 384, k = 512;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> x(m * k), w(n * k), ref(m * n);
    for (float& v : x) v = round_bf16(nd(rng));
    for (float& v : w) v = round_bf16(nd(rng) * 0.05f);
    cpu::gemm(x.data(), w.data(), DType::kF32, nullptr, ref.data(), m, n, k, 1, 4);
    Owned xd = make(b, DType::kBF16, {m, k}), wd = make(b, DType::kBF16, {n, k}),
          od = make(b, DType::kF32, {m, n});
    b.upload_convert(x.data(), DType::kF32, xd.t);
    b.upload_convert(w.data(), DType::kF32, wd.t);
    for (Schedule s : {Schedule::kFast, Schedule::kCanonical}) {
      LLM42_CUDA_CHECK(cudaMemsetAsync(od.t.data, 0xff, od.t.nbytes(), b.stream()));
      b.matmul(xd.t, wd.t, nullptr, od.t, s);
      std::vector<float> got(ref.size());
      b.copy_to_host(got.data(), od.t.data, od.t.nbytes());
      double num = 0, den = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        num += (got[i] - ref[i]) * double(got[i] - ref[i]);
        den += ref[i] * double(ref[i]);
      }
      const double rel = std::sqrt(num / den);
      std::printf("check %-9s M %d N %d K %d f32 out: rel. error %.2e %s\n",
                  std::string(schedule_name(s)).c_str(), m, n, k, rel,
                  std::isfinite(rel) && rel < 1e-4 ? "ok" : "FAIL");
    }
  }

  // Ceilings: bandwidth of a 2 GiB device-to-device copy (read + write), and the canonical GEMM
  // at 8192^3 on random data.
  double bw = 0;
  {
    const size_t bytes = 2ull << 30;
    Owned a = make(b, DType::kBF16, {static_cast<int64_t>(bytes / 2)});
    Owned c = make(b, DType::kBF16, {static_cast<int64_t>(bytes / 2)});
    b.fill_random(a.t, 1, RandomInit::kNormal, 1.0f);
    const double us = time_us(b, 10, [&](int) {
      LLM42_CUDA_CHECK(
          cudaMemcpyAsync(c.t.data, a.t.data, bytes, cudaMemcpyDeviceToDevice, b.stream()));
    });
    bw = 2.0 * bytes / (us * 1e-6);
    std::printf("ceiling: device-to-device copy %.0f GB/s (read + write)\n", bw / 1e9);
  }
  double gemm_rate = 0;
  {
    const int s = quick ? 4096 : 8192;
    Owned x = make(b, DType::kBF16, {s, s}), w = make(b, DType::kBF16, {s, s}),
          o = make(b, DType::kBF16, {s, s});
    b.fill_random(x.t, 2, RandomInit::kNormal, 1.0f);
    b.fill_random(w.t, 3, RandomInit::kNormal, 1.0f);
    const double us =
        time_us(b, 10, [&](int) { b.matmul(x.t, w.t, nullptr, o.t, Schedule::kFast); });
    gemm_rate = 2.0 * s * double(s) * s / (us * 1e-6);
    std::printf("ceiling: bf16 GEMM %d^3 %.0f TFLOP/s (random data)\n", s, gemm_rate / 1e12);
  }

  struct Shape {
    const char* name;
    int n, k;
    DType out;
  };
  const std::vector<Shape> shapes = {{"qkv", 6144, 4096, DType::kBF16},
                                     {"o", 4096, 4096, DType::kBF16},
                                     {"gate_up", 28672, 4096, DType::kBF16},
                                     {"down", 4096, 14336, DType::kBF16},
                                     {"lm_head", 128256, 4096, DType::kF32}};
  const std::vector<int> ms =
      quick ? std::vector<int>{1, 64} : std::vector<int>{1, 8, 32, 128, 512, 2048};
  constexpr int kCopies = 3;  // weights rotated so repeated runs do not hit L2
  std::printf("\n%-8s %5s %10s %10s %7s %10s %9s %8s  %s\n", "shape", "M", "fast us", "canon us",
              "canon/f", "floor us", "TFLOP/s", "%floor", "canonical algorithm");
  for (const Shape& sh : shapes) {
    std::vector<Owned> ws;
    for (int c = 0; c < kCopies; ++c) {
      ws.push_back(make(b, DType::kBF16, {sh.n, sh.k}));
      b.fill_random(ws.back().t, 10 + c, RandomInit::kNormal, 0.02f);
    }
    const int max_m = ms.back();
    Owned x = make(b, DType::kBF16, {max_m, sh.k});
    b.fill_random(x.t, 20, RandomInit::kNormal, 1.0f);
    Owned o = make(b, sh.out, {max_m, sh.n});
    for (int m : ms) {
      const Tensor xm = x.t.rows(0, m), om = o.t.rows(0, m);
      double us[2];
      for (Schedule s : {Schedule::kFast, Schedule::kCanonical})
        us[s == Schedule::kCanonical] =
            time_us(b, 20, [&](int r) { b.matmul(xm, ws[r % kCopies].t, nullptr, om, s); });
      const double flops = 2.0 * m * double(sh.n) * sh.k;
      const double bytes =
          2.0 * (double(sh.n) * sh.k + double(m) * sh.k) + double(m) * sh.n * dtype_size(sh.out);
      const double floor_us = std::max(bytes / bw, flops / gemm_rate) * 1e6;
      const std::string algo = b.gemm().describe(xm.data, ws[0].t.data, om.data, m, sh.n, sh.k,
                                                 sh.out, Schedule::kCanonical);
      std::printf("%-8s %5d %10.1f %10.1f %7.2f %10.1f %9.1f %7.0f%%  %s\n", sh.name, m, us[0],
                  us[1], us[1] / us[0], floor_us, flops / (us[1] * 1e-6) / 1e12,
                  100.0 * floor_us / us[1], algo.c_str());
    }
  }
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("cuda_gemm_lab: this build has no CUDA backend\n");
  return 0;
}
#endif
