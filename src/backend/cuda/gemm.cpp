#include "backend/cuda/gemm.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/check.h"
#include "backend/cuda/kernels.h"
#include "util/error.h"
#include "util/log.h"

namespace llm42::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // enough for every split-K the heuristic picks
constexpr int kHeuristicCandidates = 32;
constexpr int kMaxHeuristicPicks = 16;  // split-K-free heuristic results kept
constexpr int kMaxCandidates = 40;      // with their tile variants
constexpr int kMaxRefinements = 48;     // custom option and cluster variants of the fastest
constexpr int kTimedRuns = 5;
// Version of gemv_canonical.cu's kernel; a cache entry admitting another version is not used.
constexpr int kSkinnyKernelVersion = 1;

cudaDataType_t cuda_type(DType t) {
  LLM42_ASSERT(t == DType::kBF16 || t == DType::kF32, "GEMM output must be bf16 or f32, not {}",
               dtype_name(t));
  return t == DType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
}

template <typename T>
T config_attr(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T v{};
  size_t written = 0;
  LLM42_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written));
  return v;
}

bool split_k_free(const cublasLtMatmulAlgo_t& algo) {
  return config_attr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) <= 1 &&
         config_attr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME) ==
             CUBLASLT_REDUCTION_SCHEME_NONE;
}

bool tensor_core(const cublasLtMatmulAlgo_t& algo) {
  uint64_t flags = 0;
  size_t written = 0;
  if (cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_NUMERICAL_IMPL_FLAGS, &flags,
                                        sizeof flags, &written) != CUBLAS_STATUS_SUCCESS)
    return false;
  return (flags & CUBLASLT_NUMERICAL_IMPL_FLAGS_HMMA) != 0;
}

// Whether x and w start on 16 bytes and rows of `ld` bf16 keep them there (what cuBLASLt's
// tensor-core algorithms and the kernels of our own need).
bool aligned_rows(const void* x, const void* w, int64_t ld) {
  return ld % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

// Leaves of one size k from offset 0 (Backend::matmul_leaves' leaves where K splits evenly).
bool equal_leaves(const std::vector<int64_t>& leaves) {
  const int64_t k = leaves[1] - leaves[0];
  bool equal = leaves[0] == 0;
  for (size_t l = 0; l + 1 < leaves.size(); ++l) equal = equal && leaves[l + 1] - leaves[l] == k;
  return equal;
}

bool same_algo(const cublasLtMatmulAlgo_t& a, const cublasLtMatmulAlgo_t& b) {
  return std::memcmp(a.data, b.data, sizeof a.data) == 0;
}

std::string cache_file(const std::string& device_tag) {
  if (const char* p = std::getenv("LLM42_GEMM_CACHE"); p != nullptr && *p != '\0') return p;
  std::filesystem::path dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    dir = x;
  } else if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') {
    dir = std::filesystem::path(h) / ".cache";
  } else {
    dir = std::filesystem::temp_directory_path();
  }
  return (dir / "llm42" / fmt::format("gemm-{}-cublasLt{}.json", device_tag, cublasLtGetVersion()))
      .string();
}

}  // namespace

GemmRunner::GemmRunner(cudaStream_t stream, const std::string& device_tag, bool canonical_skinny,
                       int m_step)
    : stream_(stream),
      canonical_skinny_(canonical_skinny),
      m_step_(m_step),
      workspace_bytes_(kWorkspaceBytes),
      cache_path_(cache_file(device_tag)) {
  static_assert(kMaxBucket == 4096, "check_canonical_m_step's upper bound");
  check_canonical_m_step(m_step);
  LLM42_CUBLAS_CHECK(cublasLtCreate(&handle_));
  LLM42_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  LLM42_CUDA_CHECK(cudaEventCreate(&start_));
  LLM42_CUDA_CHECK(cudaEventCreate(&stop_));
  load_cache();
}

GemmRunner::~GemmRunner() {
  for (auto& [key, l] : layouts_) {
    cublasLtMatrixLayoutDestroy(l.a);
    cublasLtMatrixLayoutDestroy(l.b);
    cublasLtMatrixLayoutDestroy(l.d);
    cublasLtMatmulDescDestroy(l.op);
  }
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
  cudaFree(workspace_);
  cublasLtDestroy(handle_);
}

int GemmRunner::m_bucket(int64_t m, int m_step) {
  if (m >= kMaxBucket) return kMaxBucket;
  auto round_up = [m](int64_t step) { return static_cast<int>((m + step - 1) / step * step); };
  if (m_step > 0 && m > 8) return m <= kGraphRangeM ? round_up(8) : round_up(m_step);
  return static_cast<int>(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(m, 1))));
}

std::vector<int> GemmRunner::bucket_sizes(int limit, int m_step) {
  std::vector<int> sizes;
  for (int m = 1; m < limit; m = m_bucket(m + 1, m_step)) {
    sizes.push_back(m);
    if (m == kMaxBucket) break;
  }
  if (limit > 0 && (sizes.empty() || sizes.back() != limit)) sizes.push_back(limit);
  return sizes;
}

