// GEMMs through cuBLASLt, in the two lanes (DESIGN.md §2).
//
//   out (M, N) = x (M, K) @ w (N, K)^T; x and w bf16, fp32 accumulation, out bf16 or f32. In
//   cuBLASLt's column-major terms this is D (N x M) = op_T(W) (N x K) * X^T (K x M).
//
//   fast:      for the exact (M, N, K), the faster of the heuristic's first choice (which may
//              split K, by M) and, for M <= kGemvMaxM, the skinny tensor-core GEMM of gemv.cu
//              in each of its variants: timed on the first call of a shape, then kept.
//   canonical: a split-K-free tensor-core algorithm per (M bucket, N, K, out dtype), so every
//              output element is one K-ordered dot product whatever M is. Buckets: the sizes that
//              decode graphs pad to (1, 2, 4, 8, then multiples of 8 up to kGraphRangeM), then
//              multiples of m_step up to kMaxBucket (m_step 0: powers of two throughout, the
//              buckets before there was a step), each tuned at its largest M (warm-up calls every
//              bucket size up to the pass limit; the limit's own bucket is tuned at the limit,
//              which no pass exceeds). The graph range is fixed: with --cuda-graph-max-batch
//              above 256 the larger graph sizes share the multiples of m_step (a speed cost
//              only). The algorithm is chosen by a short autotune the first time a bucket is seen
//              (heuristic candidates and their tile variants, each checked to give the same bits as
//              the others on the same data, then timed), cached on disk per GPU and cuBLASLt
//              version and reloaded at start. That split-K-free algorithms agree with each other
//              across M is observed (docs/cuda-backend.md#cublas-batch-variance), not documented:
//              tests/cuda checks it. With canonical_skinny (on by default;
//              --no-cuda-canonical-skinny turns it off), every bucket of M <= kGemvMaxM is also
//              checked at its first call outside a capture against gemv_canonical.cu's GEMM, which
//              chains k16 MMAs over K in order (observed to give those same bits): it serves the
//              bucket when it reproduced the bucket's algorithm's every output bit on that call's
//              data and was faster (at decode batch sizes, where cuBLASLt's split-K-free algorithms
//              leave most SMs idle).
//   Shapes whose K or N is not a multiple of 8 (no tensor-core algorithm takes them) run the
//   CUDA-core fallback of kernels.h in both lanes: tiny models only. (A tensor-parallel shard
//   whose N would cross that line is refused at load: parallel/model_loader.cpp.)
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/schedule.h"
#include "core/tensor.h"

namespace llm42::cuda {

class GemmRunner {
 public:
  // What the check of a kernel of our own against the canonical lane's cuBLASLt path found
  // (the skinny GEMM, the fused tree): none made yet, other bits, the same bits but slower, or
  // admitted (same bits, faster: it serves the bucket).
  enum class KernelStatus { kUnchecked, kDiffers, kSlower, kAdmitted };
  // `device_tag` names the GPU in the cache file name; the cuBLASLt workspace is allocated once.
  // canonical_skinny: the canonical autotune may admit gemv_canonical.cu's kernel (below).
  // m_step: the canonical M buckets above kGraphRangeM (above); 0 or a power of two in
  // [8, kMaxBucket].
  GemmRunner(cudaStream_t stream, const std::string& device_tag, bool canonical_skinny, int m_step);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  void run(const void* x, const void* w, void* out, int64_t m, int64_t n, int64_t k,
           DType out_dtype, Schedule s);

  // The canonical lane on a K slice of wider row-major matrices (a leaf of
  // Backend::matmul_leaves): x (m, k) and w (n, k) with row stride `ld` elements. Runs the
  // cuBLASLt algorithm of the (m bucket, n, k) shape with those strides (never the skinny GEMM,
  // which reads contiguous rows), or the CUDA-core fallback where that shape uses it. The K
  // order is the shape's: the same at every stride.
  void run_canonical_slice(const void* x, const void* w, void* out, int64_t m, int64_t n, int64_t k,
                           int64_t ld, DType out_dtype);

  // The canonical lane on the leaves of Backend::matmul_leaves: x (m, ld) and w (n, ld) cut at
  // `leaves` (ascending offsets from 0), leaf l written to parts + l * m * n in fp32. Where the
  // leaves are of one size: if the skinny GEMM serves their bucket (same bits, checked as for
  // run), all leaves in one launch of it; else, with leaf batching on (the default), all leaves
  // in one strided-batched cuBLASLt call of the leaf shape's canonical algorithm, where
  // cuBLASLt accepts that algorithm batched (each batch entry is the algorithm's own GEMM of one
  // leaf: the same bits as a call per leaf, which tests/cuda checks). Otherwise
  // run_canonical_slice per leaf.
  void run_canonical_leaves(const void* x, const void* w, float* parts, int64_t m, int64_t n,
                            int64_t ld, const std::vector<int64_t>& leaves);
  // For tests and labs: false runs the leaves above the skinny range one call per leaf.
  void set_leaf_batching(bool on) { leaf_batching_ = on; }

