// The NCCL communicator: one GPU per rank, one thread per GPU in this process (DESIGN.md §7).
// Collectives run on the rank's CudaBackend stream, in its order, so a call returns as soon as
// it is queued. NVLink SHARP (multicast) is never asked for.
#pragma once

#include <memory>

#include "parallel/communicator_group.h"

namespace llm42 {

// A group of `size` ranks on GPUs first_ordinal .. first_ordinal + size - 1.
std::unique_ptr<CommunicatorGroup> make_nccl_group(int size, int first_ordinal);

}  // namespace llm42