const GemmRunner::Layouts& GemmRunner::layouts(int64_t m, int64_t n, int64_t k, DType out,
                                               int64_t ld, int batch) {
  if (ld == 0) ld = k;
  const auto key = std::make_tuple(m, n, k, out, ld, batch);
  auto it = layouts_.find(key);
  if (it != layouts_.end()) return it->second;
  Layouts l;
  LLM42_CUBLAS_CHECK(cublasLtMatmulDescCreate(&l.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LLM42_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(l.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  LLM42_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(l.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  // Column-major views of the row-major tensors: w (N, K) is K x N, x (M, K) is K x M, out
  // (M, N) is N x M.
  LLM42_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l.a, CUDA_R_16BF, k, n, ld));
  LLM42_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l.b, CUDA_R_16BF, k, m, ld));
  LLM42_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l.d, cuda_type(out), n, m, n));
  if (batch > 1) {
    const int32_t count = batch;
    const int64_t slice = k, out_stride = m * n;
    for (cublasLtMatrixLayout_t t : {l.a, l.b, l.d}) {
      LLM42_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(t, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                          &count, sizeof count));
      const int64_t& stride = t == l.d ? out_stride : slice;
      LLM42_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
          t, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
  }
  return layouts_.emplace(key, l).first->second;
}

bool GemmRunner::batch_supported(const Layouts& l, const cublasLtMatmulAlgo_t& algo) {
  const auto key =
      std::make_pair(&l, std::string(reinterpret_cast<const char*>(algo.data), sizeof algo.data));
  auto it = batch_ok_.find(key);
  if (it != batch_ok_.end()) return it->second;
  cublasLtMatmulHeuristicResult_t r{};
  const cublasStatus_t st = cublasLtMatmulAlgoCheck(handle_, l.op, l.a, l.b, l.d, l.d, &algo, &r);
  const bool ok = st == CUBLAS_STATUS_SUCCESS && r.workspaceSize <= workspace_bytes_;
  if (!ok)
    log_debug("canonical leaves: cuBLASLt does not batch {} (status {})", algo_desc(algo),
              static_cast<int>(st));
  return batch_ok_.emplace(key, ok).first->second;
}

cublasStatus_t GemmRunner::matmul(const Layouts& l, const cublasLtMatmulAlgo_t& algo, const void* x,
                                  const void* w, void* out) {
  const float alpha = 1.0f, beta = 0.0f;
  return cublasLtMatmul(handle_, l.op, &alpha, w, l.a, x, l.b, &beta, out, l.d, out, l.d, &algo,
                        workspace_, workspace_bytes_, stream_);
}

void GemmRunner::run(const void* x, const void* w, void* out, int64_t m, int64_t n, int64_t k,
                     DType out_dtype, Schedule s) {
  const auto* xb = static_cast<const uint16_t*>(x);
  const auto* wb = static_cast<const uint16_t*>(w);
  if (uses_fallback(n, k)) {
    LLM42_CUDA_CHECK(launch_gemm_fallback(xb, wb, out, out_dtype, m, n, k, stream_));
    return;
  }
  if (s == Schedule::kFast) {
    const FastChoice& f = fast_choice(x, w, out, m, n, k, out_dtype);
    if (f.gemv_variant >= 0) {
      LLM42_CUDA_CHECK(launch_gemv(xb, wb, out, out_dtype, m, n, k, f.gemv_variant, stream_));
    } else {
      LLM42_CUBLAS_CHECK(matmul(layouts(m, n, k, out_dtype), f.algo, x, w, out));
    }
    return;
  }
  const Tuned& t = canonical(x, w, out, m, n, k, out_dtype);
  if (use_skinny(t)) {
    const cudaError_t e = launch_gemv_canonical(xb, wb, out, out_dtype, m, n, k, stream_);
    if (e == cudaSuccess) return;
    // Refused (arguments this call's pointers do not meet): the algorithm it was checked
    // against gives the same bits.
    LLM42_ASSERT(e == cudaErrorInvalidValue, "canonical skinny GEMM: {}", cudaGetErrorString(e));
  }
  LLM42_CUBLAS_CHECK(matmul(layouts(m, n, k, out_dtype), t.algo, x, w, out));
}

void GemmRunner::run_canonical_slice(const void* x, const void* w, void* out, int64_t m, int64_t n,
                                     int64_t k, int64_t ld, DType out_dtype) {
  const auto* xb = static_cast<const uint16_t*>(x);
  const auto* wb = static_cast<const uint16_t*>(w);
  if (uses_fallback(n, k) || !aligned_rows(x, w, ld)) {  // N is the model's dim: never a TP shard's
    LLM42_CUDA_CHECK(launch_gemm_fallback(xb, wb, out, out_dtype, m, n, k, stream_, ld));
    return;
  }
  // Tuning (on the first call of a bucket) reads x and w as if contiguous: inside the same
  // allocations, and only the candidates' agreement and speed are looked at.
  const Tuned& t = canonical(x, w, out, m, n, k, out_dtype);
  LLM42_CUBLAS_CHECK(matmul(layouts(m, n, k, out_dtype, ld), t.algo, x, w, out));
}

