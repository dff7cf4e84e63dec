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
#include "util/error.h"

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

  // When one rank fails in the middle of a pass, the others would wait for it forever at their
  // next exchange. abort(), called from any thread once a rank has failed, makes every rank's
  // pending and later exchanges of the group throw ExchangeAborted instead (in-process: the
  // barrier is broken; NCCL: ncclCommAbort). Idempotent.
  virtual void abort() = 0;
  // After abort(), once no rank is inside an exchange: makes the group usable again and returns
  // true (in-process), or returns false where an aborted group cannot be mended (NCCL: its
  // communicator is gone; the model must be loaded again).
  virtual bool recover() = 0;

  // Whether the exchanges can be captured into a CUDA graph with the kernels around them and
  // replayed (NCCL: they are stream operations; in-process: no, they meet on the host). Decode
  // passes at TP > 1 run as graphs only where they can (--tp-cuda-graphs).
  virtual bool capturable() const { return false; }
};

// What an exchange throws after Communicator::abort: the consequence of another rank's failure,
// never the cause (ParallelModel reports the cause).
class ExchangeAborted : public Error {
 public:
  using Error::Error;
};

}  // namespace llm42
