// The CPU backend: fp32 kernels (AVX2/FMA where the build targets it, the same arithmetic in
// portable C++ otherwise), multithreaded with OpenMP. It is the reference every CUDA kernel is
// checked against, and it runs small models for real.
//
// Weights may be f32 or bf16 (converted on the fly inside the GEMM); activations are f32 and can
// be rounded to bf16 after every kernel to mirror the GPU's numerics (round_activations_bf16).
#pragma once

#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"

namespace llm42 {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& opts);

  Device device() const override { return Device::kCPU; }
  std::string kernel_id() const override;
  DType activation_dtype() const override { return DType::kF32; }

  void* allocate(size_t bytes) override;
  void deallocate(void* p) override;
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void synchronize() override {}
  size_t free_memory() const override;

  void upload_convert(const void* src, DType from, const Tensor& dst) override;
  void fill_random(const Tensor& dst, uint64_t seed, RandomInit init, float scale,
                   const RandomWindow& window = {}) override;
  void copy_device(void* dst, const void* src, size_t bytes) override;
  void copy_device_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                      size_t rows) override;

  void begin_pass(const PassInput& pass, const KvCache& cache, const QkvLayout& layout) override;

  void embedding(const Tensor& table, int64_t vocab_begin, const Tensor& out) override;
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, const Tensor& out, Schedule s) override;
  void add_rmsnorm(const Tensor& residual, const Tensor& delta, const Tensor& w, float eps,
                   const Tensor& out, Schedule s) override;
  void matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& out,
              Schedule s) override;
  void matmul_leaves(const Tensor& x, const Tensor& w, const std::vector<int64_t>& leaves,
                     const Tensor& out) override;
  void sum_parts(const Tensor& parts, const Tensor& out) override;
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

  int threads() const { return threads_; }

 private:
  void round_if_needed(const Tensor& t) const;
  // The two halves of rope_kv_write.
  void rope(const Tensor& qkv, const QkvLayout& layout, const RopeTable& table);
  void kv_write(const Tensor& qkv, const QkvLayout& layout, const KvCache& cache, int layer);

  int threads_;
  bool round_bf16_;
  PassInput pass_;
};

}  // namespace llm42