void GemmRunner::run_canonical_leaves(const void* x, const void* w, float* parts, int64_t m,
                                      int64_t n, int64_t ld, const std::vector<int64_t>& leaves) {
  const int p = static_cast<int>(leaves.size()) - 1;
  const int64_t k = leaves[1] - leaves[0];
  const auto* xb = static_cast<const uint16_t*>(x);
  const auto* wb = static_cast<const uint16_t*>(w);
  if (equal_leaves(leaves) && aligned_rows(x, w, ld) && !uses_fallback(n, k)) {
    // Tuning (on the first call of a bucket) reads x and w as if contiguous, as in
    // run_canonical_slice.
    const Tuned& t = canonical(x, w, parts, m, n, k, DType::kF32);
    if (m <= kGemvMaxM && use_skinny(t)) {
      const cudaError_t e =
          launch_gemv_canonical(xb, wb, parts, DType::kF32, m, n, k, stream_, ld, p);
      if (e == cudaSuccess) {
        last_leaf_path_ = LeafPath::kSkinny;
        return;
      }
      LLM42_ASSERT(e == cudaErrorInvalidValue, "canonical skinny GEMM: {}", cudaGetErrorString(e));
    }
    if (p > 1 && leaf_batching_) {
      const Layouts& l = layouts(m, n, k, DType::kF32, ld, p);
      if (batch_supported(l, t.algo)) {
        LLM42_CUBLAS_CHECK(matmul(l, t.algo, x, w, parts));
        last_leaf_path_ = LeafPath::kBatched;
        return;
      }
    }
  }
  for (int l = 0; l < p; ++l)
    run_canonical_slice(xb + leaves[l], wb + leaves[l], parts + l * m * n, m, n,
                        leaves[l + 1] - leaves[l], ld, DType::kF32);
  last_leaf_path_ = LeafPath::kPerLeaf;
}

void GemmRunner::run_unfused_tree(const void* x, const void* w, void* out, DType out_dtype,
                                  int64_t m, int64_t n, int64_t ld,
                                  const std::vector<int64_t>& leaves, float* parts) {
  const int p = static_cast<int>(leaves.size()) - 1;
  // One leaf into an f32 `out` writes it directly.
  if (p == 1 && out_dtype == DType::kF32) {
    run_canonical_leaves(x, w, static_cast<float*>(out), m, n, ld, leaves);
    return;
  }
  run_canonical_leaves(x, w, parts, m, n, ld, leaves);
  LLM42_CUDA_CHECK(launch_sum_parts(parts, DType::kF32, p, m * n, out, out_dtype, stream_));
}

void GemmRunner::run_canonical_tree(const void* x, const void* w, void* out, DType out_dtype,
                                    int64_t m, int64_t n, int64_t ld,
                                    const std::vector<int64_t>& leaves, float* parts) {
  const int p = static_cast<int>(leaves.size()) - 1;
  const int64_t k = leaves[1] - leaves[0];
  // The candidates are sm_90a kernels: on any other GPU no check is made.
  if (fused_tree_ && wgmma_runs_here() && equal_leaves(leaves) && aligned_rows(x, w, ld) &&
      reinterpret_cast<uintptr_t>(out) % 8 == 0 && !uses_fallback(n, k) &&
      tree_gemm_takes(m, n, k, ld, p)) {
    // The leaves' bucket is tuned first (the unfused path, which the check compares with, needs
    // its algorithm), reading x and w as if contiguous as run_canonical_leaves does.
    canonical(x, w, parts, m, n, k, DType::kF32);
    const int bucket = m_bucket(m);
    TreeCheck& c = trees_[tree_key(m, n, k, p, out_dtype)];
    if (c.checked_m == 0 || (c.checked_m < bucket && m == bucket)) {
      cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
      LLM42_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
      if (capturing == cudaStreamCaptureStatusNone)
        check_tree(c, x, w, out, out_dtype, m, n, ld, leaves, parts);
    }
    if (status_of(c) == KernelStatus::kAdmitted) {
      const cudaError_t e =
          launch_tree_gemm(static_cast<const uint16_t*>(x), static_cast<const uint16_t*>(w), out,
                           out_dtype, m, n, k, ld, p, stream_, c.variant);
      if (e == cudaSuccess) {
        last_leaf_path_ = LeafPath::kFused;
        return;
      }
      LLM42_ASSERT(e == cudaErrorInvalidValue, "fused tree GEMM: {}", cudaGetErrorString(e));
    }
  }
  run_unfused_tree(x, w, out, out_dtype, m, n, ld, leaves, parts);
}

GemmRunner::KernelStatus GemmRunner::status_of(const TreeCheck& c) {
  if (c.checked_m == 0 || !c.ran) return KernelStatus::kUnchecked;  // none made, or all refused
  if (!c.same_bits) return KernelStatus::kDiffers;
  return c.fused_us < c.unfused_us ? KernelStatus::kAdmitted : KernelStatus::kSlower;
}

