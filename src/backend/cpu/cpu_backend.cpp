#include "backend/cpu/cpu_backend.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numbers>
#include <string>

#include "backend/cpu/attention.h"
#include "core/sampler.h"
#include "util/error.h"
#include "util/hash.h"
#include "util/numeric.h"

namespace llm42 {
namespace {

void check_f32(const Tensor& t, const char* what) {
  LLM42_ASSERT(t.dtype == DType::kF32 && t.device == Device::kCPU, "{} must be a CPU f32 tensor",
               what);
}

// x / sqrt(mean(x^2) + eps) * w for one row, reducing with the canonical sum of squares.
void rmsnorm_row(const float* x, const float* w, float eps, float* out, int64_t n) {
  const float ms = cpu::sum_squares(x, n) / static_cast<float>(n);
  const float inv = 1.0f / std::sqrt(ms + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * inv) * w[i];
}

}  // namespace

CpuBackend::CpuBackend(const BackendOptions& opts)
    : threads_(opts.threads > 0 ? opts.threads : std::max(1, omp_get_num_procs())),
      round_bf16_(opts.round_activations_bf16) {}

std::string CpuBackend::kernel_id() const {
#if defined(__AVX2__) && defined(__FMA__)
  std::string id = "cpu-avx2-fma-tree8";
#else
  std::string id = "cpu-portable-fma-tree8";
#endif
  if (round_bf16_) id += "-bf16act";
  return id;
}

void* CpuBackend::allocate(size_t bytes) {
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (p == nullptr) fail("CPU: out of memory allocating {} bytes", bytes);
  return p;
}
void CpuBackend::deallocate(void* p) { std::free(p); }
void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

size_t CpuBackend::free_memory() const {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  while (in >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    in.ignore(256, '\n');
  }
  return static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void CpuBackend::upload_convert(const void* src, DType from, const Tensor& dst) {
  const int64_t n = dst.numel();
  if (from == dst.dtype) {
    std::memcpy(dst.data, src, dst.nbytes());
    return;
  }
  auto load = [&](int64_t i) -> float {
    switch (from) {
      case DType::kF32:
        return static_cast<const float*>(src)[i];
      case DType::kBF16:
        return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      case DType::kF16:
        return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      default:
        LLM42_ASSERT(false, "cannot convert from {}", dtype_name(from));
    }
  };
#pragma omp parallel for schedule(static) num_threads(threads_) if (cpu::worth_parallel(n))
  for (int64_t i = 0; i < n; ++i) {
    const float v = load(i);
    if (dst.dtype == DType::kF32) {
      dst.ptr<float>()[i] = v;
    } else if (dst.dtype == DType::kBF16) {
      dst.ptr<uint16_t>()[i] = f32_to_bf16(v);
    } else {
      dst.ptr<uint16_t>()[i] = f32_to_f16(v);
    }
  }
}

void CpuBackend::fill_random(const Tensor& dst, uint64_t seed, RandomInit init, float scale,
                             const RandomWindow& window) {
  const int64_t n = dst.numel();
#pragma omp parallel for schedule(static) num_threads(threads_) if (cpu::worth_parallel(n))
  for (int64_t i = 0; i < n; ++i) {
    // Box-Muller from two counter-based uniforms: element e of the full tensor depends on
    // (seed, e) only.
    const uint64_t e =
        static_cast<uint64_t>(window_index(i, window.offset, window.cols, window.full_cols));
    const double u1 = counter_uniform(seed, e, 0);
    const double u2 = counter_uniform(seed, e, 1);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    float v = static_cast<float>(z * scale);
    if (init == RandomInit::kOnesNoise) v += 1.0f;
    if (dst.dtype == DType::kF32) {
      dst.ptr<float>()[i] = v;
    } else {
      dst.ptr<uint16_t>()[i] = f32_to_bf16(v);
    }
  }
}

void CpuBackend::begin_pass(const PassInput& pass, const KvCache& cache, const QkvLayout&) {
  pass.check(cache.block_size, cache.n_blocks);
  pass_ = pass;
}

void CpuBackend::round_if_needed(const Tensor& t) const {
  if (!round_bf16_) return;
  float* p = t.ptr<float>();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) p[i] = round_bf16(p[i]);
}

void CpuBackend::copy_device(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

void CpuBackend::copy_device_2d(void* dst, size_t dpitch, const void* src, size_t spitch,
                                size_t width, size_t rows) {
  for (size_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                width);
}

void CpuBackend::embedding(const Tensor& table, int64_t vocab_begin, const Tensor& out) {
  check_f32(out, "embedding output");
  const int64_t dim = table.dim(1);
  const int64_t rows = table.dim(0);
  for (int t = 0; t < pass_.n_tokens(); ++t) {
    const int64_t id = pass_.tokens[t] - vocab_begin;
    float* o = out.ptr<float>() + t * dim;
    if (id < 0 || id >= rows) {
      std::fill(o, o + dim, -0.0f);  // another shard's token
      continue;
    }
    if (table.dtype == DType::kF32) {
      std::memcpy(o, table.ptr<float>() + id * dim, dim * sizeof(float));
    } else {
      const uint16_t* row = table.ptr<uint16_t>() + id * dim;
      for (int64_t i = 0; i < dim; ++i) o[i] = bf16_to_f32(row[i]);
    }
  }
  round_if_needed(out.rows(0, pass_.n_tokens()));
}

void CpuBackend::rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, Schedule) {
  const int64_t rows = x.dim(0), n = x.row_size();
#pragma omp parallel for schedule(static) num_threads(threads_) if (cpu::worth_parallel(rows * n))
  for (int64_t r = 0; r < rows; ++r)
    rmsnorm_row(x.ptr<float>() + r * n, w.ptr<float>(), eps, out.ptr<float>() + r * n, n);
  round_if_needed(out);
}

void CpuBackend::add_rmsnorm(const Tensor& residual, const Tensor& delta, const Tensor& w,
                             float eps, const Tensor& out, Schedule) {
  const int64_t rows = residual.dim(0), n = residual.row_size();
#pragma omp parallel for schedule(static) num_threads(threads_) if (cpu::worth_parallel(rows * n))
  for (int64_t r = 0; r < rows; ++r) {
    float* x = residual.ptr<float>() + r * n;
    const float* d = delta.ptr<float>() + r * n;
    for (int64_t i = 0; i < n; ++i) x[i] = round_bf16_ ? round_bf16(x[i] + d[i]) : x[i] + d[i];
    rmsnorm_row(x, w.ptr<float>(), eps, out.ptr<float>() + r * n, n);
  }
  round_if_needed(out);
}

void CpuBackend::matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out,
                        Schedule s) {
  check_f32(x, "matmul input");
  check_f32(out, "matmul output");
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  LLM42_ASSERT(w.dim(1) == k && out.dim(0) == m && out.dim(1) == n, "matmul {} x {}^T -> {}",
               x.shape_string(), w.shape_string(), out.shape_string());
  const int split = s == Schedule::kFast ? cpu::fast_split_k(m, n, k, threads_) : 1;
  const float* b = bias != nullptr && !bias->empty() ? bias->ptr<float>() : nullptr;
  cpu::gemm(x.ptr<float>(), w.data, w.dtype, b, out.ptr<float>(), m, n, k, split, threads_);
  round_if_needed(out);
}

