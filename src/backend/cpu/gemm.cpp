// CPU GEMM and the canonical dot product.
//
// Canonical order: every output element is reduced over K by 8 lanes (lane l takes k = l, l+8,
// ...) with one fused multiply-add per element in k order, then the lanes are summed as
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). The register tiling below (up to 2 rows x 4 columns)
// only decides which outputs are computed together; each output's arithmetic is the same
// instruction sequence in every tile shape, so the result does not depend on M or on where a
// row sits. The portable path performs exactly the same IEEE operations with std::fma.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "util/error.h"
#include "util/numeric.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LLM42_CPU_AVX2 1
#endif

namespace llm42::cpu {
namespace {

#ifdef LLM42_CPU_AVX2
using Vec = __m256;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline Vec vload(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vhsum(Vec v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  const __m128 s = _mm_add_ps(lo, hi);                 // (l0+l4, l1+l5, l2+l6, l3+l7)
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));  // ((l0+l4)+(l2+l6), (l1+l5)+(l3+l7))
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
#else
struct Vec {
  float l[8];
};
inline Vec vzero() { return Vec{}; }
inline Vec vload(const float* p) {
  Vec v;
  std::memcpy(v.l, p, sizeof v.l);
  return v;
}
inline Vec vload(const uint16_t* p) {
  Vec v;
  for (int i = 0; i < 8; ++i) v.l[i] = bf16_to_f32(p[i]);
  return v;
}
inline Vec vfma(Vec a, Vec b, Vec c) {
  for (int i = 0; i < 8; ++i) c.l[i] = std::fma(a.l[i], b.l[i], c.l[i]);
  return c;
}
inline float vhsum(Vec v) {
  const float* l = v.l;
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
#endif

// Loads the last n % 8 elements zero-padded to a full vector.
template <typename T>
inline Vec vload_tail(const T* p, int64_t rem) {
  alignas(32) T buf[8] = {};
  std::memcpy(buf, p, static_cast<size_t>(rem) * sizeof(T));
  return vload(buf);
}

// Computes the MR x NR outputs out[i][j] = dot(x[i], w[j]) over [0, k) in canonical order.
template <int MR, int NR, typename W>
inline void dot_tile(const float* const* x, const W* const* w, int64_t k, float* out,
                     int64_t out_stride) {
  Vec acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = vzero();
  const int64_t k8 = k - k % 8;
  for (int64_t kk = 0; kk < k8; kk += 8) {
    Vec xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = vload(x[i] + kk);
    for (int j = 0; j < NR; ++j) {
      const Vec wv = vload(w[j] + kk);
      for (int i = 0; i < MR; ++i) acc[i][j] = vfma(xv[i], wv, acc[i][j]);
    }
  }
  if (k8 < k) {
    Vec xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = vload_tail(x[i] + k8, k - k8);
    for (int j = 0; j < NR; ++j) {
      const Vec wv = vload_tail(w[j] + k8, k - k8);
      for (int i = 0; i < MR; ++i) acc[i][j] = vfma(xv[i], wv, acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) out[i * out_stride + j] = vhsum(acc[i][j]);
}

constexpr int kMr = 2;
constexpr int kNr = 4;
constexpr int kTreeMaxLeaves = 8;

// Dispatches a (mr <= kMr) x (nr <= kNr) tile to the matching instantiation.
template <typename W>
void tile(int mr, int nr, const float* const* x, const W* const* w, int64_t k, float* out,
          int64_t out_stride) {
  switch (mr * 8 + nr) {
    case 2 * 8 + 4: return dot_tile<2, 4>(x, w, k, out, out_stride);
    case 2 * 8 + 3: return dot_tile<2, 3>(x, w, k, out, out_stride);
    case 2 * 8 + 2: return dot_tile<2, 2>(x, w, k, out, out_stride);
    case 2 * 8 + 1: return dot_tile<2, 1>(x, w, k, out, out_stride);
    case 1 * 8 + 4: return dot_tile<1, 4>(x, w, k, out, out_stride);
    case 1 * 8 + 3: return dot_tile<1, 3>(x, w, k, out, out_stride);
    case 1 * 8 + 2: return dot_tile<1, 2>(x, w, k, out, out_stride);
    default: return dot_tile<1, 1>(x, w, k, out, out_stride);
  }
}

// Runs body(m0, n0, mr, nr) for every (up to kMr) x (up to kNr) output tile, in parallel.
template <typename Body>
void for_each_tile(int64_t m, int64_t n, int64_t k, int threads, const Body& body) {
  const int64_t mt = (m + kMr - 1) / kMr;
  const int64_t nt = (n + kNr - 1) / kNr;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads) if(worth_parallel(m * n * k))
  for (int64_t ti = 0; ti < mt; ++ti) {
    for (int64_t tj = 0; tj < nt; ++tj) {
      const int64_t m0 = ti * kMr, n0 = tj * kNr;
      body(m0, n0, static_cast<int>(std::min<int64_t>(kMr, m - m0)),
           static_cast<int>(std::min<int64_t>(kNr, n - n0)));
    }
  }
}

// The tile's outputs reduced over K range [k0, k1) (x and w rows of stride k) into part
// (row stride kNr).
template <typename W>
void tile_range(const float* x, const W* w, int64_t k, int64_t m0, int64_t n0, int mr, int nr,
                int64_t k0, int64_t k1, float* part) {
  const float* xr[kMr];
  const W* wr[kNr];
  for (int i = 0; i < mr; ++i) xr[i] = x + (m0 + i) * k + k0;
  for (int j = 0; j < nr; ++j) wr[j] = w + (n0 + j) * k + k0;
  tile(mr, nr, xr, wr, k1 - k0, part, kNr);
}

template <typename W>
void gemm_typed(const float* x, const W* w, const float* bias, float* out, int64_t m, int64_t n,
                int64_t k, int split_k, int threads) {
  split_k = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(split_k, k / 8)));
  for_each_tile(m, n, k, threads, [&](int64_t m0, int64_t n0, int mr, int nr) {
    float* o = out + m0 * n + n0;
    // Split-K: contiguous ranges of K, 8-aligned, partials added in range order.
    float part[kMr * kNr];
    for (int s = 0; s < split_k; ++s) {
      const int64_t k0 = (k / 8 * s / split_k) * 8;
      const int64_t k1 = s + 1 == split_k ? k : (k / 8 * (s + 1) / split_k) * 8;
      tile_range(x, w, k, m0, n0, mr, nr, k0, k1, part);
      for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j)
          o[i * n + j] = s == 0 ? part[i * kNr + j] : o[i * n + j] + part[i * kNr + j];
    }
    if (bias != nullptr)
      for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j) o[i * n + j] += bias[n0 + j];
  });
}

