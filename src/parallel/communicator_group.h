// Where a tensor-parallel group's ranks live and how they exchange: one object per group, made
// before the ranks start, that each rank joins from its own thread once its backend exists.
//
//   in-process: the ranks are threads of this process on one device (CPU ranks, or several
//               ranks on one GPU): InProcessCommunicator.
//   nccl:       one GPU per rank (cuda:first .. cuda:first+N-1), NCCL from the CUDA toolkit. The
//               group holds the NCCL unique id; once every rank has joined, the last one
//               initializes all their communicators in one NCCL group call. A second node's
//               process would receive the same id over a TCP rendezvous and initialize its own
//               ranks the same way (docs/tensor-parallel.md, "Multi-node").
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/communicator.h"

namespace llm42 {

enum class CommKind { kAuto, kInProcess, kNccl };
// "auto", "in-process" or "nccl"; throws naming --tp-communicator otherwise.
CommKind parse_comm_kind(const std::string& name);

class CommunicatorGroup {
 public:
  virtual ~CommunicatorGroup() = default;
  virtual int size() const = 0;
  // Whether every rank runs on the same device (and so shares its memory).
  virtual bool shares_device() const = 0;
  // The device string rank r's backend is made on, given the one the user named.
  virtual std::string rank_device(const std::string& device, int r) const = 0;
  // Called by rank r on its own thread, after its backend is made; blocks until the group is
  // complete where the implementation needs that (NCCL).
  virtual std::unique_ptr<Communicator> join(int r, Backend& backend) = 0;
  // Called from any thread when a rank fails before it joins: a join blocked waiting for the
  // ranks still to come returns by throwing ExchangeAborted, and so does every later join.
  // (In-process joins never block: nothing to do.)
  virtual void abort_joins() {}
};

// The group for `size` ranks on `device` ("cpu", "cuda", "cuda:N"). kAuto: NCCL when the device
// is a GPU and at least `size` GPUs are visible from it on, in-process otherwise. Throws
// naming --tp-communicator when kNccl cannot be had.
std::unique_ptr<CommunicatorGroup> make_communicator_group(CommKind kind, int size,
                                                           const std::string& device);

}  // namespace llm42