void CpuBackend::matmul_leaves(const Tensor& x, const Tensor& w, const std::vector<int64_t>& leaves,
                               const Tensor& out) {
  check_f32(x, "matmul input");
  check_f32(out, "matmul_leaves output");
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  LLM42_ASSERT(w.dim(1) == k && out.dim(0) == m && out.dim(1) == n, "matmul_leaves {} x {}^T -> {}",
               x.shape_string(), w.shape_string(), out.shape_string());
  cpu::gemm_leaves(x.ptr<float>(), w.data, w.dtype, out.ptr<float>(), m, n, k, leaves.data(),
                   static_cast<int>(leaves.size()) - 1, threads_);
}

void CpuBackend::sum_parts(const Tensor& parts, const Tensor& out) {
  check_f32(parts, "sum_parts input");
  check_f32(out, "sum_parts output");
  const int p = static_cast<int>(parts.dim(0));
  const int64_t n = out.numel();
  LLM42_ASSERT(p >= 1 && p <= 8 && (p & (p - 1)) == 0 && parts.numel() == p * n,
               "sum_parts {} -> {}", parts.shape_string(), out.shape_string());
  const float* in = parts.ptr<float>();
  float* o = out.ptr<float>();
#pragma omp parallel for schedule(static) num_threads(threads_) if (cpu::worth_parallel(n * p))
  for (int64_t i = 0; i < n; ++i) {
    float v[8];
    for (int j = 0; j < p; ++j) v[j] = in[j * n + i];
    o[i] = cpu::tree_sum(v, p);
  }
  round_if_needed(out);
}

