// Builds the model the engine runs on one or more tensor-parallel ranks (DESIGN.md §7): each rank
// makes its backend, joins the communicator group and loads its shard of the weights (reading
// only those bytes of the mapped checkpoint, or drawing its part of the dummy weights) on its
// own thread.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/checkpoint.h"
#include "parallel/communicator_group.h"
#include "parallel/parallel_model.h"

namespace llm42 {

// The weights: a checkpoint, or dummy weights of `config` drawn from `dummy_seed`.
struct ModelSource {
  const Checkpoint* checkpoint = nullptr;
  ModelConfig config;  // the checkpoint's, with any override (e.g. max_seq_len)
  uint64_t dummy_seed = 0;
};

struct ParallelOptions {
  int tp = 1;
  CommKind comm = CommKind::kAuto;
};

// The dtype weights are stored in on a device: `name` f32, bf16 or f16; auto: bf16 on CUDA,
// as stored on the CPU (f16 widened to f32).
DType resolve_weights_dtype(const std::string& name, Device device, DType stored);

// On CUDA, TP > 1: throws naming the numbers where a rank's column-parallel GEMM (gate/up, the
// LM head, q/k/v) would not have a multiple of 8 rows while TP 1's has (the rank's GEMM would run
// another kernel, in another order, than TP 1's).
void check_cuda_shards(const ModelConfig& c, int tp);

// Loads `source` on p.tp ranks made from `backend` (its device is rank 0's; CPU ranks share its
// threads, 0 = every core). Throws naming the numbers when the TP size does not fit the model.
std::unique_ptr<ParallelModel> load_parallel_model(const BackendOptions& backend,
                                                   const std::string& dtype,
                                                   const ModelSource& source,
                                                   const ParallelOptions& p, int max_pass_tokens,
                                                   int max_logit_rows);

}  // namespace llm42