GemmRunner::KernelStatus GemmRunner::tree_status(int64_t m, int64_t n,
                                                 const std::vector<int64_t>& leaves,
                                                 DType out_dtype) const {
  const int p = static_cast<int>(leaves.size()) - 1;
  const auto it = trees_.find(tree_key(m, n, leaves[1] - leaves[0], p, out_dtype));
  return it == trees_.end() ? KernelStatus::kUnchecked : status_of(it->second);
}

std::vector<unsigned char> GemmRunner::to_host(const void* p, size_t bytes) {
  std::vector<unsigned char> h(bytes);
  LLM42_CUDA_CHECK(cudaMemcpyAsync(h.data(), p, bytes, cudaMemcpyDeviceToHost, stream_));
  LLM42_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return h;
}

void GemmRunner::check_tree(TreeCheck& c, const void* x, const void* w, void* out,
                            DType out_dtype, int64_t m, int64_t n, int64_t ld,
                            const std::vector<int64_t>& leaves, float* parts) {
  const auto* xb = static_cast<const uint16_t*>(x);
  const auto* wb = static_cast<const uint16_t*>(w);
  const int p = static_cast<int>(leaves.size()) - 1;
  const int64_t k = leaves[1] - leaves[0];
  c = TreeCheck{};
  c.checked_m = m;
  const size_t bytes = static_cast<size_t>(m * n) * dtype_size(out_dtype);
  run_unfused_tree(x, w, out, out_dtype, m, n, ld, leaves, parts);
  const std::vector<unsigned char> reference = to_host(out, bytes);
  std::string found;
  for (const int v : kTreeGemmCandidates) {
    if (!tree_gemm_variant_takes(v, m)) continue;  // a decode-size variant, a larger M
    // Every output bit, the variant's (over a poisoned output, so that an element it fails to
    // write cannot pass for a right one) against the unfused path's.
    LLM42_CUDA_CHECK(cudaMemsetAsync(out, 0xff, bytes, stream_));
    const cudaError_t e = launch_tree_gemm(xb, wb, out, out_dtype, m, n, k, ld, p, stream_, v);
    c.ran = c.ran || e == cudaSuccess;
    if (e != cudaSuccess) {
      cudaGetLastError();  // a refused launch left nothing sticky
      log_warn("gemm autotune: the fused tree GEMM ({}) refused M {} N {} leaves {} of K {}: {}",
               tree_gemm_variant_name(v), m, n, p, k, cudaGetErrorString(e));
      continue;
    }
    if (to_host(out, bytes) != reference) {
      log_warn(
          "gemm autotune: the fused tree GEMM ({}) gives other bits than the leaves and the tree "
          "for M {} N {} leaves {} of K {}; not used there",
          tree_gemm_variant_name(v), m, n, p, k);
      continue;
    }
    const double us = median_us([&] {
      LLM42_CUDA_CHECK(launch_tree_gemm(xb, wb, out, out_dtype, m, n, k, ld, p, stream_, v));
    });
    found += fmt::format("{}{} {:.1f} us", found.empty() ? "" : ", ", tree_gemm_variant_name(v), us);
    if (!c.same_bits || us < c.fused_us) {
      c.same_bits = true;
      c.variant = v;
      c.fused_us = us;
    }
  }
  if (!c.same_bits) return;
  c.unfused_us =
      median_us([&] { run_unfused_tree(x, w, out, out_dtype, m, n, ld, leaves, parts); });
  log_info(
      "gemm autotune: M {} (bucket {}) N {} leaves {} of K {} -> {}: the fused tree GEMM gives the "
      "bits of the leaves and the tree ({}) against {:.1f} us{}",
      m, m_bucket(m), n, p, k, dtype_name(out_dtype), found, c.unfused_us,
      status_of(c) == KernelStatus::kAdmitted
          ? fmt::format("; {} serves the bucket", tree_gemm_variant_name(c.variant))
          : "");
}

std::string GemmRunner::describe(const void* x, const void* w, void* out, int64_t m, int64_t n,
                                 int64_t k, DType out_dtype, Schedule s) {
  if (uses_fallback(n, k)) return "CUDA-core fallback (K or N not a multiple of 8)";
  if (s == Schedule::kCanonical) {
    const Tuned& t = canonical(x, w, out, m, n, k, out_dtype);
    if (!use_skinny(t)) return t.desc;
    return fmt::format("skinny GEMM, sequential K ({:.1f} us; {:.1f} us for {})", t.skinny_us, t.us,
                       t.desc);
  }
  const FastChoice& f = fast_choice(x, w, out, m, n, k, out_dtype);
  return f.gemv_variant >= 0 ? gemv_variant_name(f.gemv_variant) : algo_desc(f.algo);
}

void GemmRunner::run_heuristic(const void* x, const void* w, void* out, int64_t m, int64_t n,
                               int64_t k, DType out_dtype) {
  // The fast lane's choice keeps the heuristic's algorithm even when the skinny GEMM won.
  const FastChoice& f = fast_choice(x, w, out, m, n, k, out_dtype);
  LLM42_CUBLAS_CHECK(matmul(layouts(m, n, k, out_dtype), f.algo, x, w, out));
}