  // The whole of Backend::matmul_leaves: out (m, n) = the leaves of run_canonical_leaves summed
  // along the fixed binary tree in fp32 (launch_sum_parts), out f32 or bf16 (rounded once).
  // `parts` is scratch for p * m * n floats (p = leaves.size() - 1; unused, may be null, for
  // one leaf into an f32 out). Where the leaves are 2, 4
  // or 8 of one size that tree_gemm.cu takes, a fused kernel (the leaves kept on chip and summed
  // along the tree; nothing goes through memory but the result: kTreeGemmCandidates, the TMA
  // forms of tree_gemm_tma.cu) serves the (M bucket, n, leaf k, leaves, out dtype) once it
  // reproduced the unfused path's every output bit on a call's data, outside a graph capture,
  // and was faster there (checked again at the bucket's own size, as
  // tuning is). Otherwise, and for a check not yet made, run_canonical_leaves then the tree
  // kernel.
  void run_canonical_tree(const void* x, const void* w, void* out, DType out_dtype, int64_t m,
                          int64_t n, int64_t ld, const std::vector<int64_t>& leaves, float* parts);
  // Whether a fused tree kernel may run (CudaOptions::fused_tree, on unless --no-cuda-fused-tree;
  // tests and labs switch it).
  void set_fused_tree(bool on) { fused_tree_ = on; }
  bool fused_tree() const { return fused_tree_; }
  // What the last check of the fused tree kernel found for this call's bucket: none made, other
  // bits, the same bits but slower, or admitted.
  KernelStatus tree_status(int64_t m, int64_t n, const std::vector<int64_t>& leaves,
                           DType out_dtype) const;

  // How the last run_canonical_leaves or run_canonical_tree ran its leaves: skinny (one launch),
  // batched (one cuBLASLt call), per leaf, or fused with the tree (tree_gemm.cu).
  enum class LeafPath { kNone, kSkinny, kBatched, kPerLeaf, kFused };
  LeafPath last_leaf_path() const { return last_leaf_path_; }

  // The algorithm the lane uses for this shape (tuning a canonical bucket if needed, which
  // overwrites `out`), in words: "algo 66 tile 20 stages 8 splitK 1 ...".
  std::string describe(const void* x, const void* w, void* out, int64_t m, int64_t n, int64_t k,
                       DType out_dtype, Schedule s);

  // For kernel labs: the cuBLASLt heuristic's first algorithm alone, whatever the fast lane
  // would pick.
  void run_heuristic(const void* x, const void* w, void* out, int64_t m, int64_t n, int64_t k,
                     DType out_dtype);

  // What the last check of the canonical skinny GEMM found for the bucket of this shape (tuning
  // the bucket if needed; checking it only with canonical_skinny on).
  using SkinnyStatus = KernelStatus;
  SkinnyStatus skinny_status(const void* x, const void* w, void* out, int64_t m, int64_t n,
                             int64_t k, DType out_dtype);

  // For kernel labs: the canonical bucket's cuBLASLt algorithm, also where the skinny GEMM
  // serves the bucket (tuning the bucket if needed).
  void run_canonical_cublaslt(const void* x, const void* w, void* out, int64_t m, int64_t n,
                              int64_t k, DType out_dtype);

  // The canonical bucket of M: the smallest bucket size >= M (larger M than kMaxBucket shares
  // that bucket's algorithm).
  static constexpr int kMaxBucket = 4096;
  // Up to this M the buckets are the decode graph sizes (ModelRunner::graph_bucket; the default
  // --cuda-graph-max-batch): a graph pass's GEMMs run at exactly its bucket's tuned M.
  static constexpr int kGraphRangeM = 256;
  static int m_bucket(int64_t m, int m_step);
  int m_bucket(int64_t m) const { return m_bucket(m, m_step_); }
  // Every bucket size below `limit`, then `limit`, ascending: where warm-up calls tune them.
  static std::vector<int> bucket_sizes(int limit, int m_step);
  std::vector<int> bucket_sizes(int limit) const { return bucket_sizes(limit, m_step_); }
  // Whether (N, K) runs the CUDA-core fallback instead of cuBLASLt.
  static bool uses_fallback(int64_t n, int64_t k) { return n % 8 != 0 || k % 8 != 0; }