void CpuBackend::qk_norm(const Tensor& qkv, const QkvLayout& layout, const Tensor& q_w,
                         const Tensor& k_w, float eps, Schedule) {
  const int64_t rows = qkv.dim(0);
  const int d = layout.head_dim;
#pragma omp parallel for schedule(static) \
    num_threads(threads_) if (cpu::worth_parallel(rows * layout.row()))
  for (int64_t r = 0; r < rows; ++r) {
    float* row = qkv.ptr<float>() + r * layout.row();
    for (int h = 0; h < layout.n_heads; ++h)
      rmsnorm_row(row + h * d, q_w.ptr<float>(), eps, row + h * d, d);
    float* k = row + layout.q_dim();
    for (int h = 0; h < layout.n_kv_heads; ++h)
      rmsnorm_row(k + h * d, k_w.ptr<float>(), eps, k + h * d, d);
    if (round_bf16_)
      for (int i = 0; i < layout.q_dim() + layout.kv_dim(); ++i) row[i] = round_bf16(row[i]);
  }
}

void CpuBackend::rope(const Tensor& qkv, const QkvLayout& layout, const RopeTable& table) {
  const int n = pass_.n_tokens();
  const int half = layout.head_dim / 2;
  const bool interleaved = table.layout == RopeLayout::kInterleaved;
#pragma omp parallel for schedule(static) \
    num_threads(threads_) if (cpu::worth_parallel(static_cast <int64_t>(n) * layout.row()))
  for (int t = 0; t < n; ++t) {
    const int pos = pass_.positions[t];
    LLM42_ASSERT(pos < table.max_positions, "position {} beyond the RoPE table of {}", pos,
                 table.max_positions);
    const float* c = table.cos.ptr<float>() + static_cast<int64_t>(pos) * half;
    const float* s = table.sin.ptr<float>() + static_cast<int64_t>(pos) * half;
    float* row = qkv.ptr<float>() + static_cast<int64_t>(t) * layout.row();
    const int heads = layout.n_heads + layout.n_kv_heads;  // q heads then k heads, contiguous
    for (int h = 0; h < heads; ++h) {
      float* x = row + h * layout.head_dim;
      for (int i = 0; i < half; ++i) {
        const int a = interleaved ? 2 * i : i;
        const int b = interleaved ? 2 * i + 1 : i + half;
        const float x0 = x[a], x1 = x[b];
        float y0 = x0 * c[i] - x1 * s[i];
        float y1 = x0 * s[i] + x1 * c[i];
        if (round_bf16_) {
          y0 = round_bf16(y0);
          y1 = round_bf16(y1);
        }
        x[a] = y0;
        x[b] = y1;
      }
    }
  }
}

void CpuBackend::rope_kv_write(const Tensor& qkv, const QkvLayout& layout, const RopeTable& table,
                               const KvCache& cache, int layer) {
  rope(qkv, layout, table);
  kv_write(qkv, layout, cache, layer);
}

void CpuBackend::kv_write(const Tensor& qkv, const QkvLayout& layout, const KvCache& cache,
                          int layer) {
  const int n = pass_.n_tokens();
  const int kv = layout.kv_dim();
  float* kc = cache.k[layer].ptr<float>();
  float* vc = cache.v[layer].ptr<float>();
  for (int t = 0; t < n; ++t) {
    const int64_t slot = pass_.slots[t];
    if (slot < 0) continue;  // padding row: nothing to keep
    const float* row = qkv.ptr<float>() + static_cast<int64_t>(t) * layout.row();
    std::memcpy(kc + slot * kv, row + layout.q_dim(), kv * sizeof(float));
    std::memcpy(vc + slot * kv, row + layout.q_dim() + kv, kv * sizeof(float));
  }
}

