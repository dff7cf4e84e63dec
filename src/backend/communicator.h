// The collective operations tensor-parallel ranks exchange activations with (DESIGN.md §7).
// The model's forward (model/transformer.cpp) calls them between its kernels; the
// implementations live in parallel/: NCCL across GPUs, and an in-process one (threads
// exchanging memory) for CPU ranks or several ranks on one GPU.
//
// Every rank of a group calls the same operations in the same order with tensors of the same
// shapes, on its own thread; each call returns once this rank's result is ready in stream order
// on its backend (in-process: complete).
#pragma once

#include <string>

#include "core/tensor.h"

namespace llm42 {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "nccl" or "in-process", for logs and reports.
  virtual std::string name() const = 0;

  // In place: t = the sum of every rank's t, in whatever order the implementation finds
  // fastest (the fast lane's exchange: not TP-size invariant). f32 or bf16.
  virtual void all_reduce_sum(const Tensor& t) = 0;

  // out = every rank's `in` one after another in rank order (out holds size() * in.nbytes()
  // bytes, contiguous; no arithmetic).
  virtual void all_gather(const Tensor& in, const Tensor& out) = 0;
};

}  // namespace llm42
