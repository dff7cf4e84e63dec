// The NCCL communicator: one GPU per rank, one thread per GPU in this process (DESIGN.md §7).
// Collectives run on the rank's CudaBackend stream, in its order, so a call returns as soon as
// it is queued. NVLink SHARP (multicast) is never asked for.
#pragma once

#include <memory>
#include <vector>

#include "parallel/communicator_group.h"

namespace llm42 {

// A group of ordinals.size() ranks, rank r on GPU ordinals[r] (distinct GPUs: NCCL refuses two
// ranks on one). broken_rank is a test hook: that rank's init is refused inside NCCL (it is
// given a network no plugin provides) while the others wait for it; -1 for none.
std::unique_ptr<CommunicatorGroup> make_nccl_group(std::vector<int> ordinals,
                                                   int broken_rank = -1);

}  // namespace llm42