  const std::string& cache_path() const { return cache_path_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  int tunings_run() const { return tunings_run_; }

 private:
  using ShapeKey = std::tuple<int64_t, int64_t, int64_t, DType>;  // (m, n, k, out)
  using BucketKey = std::tuple<int, int64_t, int64_t, DType>;     // (bucket, n, k, out)
  struct Layouts {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  };
  struct Tuned {
    cublasLtMatmulAlgo_t algo;
    std::string desc;
    double us = 0.0;
    // The M it was timed at. A bucket's algorithm must be good at the bucket's largest M (a
    // tile that covers 100 rows needs two passes at 128), so an entry timed at a smaller M is
    // tuned again when a call at the bucket size comes (Transformer::warm_up makes those).
    int64_t tuned_m = 0;
    // gemv_canonical.cu's skinny GEMM for this bucket (M <= kGemvMaxM), as last checked: with
    // which version of the kernel (0: never), whether it reproduced algo's every output bit on
    // that call's data, and its time (status_of reads them). It runs instead of `algo` when
    // canonical_skinny is on and the status is kAdmitted (use_skinny).
    int skinny_checked = 0;
    bool skinny_same_bits = false;
    double skinny_us = 0.0;
  };
  static SkinnyStatus status_of(const Tuned& t);
  // The fused tree kernel's check for one (bucket, n, leaf k, leaves, out dtype).
  using TreeKey = std::tuple<int, int64_t, int64_t, int, DType>;
  struct TreeCheck {
    int64_t checked_m = 0;  // the M of the check (0: none)
    bool ran = false;        // some variant launched (all may refuse: a cluster the GPU cannot hold)
    bool same_bits = false;  // some variant reproduced the unfused path
    int variant = 0;         // the fastest such variant
    double fused_us = 0.0, unfused_us = 0.0;
  };
  static KernelStatus status_of(const TreeCheck& c);
  TreeKey tree_key(int64_t m, int64_t n, int64_t k, int leaves, DType out) const {
    return {m_bucket(m), n, k, leaves, out};
  }
  // `bytes` of device memory at p, once the stream's work before is done (the checks' copies).
  std::vector<unsigned char> to_host(const void* p, size_t bytes);
  // run_canonical_tree without the fused kernel.
  void run_unfused_tree(const void* x, const void* w, void* out, DType out_dtype, int64_t m,
                        int64_t n, int64_t ld, const std::vector<int64_t>& leaves, float* parts);
  // Checks each variant of the fused kernel against run_unfused_tree on this call's data and
  // times those that reproduce it, and the unfused path; `out` and `parts` are overwritten.
  void check_tree(TreeCheck& c, const void* x, const void* w, void* out, DType out_dtype, int64_t m,
                  int64_t n, int64_t ld, const std::vector<int64_t>& leaves, float* parts);
  bool use_skinny(const Tuned& t) const;  // admitted, and canonical_skinny on

  // ld: the row stride of x and w (0: k). batch > 1: that many GEMMs whose x and w start k
  // elements after the previous one's (consecutive K slices) and whose out starts m * n after.
  const Layouts& layouts(int64_t m, int64_t n, int64_t k, DType out, int64_t ld = 0, int batch = 1);
  // Whether cuBLASLt runs `algo` on the batched layouts `l` (cublasLtMatmulAlgoCheck, cached).
  bool batch_supported(const Layouts& l, const cublasLtMatmulAlgo_t& algo);
  // The fast lane's kernel for one exact shape: a gemv.cu variant, or a cuBLASLt algorithm.
  struct FastChoice {
    int gemv_variant = -1;        // >= 0: launch_gemv with this variant; else `algo`
    cublasLtMatmulAlgo_t algo{};  // the heuristic's first choice, in either case
    double us = 0.0;
  };
  cublasLtMatmulAlgo_t heuristic_algo(int64_t m, int64_t n, int64_t k, DType out);
  const FastChoice& fast_choice(const void* x, const void* w, void* out, int64_t m, int64_t n,
                                int64_t k, DType out_dtype);
  // Median of kTimedRuns timed calls of `run` on the stream, in microseconds.
  double median_us(const std::function<void()>& run);
  const Tuned& canonical(const void* x, const void* w, void* out, int64_t m, int64_t n, int64_t k,
                         DType out_dtype);
  // Checks the skinny sequential-K GEMM against t.algo on this call's data and times it,
  // recording the result in t (which keeps `algo`); `out` is overwritten.
  void check_skinny(Tuned& t, const void* x, const void* w, void* out, int64_t m, int64_t n,
                    int64_t k, DType out_dtype);
  // `previous`, when given, is the bucket's algorithm so far: the reference whose bits every
  // candidate must reproduce.
  Tuned tune(const void* x, const void* w, void* out, int64_t m, int64_t n, int64_t k,
             DType out_dtype, const cublasLtMatmulAlgo_t* previous);
  cublasStatus_t matmul(const Layouts& l, const cublasLtMatmulAlgo_t& algo, const void* x,
                        const void* w, void* out);
  std::string algo_desc(const cublasLtMatmulAlgo_t& algo) const;
  void load_cache();
  void save_cache() const;

  cudaStream_t stream_;
  bool canonical_skinny_;
  int m_step_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::string cache_path_;
  int tunings_run_ = 0;
  bool leaf_batching_ = true;
  bool fused_tree_ = false;
  std::map<TreeKey, TreeCheck> trees_;
  LeafPath last_leaf_path_ = LeafPath::kNone;
  std::map<std::tuple<int64_t, int64_t, int64_t, DType, int64_t, int>, Layouts> layouts_;
  // batch_supported's answers, by the layouts' address and the algorithm's bytes.
  std::map<std::pair<const Layouts*, std::string>, bool> batch_ok_;
  std::map<ShapeKey, FastChoice> fast_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;  // for timing candidates
  std::map<BucketKey, Tuned> canonical_;
};

}  // namespace llm42::cuda
