// The CUDA backend: every kernel of the Backend interface on the GPU (bf16 activations, fp32
// accumulation, f32 logits), cuBLASLt GEMMs with a canonical algorithm table, paged attention on
// tensor cores for prefill, verification and decode. Built only when nvcc is found
// (LLM42_HAVE_CUDA).
//
// Host code (this header, cuda_backend.cpp, gemm.cpp, attention_plan.cpp: planning, memory,
// cuBLASLt, errors with fmt) is compiled by the C++ compiler; device code lives in the .cu files
// (layer_kernels.cu, attention.cu, gemv*.cu, sampling.cu), which include no fmt (nvcc cannot
// compile its consteval checks) and expose the plain launch functions of kernels.h.
//
// All work runs in order on one stream owned by the backend. Plan, then run: begin_pass uploads
// the pass's index arrays once; the attention plan is made on the host at the first attention
// call of a pass (it needs the head counts, which begin_pass does not receive) and reused by
// every layer.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/attention_plan.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/kernels.h"
#include "util/error.h"

namespace llm42 {

// Creates the backend on GPU `ordinal`. Throws llm42::Error when no usable GPU is present.
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts, int ordinal);

// Number of CUDA devices visible (0 when the driver or a GPU is missing).
int cuda_device_count();

class CudaBackend final : public Backend {
 public:
  CudaBackend(const BackendOptions& opts, int ordinal);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::kCUDA; }
  std::string kernel_id() const override;
  DType activation_dtype() const override { return DType::kBF16; }

  void* allocate(size_t bytes) override;
  void deallocate(void* p) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;
  size_t free_memory() const override;

  void upload_convert(const void* src, DType from, const Tensor& dst) override;
  void fill_random(const Tensor& dst, uint64_t seed, RandomInit init, float scale,
                   const RandomWindow& window = {}) override;
  void bind_thread() override;
  void copy_device(void* dst, const void* src, size_t bytes) override;
  void copy_device_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                      size_t rows) override;

  void begin_pass(const PassInput& pass, const KvCache& cache, const QkvLayout& layout) override;

  bool supports_graphs() const override { return true; }
  void begin_graph_pass(const PassInput& pass, const KvCache& cache,
                        const QkvLayout& layout) override;
  std::unique_ptr<PassGraph> capture(const std::function<void()>& launch) override;
  bool replay(const PassGraph& graph) override;
  // The attention kernels a capture of the last begin_graph_pass holds: 2 for the narrow kernel
  // alone (else the wide one), plus 1 for its four-stage form (narrow_deep_).
  int graph_variant() const override { return graph_variant_; }

  void embedding(const Tensor& table, int64_t vocab_begin, const Tensor& out) override;
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, Schedule s) override;
  void add_rmsnorm(const Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                   const Tensor& out, Schedule s) override;
  void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out,
              Schedule s) override;
  // The leaves as canonical GEMMs on K slices into an fp32 workspace (GemmRunner::
  // run_canonical_leaves: at decode sizes all leaves in one launch of the skinny canonical GEMM,
  // else a cuBLASLt GEMM per leaf), then one tree kernel: not yet fused
  // (docs/tensor-parallel.md).
  void matmul_leaves(const Tensor& x, const Tensor& w, const std::vector<int64_t>& leaves,
                     const Tensor& out) override;
  void sum_parts(const Tensor& parts, const Tensor& out) override;
  std::vector<int> matmul_tuning_sizes(int limit) const override {
    return gemm_->bucket_sizes(limit);
  }
  void qk_norm(const Tensor& qkv, const QkvLayout& layout, const Tensor& q_w, const Tensor& k_w,
               float eps, Schedule s) override;
  void rope_kv_write(const Tensor& qkv, const QkvLayout& layout, const RopeTable& table,
                     const KvCache& cache, int layer) override;
  void attention(const Tensor& qkv, const QkvLayout& layout, const KvCache& cache, int layer,
                 const Tensor& out, Schedule s) override;
  void swiglu(const Tensor& gate_up, const Tensor& out) override;
  void gather_logit_rows(const Tensor& x, const Tensor& out) override;
  void sample(const Tensor& logits, const std::vector<SampleRow>& rows,
              std::vector<SampleResult>& out) override;

  // ---- for tests and kernel labs ----------------------------------------------------------
  cuda::GemmRunner& gemm() { return *gemm_; }
  // Forces the attention planner to split row tiles into key pieces, or never to (kAuto: by
  // load). Canonical results must not change; fast ones may.
  void set_attention_split_policy(cuda::SplitPolicy p) {
    split_policy_ = p;
    plan_valid_ = false;
  }
  // Forces the fast lane's attention planner to cut rows into tall tiles (128 rows), or never
  // to (kAuto: by load). Fast results may change; canonical ones never use them.
  void set_attention_tall_policy(cuda::TallPolicy p) {
    tall_policy_ = p;
    plan_valid_ = false;
  }
  // Whether decode-like items may run in the narrow kernel (the default; false: every item wide,
  // for tests and labs; the bits are the same).
  void set_attention_narrow(bool on) {
    narrow_ = on;
    plan_valid_ = false;
  }
  // Forces the narrow kernel's K/V stages (cuda::kAttnNarrowStages or kAttnNarrowDeepStages; 0:
  // by the plan). Results must not change.
  void set_attention_narrow_stages(int stages) {
    LLM42_ASSERT(stages == 0 || stages == cuda::kAttnNarrowStages ||
                     stages == cuda::kAttnNarrowDeepStages,
                 "narrow attention stages {} (0, {} or {})", stages, cuda::kAttnNarrowStages,
                 cuda::kAttnNarrowDeepStages);
    narrow_stages_ = stages;
    plan_valid_ = false;
  }
  struct AttnPlanStats {
    int items = 0;
    int combines = 0;
    int64_t partial_rows = 0;
    int tall = 0;    // items of the tall kernel
    int narrow = 0;  // items of the narrow kernel
  };
  AttnPlanStats last_attention_plan() const { return last_plan_stats_; }
  cudaStream_t stream() const { return stream_; }
  int sm_count() const { return sm_count_; }
  const std::string& device_name() const { return device_name_; }

 private:
  // A device allocation owned by the backend (workspaces), counted against memory_fraction.
  struct Workspace {
    void* ptr = nullptr;
    size_t bytes = 0;
    bool in_graphs = false;  // kernels of captured graphs use it: reallocating retires them
  };
  void ensure(Workspace& w, size_t bytes);
  void* device_alloc(size_t bytes, const char* what);
  void device_free(void* p);
  // Pinned staging for host-to-device uploads of plans; waits until the last upload has left it.
  unsigned char* staging(size_t bytes);
  void upload(Workspace& dst, size_t bytes);
  // Where a pass's arrays sit in an upload, in int32 units from its start.
  struct PassOffsets {
    size_t tokens, positions, slots, logit_rows, seqs, block_tables;
  };
  // Writes the pass arrays at their offsets of the host staging area `h`.
  static void write_pass(const PassInput& pass, const PassOffsets& o, int32_t* h);
  // Points the kernels' pass arrays into an uploaded buffer laid out as `o` says.
  void point_at(const int32_t* d, const PassOffsets& o);
  void prepare_attention(const QkvLayout& layout, Schedule s);
  // Whether every attention item of a captured graph pass (decode rows only) runs in the narrow
  // kernel, which the graph then holds alone; else every item runs wide.
  bool graph_narrow_only(const QkvLayout& layout) const;
  cuda::AttnPlan make_attention_plan(const QkvLayout& layout, Schedule s);

  int ordinal_;
  double memory_fraction_;
  std::string device_name_;
  int sm_count_ = 0;
  int cc_major_ = 0, cc_minor_ = 0;
  size_t total_memory_ = 0;
  size_t used_ = 0;  // bytes allocated by this backend
  std::unordered_map<void*, size_t> allocations_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::GemmRunner> gemm_;

  // The pass (host copy for planning) and its index arrays on the device.
  PassInput pass_;
  Workspace pass_buf_;
  const int32_t* d_tokens_ = nullptr;
  const int32_t* d_positions_ = nullptr;
  const int32_t* d_slots_ = nullptr;
  const int32_t* d_logit_rows_ = nullptr;
  const int32_t* d_block_tables_ = nullptr;
  const cuda::AttnSeq* d_seqs_ = nullptr;

  // The attention plan of the current pass.
  cuda::SplitPolicy split_policy_ = cuda::SplitPolicy::kAuto;
  cuda::TallPolicy tall_policy_ = cuda::TallPolicy::kAuto;
  bool narrow_ = true;
  int narrow_stages_ = 0;  // 0: by the plan (narrow_deep_)
  // The plan's narrow items fit one wave of the deep narrow kernel (one CTA an SM): it runs with
  // kAttnNarrowDeepStages. A captured graph fixes the choice: graph_variant().
  bool narrow_deep_ = false;
  int graph_variant_ = 0;  // graph_variant(), set by begin_graph_pass
  bool plan_valid_ = false;
  Schedule plan_schedule_ = Schedule::kCanonical;
  int plan_heads_ = 0, plan_kv_heads_ = 0;
  int n_items_ = 0, n_combines_ = 0, n_tall_ = 0, n_narrow_ = 0;
  Workspace plan_buf_;
  // The attention plan's work items then combines: in pass_buf_ after begin_pass, in plan_buf_
  // after a plan for another layout or schedule (prepare_attention).
  const unsigned char* d_plan_ = nullptr;
  Workspace partial_o_, partial_ml_;
  Workspace split_done_;  // the attention kernel's per-combine counters (AttnParams::split_done)
  int64_t partial_capacity_ = 0;
  AttnPlanStats last_plan_stats_;

  // Graph passes (begin_graph_pass): the pass arrays, the attention counts, work items and
  // combines at fixed offsets of one buffer, sized by the capacities below, so that a captured
  // graph's kernels find every later pass's inputs where they were recorded. The epoch counts
  // reallocations of the workspaces marked in_graphs (this one, bias_tmp_) and changes of the
  // layout: a graph made in an older epoch may point at freed memory and is not replayed.
  Workspace graph_io_;
  struct GraphCaps {
    int64_t rows = 0, block_table = 0, items = 0, combines = 0;
    bool operator==(const GraphCaps&) const = default;
  } graph_caps_;
  uint64_t epoch_ = 0;
  bool graph_pass_ = false;  // the current pass came through begin_graph_pass
  const int32_t* d_attn_counts_ = nullptr;
  const cuda::AttnWorkItem* d_graph_items_ = nullptr;
  const cuda::AttnCombineItem* d_graph_combines_ = nullptr;

  unsigned char* staging_ = nullptr;
  size_t staging_bytes_ = 0;
  cudaEvent_t staging_free_ = nullptr;

  Workspace convert_buf_;  // upload_convert staging
  Workspace bias_tmp_;     // f32 GEMM output before a bias is added
  Workspace leaf_parts_;   // matmul_leaves: (leaves, M, N) f32
  // Sampling.
  Workspace sample_rows_, sample_out_, sort_keys_, sort_ids_, sort_offsets_, sort_temp_;
  std::vector<cuda::SampleOutDev> sample_host_;
};

}  // namespace llm42
