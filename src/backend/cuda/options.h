// The CUDA backend's options (BackendOptions::cuda), with their checks. Host-only: every build
// includes it, so a bad CUDA option is refused on the CPU too, naming its flag.
#pragma once

#include <string>

#include "util/error.h"

namespace llm42 {
namespace cuda {

// Whether the fast lane cuts prefill chunks' attention into tall row tiles
// (backend/cuda/attention_plan.h). kAuto: in passes of prefill chunks only, where the tall items
// still fill a wave; kMixed: the same, and also in passes that hold decode or verification rows
// beside the chunks, where the chunks' tall items alone fill a wave (long-prompt traffic such as
// the ArXiv-like workload, whose chunks sit at long prefixes next to decode rows); kNever;
// kAlways (tests and labs; not a flag value). Same results either way in the sense of the fast
// lane: not batch-invariant; the canonical lane never uses them.
enum class TallPolicy { kAuto, kMixed, kNever, kAlways };

}  // namespace cuda

struct CudaOptions {
  double memory_fraction = 0.9;     // share of GPU memory llm42 may use
  bool programmatic_launch = true;  // launch forward kernels with PDL (process-wide)
  // The canonical GEMM autotune may admit the sequential-K skinny GEMM (gemv_canonical.cu) at
  // M <= 16 where it reproduces cuBLASLt's bits and is faster (docs/cuda-backend.md).
  bool canonical_skinny = true;
  // The canonical lane's row-parallel GEMM (Backend::matmul_leaves) may run as a fused tree
  // GEMM (tree_gemm_tma.cu) where its check found the unfused path's bits and a faster kernel
  // (--no-cuda-fused-tree: never). On an H100 the TMA form with two leaves a block is 8-14 %
  // faster than the unfused path for o_proj from M 256 up (docs/benchmarks.md).
  bool fused_tree = true;
  // The canonical GEMM's M buckets (one autotuned algorithm each): the decode graph sizes up to
  // 256, then multiples of this up to 4096; 0: powers of two throughout (docs/cuda-backend.md).
  int canonical_m_step = 128;
  // --cuda-attention-tall: auto, mixed or never (cuda::TallPolicy; parse_attention_tall).
  std::string attention_tall = "auto";
};

// Throws naming --cuda-canonical-m-step unless `step` is 0 or a power of two from 8 to 4096.
inline void check_canonical_m_step(int step) {
  if (step != 0 && (step < 8 || step > 4096 || (step & (step - 1)) != 0))
    fail("--cuda-canonical-m-step {}: must be 0 (powers of two) or a power of two from 8 to 4096",
         step);
}

// auto, mixed or never; throws naming --cuda-attention-tall otherwise.
inline cuda::TallPolicy parse_attention_tall(const std::string& policy) {
  if (policy == "auto") return cuda::TallPolicy::kAuto;
  if (policy == "mixed") return cuda::TallPolicy::kMixed;
  if (policy == "never") return cuda::TallPolicy::kNever;
  fail("--cuda-attention-tall '{}': expected auto, mixed or never", policy);
}

// The checks that need no device, naming the flag.
inline void check_cuda_options(const CudaOptions& o) {
  if (!(o.memory_fraction > 0.0 && o.memory_fraction <= 1.0))
    fail("--gpu-memory-fraction {}: must be in (0, 1]", o.memory_fraction);
  check_canonical_m_step(o.canonical_m_step);
  parse_attention_tall(o.attention_tall);
}

}  // namespace llm42
