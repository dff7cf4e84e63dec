// Kernel lab: the CUDA backend's GEMMs in both lanes for the Llama-3.1-8B shapes. Checks both
// lanes against the CPU GEMM, measures the two ceilings (a device-to-device copy, a large GEMM),
// then sweeps M: the cuBLASLt heuristic's first choice (may split K), the skinny tensor-core GEMM
// of gemv.cu (M <= 16, best of its variants), the fast lane (the faster of those two, picked per
// shape), and the canonical lane (autotuned split-K-free algorithm per M bucket), each against
// the floor max(bytes / bandwidth, flops / GEMM rate).
//
//   ./build/bin/cuda_gemm_lab [--quick] [--ms M,M,...] [--m-step N]
//     --ms: these M instead of the sweep. Before it, the canonical lane is called once at the
//     bucket size of each M, as the engine's warm-up does, so that every bucket's algorithm is
//     the one tuned at the bucket's largest M. --m-step: the canonical M buckets
//     (--cuda-canonical-m-step; default 128).
#ifdef LLM42_HAVE_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cuda/check.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_lab_util.h"
#include "util/error.h"
#include "util/numeric.h"

namespace {

using namespace llm42;
using lab::make;
using lab::Owned;
using lab::time_us;

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<int> custom_ms;
  BackendOptions opts;
  opts.device = "cuda";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--ms" && i + 1 < argc) {
      const std::string list = argv[++i];
      for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        const int m = std::atoi(list.substr(at, comma - at).c_str());
        if (m < 1) {
          std::fprintf(stderr, "cuda_gemm_lab: --ms '%s': expected positive integers\n",
                       list.c_str());
          return 2;
        }
        custom_ms.push_back(m);
        at = comma + 1;
      }
      std::sort(custom_ms.begin(), custom_ms.end());
    } else if (arg == "--m-step" && i + 1 < argc) {
      opts.cuda.canonical_m_step = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: cuda_gemm_lab [--quick] [--ms M,M,...] [--m-step N]\n");
      return 2;
    }
  }
  if (cuda_device_count() == 0) {
    std::printf("cuda_gemm_lab: no CUDA GPU, nothing to measure\n");
    return 0;
  }
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
  const double bw = lab::copy_bandwidth(b);
  std::printf("ceiling: device-to-device copy %.0f GB/s (read + write)\n", bw / 1e9);
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
  const std::vector<int> ms = !custom_ms.empty() ? custom_ms
                              : quick            ? std::vector<int>{1, 8, 64}
                                      : std::vector<int>{1, 2, 4, 8, 16, 32, 128, 512, 2048};
  constexpr int kCopies = 3;  // weights rotated so repeated runs do not hit L2
  constexpr int kBurst = 12;  // launches per timed burst of the skinny-variant table
  std::string bursts;         // that table's rows, printed after the main one
  // cublas: the heuristic's first choice; skinny: the best variant of gemv.cu (M <= 16); fast:
  // what the fast lane runs (the faster of the two, chosen on first use); canon: the canonical
  // lane. %floor of the fast and canonical lanes.
  std::printf("\ncanonical M buckets: %s\n",
              opts.cuda.canonical_m_step == 0
                  ? "powers of two"
                  : fmt::format("graph sizes to {}, then multiples of {}",
                                cuda::GemmRunner::kGraphRangeM, opts.cuda.canonical_m_step)
                        .c_str());
  std::printf("\n%-8s %5s %6s %9s %9s %9s %9s %9s %7s %7s  %-30s %s\n", "shape", "M", "bucket",
              "cublas us", "skinny us", "fast us", "canon us", "floor us", "fast%", "canon%",
              "fast lane runs", "canonical algorithm");
  for (const Shape& sh : shapes) {
    std::vector<Owned> ws;
    for (int c = 0; c < kCopies; ++c) {
      ws.push_back(make(b, DType::kBF16, {sh.n, sh.k}));
      b.fill_random(ws.back().t, 10 + c, RandomInit::kNormal, 0.02f);
    }
    // The engine's warm-up tunes each canonical bucket at its size: do the same for the
    // buckets of these M.
    std::vector<int> buckets;
    for (int m : ms) buckets.push_back(std::max(m, b.gemm().m_bucket(m)));
    const int max_m = *std::max_element(buckets.begin(), buckets.end());
    Owned x = make(b, DType::kBF16, {max_m, sh.k});
    b.fill_random(x.t, 20, RandomInit::kNormal, 1.0f);
    Owned o = make(b, sh.out, {max_m, sh.n});
    for (int m : buckets)
      b.matmul(x.t.rows(0, m), ws[0].t, nullptr, o.t.rows(0, m), Schedule::kCanonical);
    for (int m : ms) {
      const Tensor xm = x.t.rows(0, m), om = o.t.rows(0, m);
      const double cublas_us = time_us(b, 20, [&](int r) {
        b.gemm().run_heuristic(xm.data, ws[r % kCopies].t.data, om.data, m, sh.n, sh.k, sh.out);
      });
      double skinny_us = 0;
      if (m <= cuda::kGemvMaxM) {
        for (int v = 0; v < cuda::kGemvVariants; ++v) {
          if (!cuda::gemv_variant_takes(v, sh.n, sh.k)) continue;
          const double us = time_us(b, 20, [&](int r) {
            LLM42_CUDA_CHECK(cuda::launch_gemv(static_cast<const uint16_t*>(xm.data),
                                               static_cast<const uint16_t*>(ws[r % kCopies].t.data),
                                               om.data, sh.out, m, sh.n, sh.k, v, b.stream()));
          });
          skinny_us = skinny_us == 0 ? us : std::min(skinny_us, us);
        }
      }
      double us[2];
      for (Schedule s : {Schedule::kFast, Schedule::kCanonical})
        us[s == Schedule::kCanonical] =
            time_us(b, 20, [&](int r) { b.matmul(xm, ws[r % kCopies].t, nullptr, om, s); });
      const double flops = 2.0 * m * double(sh.n) * sh.k;
      const double bytes =
          2.0 * (double(sh.n) * sh.k + double(m) * sh.k) + double(m) * sh.n * dtype_size(sh.out);
      const double floor_us = std::max(bytes / bw, flops / gemm_rate) * 1e6;
      const std::string fast =
          b.gemm().describe(xm.data, ws[0].t.data, om.data, m, sh.n, sh.k, sh.out, Schedule::kFast);
      const std::string algo = b.gemm().describe(xm.data, ws[0].t.data, om.data, m, sh.n, sh.k,
                                                 sh.out, Schedule::kCanonical);
      std::printf("%-8s %5d %6d %9.1f %9s %9.1f %9.1f %9.1f %6.0f%% %6.0f%%  %-30s %s\n", sh.name,
                  m, b.gemm().m_bucket(m), cublas_us,
                  m <= cuda::kGemvMaxM ? fmt::format("{:.1f}", skinny_us).c_str() : "-", us[0],
                  us[1], floor_us, 100.0 * floor_us / us[0], 100.0 * floor_us / us[1],
                  fast.substr(0, 30).c_str(), algo.c_str());
    }
    // Every skinny variant launched kBurst times back to back (weights rotated), as a graph runs
    // them: microseconds per launch without the launch latency the table above includes.
    for (int m : {1, 8}) {
      bursts += fmt::format("{:<8} {:>3} {:>7.1f}", sh.name, m, 2.0 * sh.n * sh.k / bw * 1e6);
      for (int v = 0; v < cuda::kGemvVariants; ++v) {
        if (!cuda::gemv_variant_takes(v, sh.n, sh.k)) {
          bursts += fmt::format(" {:>7}", "-");
          continue;
        }
        const double us = time_us(b, 5, [&](int) {
          for (int i = 0; i < kBurst; ++i)
            LLM42_CUDA_CHECK(cuda::launch_gemv(static_cast<const uint16_t*>(x.t.data),
                                               static_cast<const uint16_t*>(ws[i % kCopies].t.data),
                                               o.t.data, sh.out, m, sh.n, sh.k, v, b.stream()));
        });
        bursts += fmt::format(" {:>7.1f}", us / kBurst);
      }
      bursts += "\n";
    }
  }

  std::printf("\nskinny variants, us per launch in bursts of %d (floor: bytes / copy bandwidth)\n",
              kBurst);
  std::printf("%-8s %3s %7s", "shape", "M", "floor");
  for (int v = 0; v < cuda::kGemvVariants; ++v) std::printf(" %7s", fmt::format("v{}", v).c_str());
  std::printf("\n%s", bursts.c_str());
  for (int v = 0; v < cuda::kGemvVariants; ++v)
    std::printf("  v%d: %s\n", v, cuda::gemv_variant_name(v));
  return 0;
}
#else
#include <cstdio>
int main() {
  std::printf("cuda_gemm_lab: this build has no CUDA backend\n");
  return 0;
}
#endif