void GemmRunner::run_canonical_cublaslt(const void* x, const void* w, void* out, int64_t m,
                                        int64_t n, int64_t k, DType out_dtype) {
  const Tuned& t = canonical(x, w, out, m, n, k, out_dtype);
  LLM42_CUBLAS_CHECK(matmul(layouts(m, n, k, out_dtype), t.algo, x, w, out));
}

double GemmRunner::median_us(const std::function<void()>& run) {
  run();  // untimed: the first launch of a kernel may load its module
  std::vector<float> times;
  for (int r = 0; r < kTimedRuns; ++r) {
    LLM42_CUDA_CHECK(cudaEventRecord(start_, stream_));
    run();
    LLM42_CUDA_CHECK(cudaEventRecord(stop_, stream_));
    LLM42_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0.0f;
    LLM42_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  return 1000.0 * times[times.size() / 2];
}

const GemmRunner::FastChoice& GemmRunner::fast_choice(const void* x, const void* w, void* out,
                                                      int64_t m, int64_t n, int64_t k,
                                                      DType out_dtype) {
  const ShapeKey key{m, n, k, out_dtype};
  auto it = fast_.find(key);
  if (it != fast_.end()) return it->second;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  LLM42_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
  LLM42_ASSERT(capturing == cudaStreamCaptureStatusNone,
               "fast GEMM M {} N {} K {} first seen inside a graph capture", m, n, k);
  FastChoice best;
  best.algo = heuristic_algo(m, n, k, out_dtype);
  const Layouts& l = layouts(m, n, k, out_dtype);
  const auto* xb = static_cast<const uint16_t*>(x);
  const auto* wb = static_cast<const uint16_t*>(w);
  // The skinny kernel competes only where it can run (its launch checks the arguments).
  if (m <= kGemvMaxM && launch_gemv(xb, wb, out, out_dtype, m, n, k, 0, stream_) == cudaSuccess) {
    best.us = median_us([&] { LLM42_CUBLAS_CHECK(matmul(l, best.algo, x, w, out)); });
    for (int v = 0; v < kGemvVariants; ++v) {
      if (!gemv_variant_takes(v, n, k)) continue;
      const double us = median_us(
          [&] { LLM42_CUDA_CHECK(launch_gemv(xb, wb, out, out_dtype, m, n, k, v, stream_)); });
      if (us < best.us) {
        best.us = us;
        best.gemv_variant = v;
      }
    }
    log_debug("fast gemm M {} N {} K {} -> {}: {} ({:.1f} us)", m, n, k, dtype_name(out_dtype),
              best.gemv_variant >= 0 ? gemv_variant_name(best.gemv_variant) : "cuBLASLt heuristic",
              best.us);
  } else {
    cudaGetLastError();  // the refused launch left no sticky error; clear the last one
  }
  return fast_.emplace(key, best).first->second;
}

cublasLtMatmulAlgo_t GemmRunner::heuristic_algo(int64_t m, int64_t n, int64_t k, DType out) {
  const Layouts& l = layouts(m, n, k, out);
  cublasLtMatmulPreference_t pref = nullptr;
  LLM42_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_bytes_;
  LLM42_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle_, l.op, l.a, l.b, l.d, l.d, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    fail("cuBLASLt has no algorithm for a bf16 GEMM of M {} N {} K {} to {} (status {})", m, n, k,
         dtype_name(out), static_cast<int>(st));
  return result.algo;
}

const GemmRunner::Tuned& GemmRunner::canonical(const void* x, const void* w, void* out, int64_t m,
                                               int64_t n, int64_t k, DType out_dtype) {
  const int bucket = m_bucket(m);
  const BucketKey key{bucket, n, k, out_dtype};
  auto it = canonical_.find(key);
  const bool retune = it != canonical_.end() && it->second.tuned_m < bucket && m == bucket;
  if (it == canonical_.end() || retune) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    LLM42_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
    LLM42_ASSERT(capturing == cudaStreamCaptureStatusNone,
                 "canonical GEMM bucket {} N {} K {} first tuned inside a graph capture", bucket, n,
                 k);
    Tuned t = tune(x, w, out, m, n, k, out_dtype, retune ? &it->second.algo : nullptr);
    t.tuned_m = m;
    it = canonical_.insert_or_assign(key, t).first;
    save_cache();
  }
  // A bucket tuned without the skinny GEMM, or checked with another version of it, is checked
  // at its first call outside a graph capture (warm-up makes those).
  if (canonical_skinny_ && m <= kGemvMaxM && it->second.skinny_checked != kSkinnyKernelVersion) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    LLM42_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
    if (capturing == cudaStreamCaptureStatusNone) {
      check_skinny(it->second, x, w, out, m, n, k, out_dtype);
      save_cache();
    }
  }
  return it->second;
}

GemmRunner::SkinnyStatus GemmRunner::status_of(const Tuned& t) {
  if (t.skinny_checked != kSkinnyKernelVersion) return SkinnyStatus::kUnchecked;
  if (!t.skinny_same_bits) return SkinnyStatus::kDiffers;
  return t.skinny_us < t.us ? SkinnyStatus::kAdmitted : SkinnyStatus::kSlower;
}

