// Kernel lab: the CPU GEMM's canonical and fast (split-K) variants, checked against a float64
// reference and timed over a sweep of M for Llama-like shapes. Also measures the machine's
// memory bandwidth (a large copy) and the GEMM rate as the two ceilings.
//
//   ./build/bin/cpu_gemm_lab [--quick]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "util/numeric.h"

namespace {

double seconds_of(const std::function<void()>& f, int reps) {
  f();  // warm up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace llm42;
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int threads = omp_get_max_threads();
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);

  // Ceiling 1: memory bandwidth (read + write of a 512 MiB copy).
  {
    const size_t n = (quick ? 64ull : 512ull) << 20;
    std::vector<char> a(n, 1), b(n, 2);
    const double s = seconds_of([&] {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < static_cast<int64_t>(n); i += 4096)
        std::memcpy(b.data() + i, a.data() + i, std::min<size_t>(4096, n - i));
    }, 5);
    std::printf("memory bandwidth (copy, read+write): %.1f GB/s\n", 2.0 * n / s / 1e9);
  }

  struct Shape {
    const char* name;
    int64_t n, k;
  };
  const std::vector<Shape> shapes = quick ? std::vector<Shape>{{"small", 512, 512}}
                                          : std::vector<Shape>{{"qkv-1b", 3072, 2048},
                                                               {"down-1b", 2048, 8192},
                                                               {"tiny", 768, 256}};
  std::printf("%-8s %5s %6s %6s %8s %10s %10s %9s\n", "shape", "M", "dtype", "split", "ms",
              "GFLOP/s", "GB/s(w)", "rel.err");
  for (const Shape& sh : shapes) {
    std::vector<float> w(static_cast<size_t>(sh.n * sh.k));
    for (float& x : w) x = nd(rng) * 0.05f;
    std::vector<uint16_t> wb(w.size());
    for (size_t i = 0; i < w.size(); ++i) wb[i] = f32_to_bf16(w[i]);
    for (int64_t m : quick ? std::vector<int64_t>{1, 16} : std::vector<int64_t>{1, 8, 64, 256}) {
      std::vector<float> x(static_cast<size_t>(m * sh.k)), out(static_cast<size_t>(m * sh.n));
      for (float& v : x) v = nd(rng);
      // float64 reference on the bf16 weights.
      std::vector<double> ref(out.size());
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < sh.n; ++j) {
          double acc = 0;
          for (int64_t kk = 0; kk < sh.k; ++kk)
            acc += static_cast<double>(x[i * sh.k + kk]) * bf16_to_f32(wb[j * sh.k + kk]);
          ref[i * sh.n + j] = acc;
        }
      for (int split : {1, cpu::fast_split_k(m, sh.n, sh.k, threads)}) {
        std::fill(out.begin(), out.end(), NAN);
        const double s = seconds_of([&] {
          cpu::gemm(x.data(), wb.data(), DType::kBF16, nullptr, out.data(), m, sh.n, sh.k, split,
                    threads);
        }, quick ? 3 : 7);
        double num = 0, den = 0;
        for (size_t i = 0; i < out.size(); ++i) {
          num += (out[i] - ref[i]) * (out[i] - ref[i]);
          den += ref[i] * ref[i];
        }
        const double rel = std::sqrt(num / den);
        std::printf("%-8s %5lld %6s %6d %8.3f %10.1f %10.1f %9.2e%s\n", sh.name,
                    static_cast<long long>(m), "bf16", split, s * 1e3,
                    2.0 * m * sh.n * sh.k / s / 1e9, 2.0 * sh.n * sh.k / s / 1e9, rel,
                    std::isfinite(rel) && rel < 1e-5 ? "" : "  FAIL");
        if (split == cpu::fast_split_k(m, sh.n, sh.k, threads)) break;
      }
    }
  }
  return 0;
}