template <typename W>
void gemm_leaves_typed(const float* x, const W* w, float* out, int64_t m, int64_t n, int64_t k,
                       const int64_t* leaves, int n_leaves, int threads) {
  for_each_tile(m, n, k, threads, [&](int64_t m0, int64_t n0, int mr, int nr) {
    float part[kTreeMaxLeaves][kMr * kNr];
    for (int l = 0; l < n_leaves; ++l)
      tile_range(x, w, k, m0, n0, mr, nr, leaves[l], leaves[l + 1], part[l]);
    for (int i = 0; i < mr; ++i) {
      for (int j = 0; j < nr; ++j) {
        float v[kTreeMaxLeaves];
        for (int l = 0; l < n_leaves; ++l) v[l] = part[l][i * kNr + j];
        out[(m0 + i) * n + n0 + j] = tree_sum(v, n_leaves);
      }
    }
  });
}

}  // namespace

float tree_sum(float* v, int p) {
  for (int width = 1; width < p; width *= 2)
    for (int i = 0; i + width < p; i += 2 * width) v[i] = v[i] + v[i + width];
  return v[0];
}

void gemm_leaves(const float* x, const void* w, DType w_dtype, float* out, int64_t m, int64_t n,
                 int64_t k, const int64_t* leaves, int n_leaves, int threads) {
  LLM42_ASSERT(n_leaves >= 1 && n_leaves <= kTreeMaxLeaves && (n_leaves & (n_leaves - 1)) == 0 &&
                   leaves[0] == 0 && leaves[n_leaves] == k,
               "{} leaves over K {}", n_leaves, k);
  if (w_dtype == DType::kBF16) {
    gemm_leaves_typed(x, static_cast<const uint16_t*>(w), out, m, n, k, leaves, n_leaves, threads);
  } else {
    gemm_leaves_typed(x, static_cast<const float*>(w), out, m, n, k, leaves, n_leaves, threads);
  }
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float r;
  const float* xa[1] = {a};
  const float* wb[1] = {b};
  dot_tile<1, 1>(xa, wb, n, &r, 1);
  return r;
}

float dot_bf16(const float* a, const uint16_t* b, int64_t n) {
  float r;
  const float* xa[1] = {a};
  const uint16_t* wb[1] = {b};
  dot_tile<1, 1>(xa, wb, n, &r, 1);
  return r;
}

float sum_squares(const float* a, int64_t n) { return dot_f32(a, a, n); }

void gemm(const float* x, const void* w, DType w_dtype, const float* bias, float* out, int64_t m,
          int64_t n, int64_t k, int split_k, int threads) {
  if (w_dtype == DType::kBF16) {
    gemm_typed(x, static_cast<const uint16_t*>(w), bias, out, m, n, k, split_k, threads);
  } else {
    gemm_typed(x, static_cast<const float*>(w), bias, out, m, n, k, split_k, threads);
  }
}

int fast_split_k(int64_t m, int64_t n, int64_t k, int threads) {
  // Like a GPU library's heuristic: when the output has too few tiles to keep every thread busy
  // (small M, i.e. decode), cut K so that there is more parallel work. The choice depends on M,
  // so the rounding of a row depends on how many rows share the pass.
  const int64_t tiles = ((m + kMr - 1) / kMr) * ((n + kNr - 1) / kNr);
  if (tiles >= static_cast<int64_t>(threads) * 64) return 1;
  const int by_m = m <= 2 ? 4 : (m <= 8 ? 3 : (m <= 32 ? 2 : 1));
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(by_m, k / 32)));
}

}  // namespace llm42::cpu