void CpuBackend::attention(const Tensor& qkv, const QkvLayout& layout, const KvCache& cache,
                           int layer, const Tensor& out, Schedule s) {
  const cpu::AttentionGeometry g{layout.n_heads, layout.n_kv_heads, layout.head_dim,
                                 cache.block_size};
  const int n = pass_.n_tokens();
  const int group = layout.n_heads / layout.n_kv_heads;
  const int fast_splits = cpu::fast_kv_splits(static_cast<int64_t>(n) * layout.n_heads, threads_);
  // Row -> sequence, for the block table.
  std::vector<int> seq_of(static_cast<size_t>(n));
  for (int i = 0; i < static_cast<int>(pass_.seqs.size()); ++i)
    for (int r = 0; r < pass_.seqs[i].q_len; ++r) seq_of[pass_.seqs[i].q_begin + r] = i;
  const float* kc = cache.k[layer].ptr<float>();
  const float* vc = cache.v[layer].ptr<float>();
  int64_t attention_work = 0;
  for (int t = 0; t < n; ++t)
    attention_work +=
        static_cast<int64_t>(pass_.positions[t] + 1) * layout.n_heads * layout.head_dim;
#pragma omp parallel for collapse(2) schedule(dynamic, 4) \
    num_threads(threads_) if (cpu::worth_parallel(attention_work))
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < layout.n_heads; ++h) {
      const PassSeq& sq = pass_.seqs[seq_of[t]];
      const float* q =
          qkv.ptr<float>() + static_cast<int64_t>(t) * layout.row() + h * layout.head_dim;
      float* o = out.ptr<float>() + static_cast<int64_t>(t) * layout.q_dim() + h * layout.head_dim;
      const int splits = attention_schedule(s, sq) == Schedule::kFast ? fast_splits : 0;
      cpu::attend_one(q, kc, vc, pass_.block_tables.data() + sq.block_begin, pass_.positions[t],
                      h / group, g, splits, o);
      if (round_bf16_)
        for (int i = 0; i < layout.head_dim; ++i) o[i] = round_bf16(o[i]);
    }
  }
}

void CpuBackend::swiglu(const Tensor& gate_up, const Tensor& out) {
  const int64_t rows = gate_up.dim(0), f = out.dim(1);
#pragma omp parallel for schedule(static) num_threads(threads_) if (cpu::worth_parallel(rows * f))
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gate_up.ptr<float>() + r * 2 * f;
    const float* u = g + f;
    float* o = out.ptr<float>() + r * f;
    for (int64_t i = 0; i < f; ++i) {
      const float silu = g[i] / (1.0f + std::exp(-g[i]));
      o[i] = round_bf16_ ? round_bf16(silu * u[i]) : silu * u[i];
    }
  }
}

void CpuBackend::gather_logit_rows(const Tensor& x, const Tensor& out) {
  const int64_t n = x.row_size();
  for (size_t r = 0; r < pass_.logit_rows.size(); ++r)
    std::memcpy(out.ptr<float>() + r * n, x.ptr<float>() + pass_.logit_rows[r] * n,
                n * sizeof(float));
}

}  // namespace llm42

namespace llm42 {

void CpuBackend::sample(const Tensor& logits, const std::vector<SampleRow>& rows,
                        std::vector<SampleResult>& out) {
  const int vocab = static_cast<int>(logits.dim(1));
  out.assign(rows.size(), SampleResult{});
#pragma omp parallel for schedule(dynamic) \
    num_threads(threads_) if (cpu::worth_parallel(static_cast <int64_t>(rows.size()) * vocab))
  for (size_t i = 0; i < rows.size(); ++i) {
    const SampleRow& r = rows[i];
    SamplingParams p;
    p.temperature = r.temperature;
    p.top_k = r.top_k;
    p.top_p = r.top_p;
    p.min_p = r.min_p;
    p.top_logprobs = std::min(r.top_logprobs, kMaxTopLogprobs);
    const float* row = logits.ptr<float>() + static_cast<int64_t>(r.logit_row) * vocab;
    const SampledToken t = r.score_token >= 0
                               ? score_token(row, vocab, r.score_token, p.top_logprobs)
                               : sample_token(row, vocab, p, r.seed, r.position, TokenHistory{});
    SampleResult& o = out[i];
    o.token = t.id;
    o.logprob = t.logprob;
    o.rank = t.rank;
    o.n_top = static_cast<int32_t>(t.top.size());
    for (size_t j = 0; j < t.top.size(); ++j) {
      o.top_ids[j] = t.top[j].first;
      o.top_logprobs[j] = t.top[j].second;
    }
  }
}

}  // namespace llm42