bool GemmRunner::use_skinny(const Tuned& t) const {
  return canonical_skinny_ && status_of(t) == SkinnyStatus::kAdmitted;
}

GemmRunner::SkinnyStatus GemmRunner::skinny_status(const void* x, const void* w, void* out,
                                                   int64_t m, int64_t n, int64_t k,
                                                   DType out_dtype) {
  return status_of(canonical(x, w, out, m, n, k, out_dtype));
}

GemmRunner::Tuned GemmRunner::tune(const void* x, const void* w, void* out, int64_t m, int64_t n,
                                   int64_t k, DType out_dtype,
                                   const cublasLtMatmulAlgo_t* previous) {
  ++tunings_run_;
  const Layouts& l = layouts(m, n, k, out_dtype);
  // The heuristic's results, asked once with reduction schemes masked out and once without
  // (how a mask of "none" is read is not documented); split-K ones are filtered below.
  std::vector<cublasLtMatmulHeuristicResult_t> heur;
  for (bool masked : {true, false}) {
    cublasLtMatmulPreference_t pref = nullptr;
    LLM42_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = workspace_bytes_;
    const uint32_t no_reduction = CUBLASLT_REDUCTION_SCHEME_NONE;
    LLM42_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    if (masked)
      LLM42_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &no_reduction, sizeof no_reduction));
    std::vector<cublasLtMatmulHeuristicResult_t> got(kHeuristicCandidates);
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(handle_, l.op, l.a, l.b, l.d, l.d, pref,
                                       kHeuristicCandidates, got.data(),
                                       &found) == CUBLAS_STATUS_SUCCESS)
      heur.insert(heur.end(), got.begin(), got.begin() + found);
    cublasLtMatmulPreferenceDestroy(pref);
  }

  // Candidates: the heuristic's split-K-free tensor-core algorithms, then each one's other tile
  // shapes (the heuristic's own first pick can be several times slower at small M).
  std::vector<cublasLtMatmulAlgo_t> cands;
  size_t limit = kMaxCandidates;
  auto add = [&](const cublasLtMatmulAlgo_t& a) {
    if (cands.size() >= limit) return;
    if (!split_k_free(a) || !tensor_core(a)) return;
    for (const auto& c : cands)
      if (same_algo(c, a)) return;
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(handle_, l.op, l.a, l.b, l.d, l.d, &a, &check) !=
            CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > workspace_bytes_)
      return;
    cands.push_back(a);
  };
  if (previous != nullptr) add(*previous);  // first: the reference bits
  for (const auto& h : heur)
    if (h.state == CUBLAS_STATUS_SUCCESS && static_cast<int>(cands.size()) < kMaxHeuristicPicks)
      add(h.algo);
  const size_t n_heuristic = cands.size();
  for (size_t i = 0; i < n_heuristic; ++i) {
    size_t bytes = 0;
    if (cublasLtMatmulAlgoCapGetAttribute(&cands[i], CUBLASLT_ALGO_CAP_TILE_IDS, nullptr, 0,
                                          &bytes) != CUBLAS_STATUS_SUCCESS)
      continue;
    std::vector<uint32_t> tiles(bytes / sizeof(uint32_t));
    if (tiles.empty() ||
        cublasLtMatmulAlgoCapGetAttribute(&cands[i], CUBLASLT_ALGO_CAP_TILE_IDS, tiles.data(),
                                          bytes, &bytes) != CUBLAS_STATUS_SUCCESS)
      continue;
    for (uint32_t tile : tiles) {
      if (tile == CUBLASLT_MATMUL_TILE_UNDEFINED) continue;
      cublasLtMatmulAlgo_t v = cands[i];
      if (cublasLtMatmulAlgoConfigSetAttribute(&v, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile,
                                               sizeof tile) == CUBLAS_STATUS_SUCCESS)
        add(v);
    }
  }
  if (cands.empty())
    fail(
        "cuBLASLt offers no split-K-free tensor-core algorithm for a bf16 GEMM of M {} N {} K {} "
        "to {}: the canonical lane cannot run this shape",
        m, n, k, dtype_name(out_dtype));

  // Every candidate must give the bits of the first on the same data (first and last row), or it
  // is not the same reduction; then the fastest wins.
  const size_t row_bytes = static_cast<size_t>(n) * dtype_size(out_dtype);
  auto rows_of_out = [&]() {
    std::vector<unsigned char> h(2 * row_bytes);
    LLM42_CUDA_CHECK(cudaMemcpyAsync(h.data(), out, row_bytes, cudaMemcpyDeviceToHost, stream_));
    LLM42_CUDA_CHECK(cudaMemcpyAsync(h.data() + row_bytes,
                                     static_cast<const unsigned char*>(out) + (m - 1) * row_bytes,
                                     row_bytes, cudaMemcpyDeviceToHost, stream_));
    LLM42_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return h;
  };
  std::vector<unsigned char> reference;
  int disagreeing = 0;
  // Microseconds of a candidate, or a negative value when it fails or computes other bits.
  auto evaluate = [&](const cublasLtMatmulAlgo_t& c) -> double {
    if (matmul(l, c, x, w, out) != CUBLAS_STATUS_SUCCESS) return -1.0;
    std::vector<unsigned char> bits = rows_of_out();
    if (reference.empty()) {
      reference = std::move(bits);
    } else if (bits != reference) {
      ++disagreeing;
      log_warn("gemm autotune: {} gives other bits than {} for M {} N {} K {}; excluded",
               algo_desc(c), algo_desc(cands.front()), m, n, k);
      return -1.0;
    }
    return median_us([&] { LLM42_CUBLAS_CHECK(matmul(l, c, x, w, out)); });
  };
  std::vector<std::pair<double, cublasLtMatmulAlgo_t>> timed;
  for (const auto& c : cands)
    if (const double us = evaluate(c); us >= 0.0) timed.emplace_back(us, c);
  if (timed.empty())
    fail("cuBLASLt: none of {} canonical candidates ran for M {} N {} K {}", cands.size(), m, n, k);
  // Second round: custom options and cluster shapes of the two fastest (the configuration the
  // heuristic never offers can be the fast one at small M).
  std::sort(timed.begin(), timed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const size_t first_round = cands.size();
  limit = first_round + kMaxRefinements;
  for (size_t t = 0; t < std::min<size_t>(2, timed.size()); ++t) {
    const cublasLtMatmulAlgo_t base = timed[t].second;
    int32_t max_custom = 0;
    size_t written = 0;
    cublasLtMatmulAlgoCapGetAttribute(&base, CUBLASLT_ALGO_CAP_CUSTOM_OPTION_MAX, &max_custom,
                                      sizeof max_custom, &written);
    for (uint32_t custom = 0; custom <= static_cast<uint32_t>(std::min(max_custom, 7)); ++custom) {
      for (uint16_t cluster : {CUBLASLT_CLUSTER_SHAPE_AUTO, CUBLASLT_CLUSTER_SHAPE_1x1x1,
                               CUBLASLT_CLUSTER_SHAPE_2x1x1, CUBLASLT_CLUSTER_SHAPE_1x2x1}) {
        cublasLtMatmulAlgo_t v = base;
        if (cublasLtMatmulAlgoConfigSetAttribute(&v, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &custom,
                                                 sizeof custom) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatmulAlgoConfigSetAttribute(&v, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID,
                                                 &cluster, sizeof cluster) != CUBLAS_STATUS_SUCCESS)
          continue;
        add(v);
      }
    }
  }
  for (size_t i = first_round; i < cands.size(); ++i)
    if (const double us = evaluate(cands[i]); us >= 0.0) timed.emplace_back(us, cands[i]);
  const auto fastest = std::min_element(
      timed.begin(), timed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  Tuned best;
  best.algo = fastest->second;
  best.us = fastest->first;
  best.desc = algo_desc(best.algo);
  log_info(
      "gemm autotune: M {} (bucket {}) N {} K {} -> {}: {} ({:.1f} us; {} candidates, {} "
      "excluded for other bits)",
      m, m_bucket(m), n, k, dtype_name(out_dtype), best.desc, best.us, cands.size(), disagreeing);
  return best;
}

void GemmRunner::check_skinny(Tuned& t, const void* x, const void* w, void* out, int64_t m,
                              int64_t n, int64_t k, DType out_dtype) {
  const auto* xb = static_cast<const uint16_t*>(x);
  const auto* wb = static_cast<const uint16_t*>(w);
  t.skinny_checked = kSkinnyKernelVersion;
  t.skinny_same_bits = false;
  t.skinny_us = 0.0;
  // Every output bit of the call, the skinny kernel's (over a poisoned output, so that an element
  // it fails to write cannot pass for a right one) against the algorithm's.
  const size_t bytes = static_cast<size_t>(m * n) * dtype_size(out_dtype);
  LLM42_CUDA_CHECK(cudaMemsetAsync(out, 0xff, bytes, stream_));
  if (launch_gemv_canonical(xb, wb, out, out_dtype, m, n, k, stream_) != cudaSuccess) {
    cudaGetLastError();  // a refused launch (arguments it does not take) left nothing sticky
    return;
  }
  const std::vector<unsigned char> skinny = to_host(out, bytes);
  LLM42_CUBLAS_CHECK(matmul(layouts(m, n, k, out_dtype), t.algo, x, w, out));
  if (skinny != to_host(out, bytes)) {
    log_warn(
        "gemm autotune: the sequential-K skinny GEMM gives other bits than {} for M {} N {} K {}; "
        "the canonical lane keeps cuBLASLt",
        t.desc, m, n, k);
    return;
  }
  t.skinny_same_bits = true;
  t.skinny_us = median_us(
      [&] { LLM42_CUDA_CHECK(launch_gemv_canonical(xb, wb, out, out_dtype, m, n, k, stream_)); });
  log_info(
      "gemm autotune: M {} (bucket {}) N {} K {}: the sequential-K skinny GEMM gives the "
      "bits of {} in {:.1f} us against {:.1f}{}",
      m, m_bucket(m), n, k, t.desc, t.skinny_us, t.us,
      status_of(t) == SkinnyStatus::kAdmitted ? "; it serves the bucket" : "");
}

std::string GemmRunner::algo_desc(const cublasLtMatmulAlgo_t& a) const {
  return fmt::format(
      "algo {} tile {} stages {} splitK {} reduction {} swizzle {} custom {} "
      "inner {} cluster {}",
      config_attr<int32_t>(a, CUBLASLT_ALGO_CONFIG_ID),
      config_attr<uint32_t>(a, CUBLASLT_ALGO_CONFIG_TILE_ID),
      config_attr<uint32_t>(a, CUBLASLT_ALGO_CONFIG_STAGES_ID),
      config_attr<uint32_t>(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
      config_attr<uint32_t>(a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
      config_attr<uint32_t>(a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
      config_attr<uint32_t>(a, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION),
      config_attr<uint16_t>(a, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID),
      config_attr<uint16_t>(a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID));
}

void GemmRunner::load_cache() {
  std::ifstream in(cache_path_);
  if (!in) return;
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    log_warn("gemm cache {}: unreadable ({}); autotuning again", cache_path_, e.what());
    return;
  }
  int loaded = 0, dropped = 0;
  if (!j.is_object() || !j.contains("entries") || !j["entries"].is_array()) {
    log_warn("gemm cache {}: not an llm42 GEMM cache (no 'entries' list); autotuning again",
             cache_path_);
    return;
  }
  for (const auto& e : j["entries"]) {
    // A wrong entry (valid JSON of another shape: a field missing or of another type, a bad
    // number) is dropped, never fatal: the bucket is tuned again.
    try {
      const BucketKey key{e.at("bucket").get<int>(), e.at("n").get<int64_t>(),
                          e.at("k").get<int64_t>(), parse_dtype(e.at("out").get<std::string>())};
      Tuned t{};
      const auto words = e.at("algo").get<std::vector<std::string>>();
      if (words.size() != 8 || std::get<0>(key) <= 0 || std::get<1>(key) <= 0 ||
          std::get<2>(key) <= 0) {
        ++dropped;
        continue;
      }
      for (size_t i = 0; i < 8; ++i) t.algo.data[i] = std::stoull(words[i], nullptr, 16);
      const Layouts& l =
          layouts(std::get<0>(key), std::get<1>(key), std::get<2>(key), std::get<3>(key));
      cublasLtMatmulHeuristicResult_t check{};
      if (cublasLtMatmulAlgoCheck(handle_, l.op, l.a, l.b, l.d, l.d, &t.algo, &check) !=
              CUBLAS_STATUS_SUCCESS ||
          !split_k_free(t.algo)) {
        ++dropped;
        continue;
      }
      t.desc = e.value("desc", "");
      t.us = e.value("us", 0.0);
      t.tuned_m = e.value("tuned_m", int64_t{0});       // files without it: tuned again
      t.skinny_checked = e.value("skinny_checked", 0);  // another version's check is not used
      t.skinny_same_bits = e.value("skinny_same_bits", false);
      t.skinny_us = e.value("skinny_us", 0.0);
      canonical_[key] = t;
      ++loaded;
    } catch (const std::exception&) {
      ++dropped;
    }
  }
  log_info("gemm cache {}: {} canonical algorithms loaded, {} dropped", cache_path_, loaded,
           dropped);
}

void GemmRunner::save_cache() const {
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& [key, t] : canonical_) {
    std::vector<std::string> words;
    for (uint64_t wd : t.algo.data) words.push_back(fmt::format("{:016x}", wd));
    entries.push_back({{"bucket", std::get<0>(key)},
                       {"n", std::get<1>(key)},
                       {"k", std::get<2>(key)},
                       {"out", std::string(dtype_name(std::get<3>(key)))},
                       {"algo", words},
                       {"desc", t.desc},
                       {"us", t.us},
                       {"tuned_m", t.tuned_m},
                       {"skinny_checked", t.skinny_checked},
                       {"skinny_same_bits", t.skinny_same_bits},
                       {"skinny_us", t.skinny_us}});
  }
  const nlohmann::json j{{"cublasLt_version", cublasLtGetVersion()}, {"entries", entries}};
  std::error_code ec;
  const std::filesystem::path path(cache_path_);
  std::filesystem::create_directories(path.parent_path(), ec);
  // A name of this writer's own (several tensor-parallel ranks of one process may save at
  // once), renamed over the cache only once every byte is known to be written (a full disk
  // must not replace a good file with a truncated one).
  const std::string tmp =
      fmt::format("{}.tmp.{}.{}", cache_path_, getpid(), reinterpret_cast<uintptr_t>(this));
  {
    std::ofstream out(tmp);
    out << j.dump(1) << "\n";
    out.flush();
    out.close();
    if (!out) {
      log_warn("gemm cache {}: cannot write; the table lives in memory only", cache_path_);
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) log_warn("gemm cache {}: cannot replace ({})", cache_path_, ec.message());
}

}  // namespace llm42::cuda
