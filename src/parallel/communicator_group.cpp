#include "parallel/communicator_group.h"

#include "parallel/inprocess_communicator.h"
#include "util/error.h"

#ifdef LLM42_HAVE_NCCL
#include <numeric>
#include <vector>

#include "parallel/nccl/nccl_communicator.h"
#endif
#ifdef LLM42_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace llm42 {
namespace {

class InProcessCommGroup final : public CommunicatorGroup {
 public:
  explicit InProcessCommGroup(int size) : group_(std::make_shared<InProcessGroup>(size)) {}
  int size() const override { return group_->size(); }
  bool shares_device() const override { return true; }
  std::string rank_device(const std::string& device, int) const override { return device; }
  std::unique_ptr<Communicator> join(int r, Backend& backend) override {
    return std::make_unique<InProcessCommunicator>(group_, r, backend);
  }

 private:
  std::shared_ptr<InProcessGroup> group_;
};

// The N of "cuda:N" (unused in a build without CUDA).
[[maybe_unused]] int device_ordinal(const std::string& device) {
  return device.size() > 5 ? std::stoi(device.substr(5)) : 0;
}

}  // namespace

CommKind parse_comm_kind(const std::string& name) {
  if (name == "auto") return CommKind::kAuto;
  if (name == "in-process") return CommKind::kInProcess;
  if (name == "nccl") return CommKind::kNccl;
  fail("--tp-communicator '{}': expected auto, in-process or nccl", name);
}

std::unique_ptr<CommunicatorGroup> make_communicator_group(CommKind kind, int size,
                                                           const std::string& device) {
  const bool gpu = device.rfind("cuda", 0) == 0;
  int visible = 0;
#ifdef LLM42_HAVE_CUDA
  if (gpu) visible = cuda_device_count() - device_ordinal(device);
#endif
  if (kind == CommKind::kAuto)
    kind = gpu && size > 1 && visible >= size ? CommKind::kNccl : CommKind::kInProcess;
  if (kind == CommKind::kInProcess) return std::make_unique<InProcessCommGroup>(size);
  if (!gpu) fail("--tp-communicator nccl needs --device cuda (got --device {})", device);
  if (visible < size)
    fail("--tp-communicator nccl: {} ranks need {} GPUs from {} on, {} visible", size, size,
         device, visible);
#ifdef LLM42_HAVE_NCCL
  std::vector<int> ordinals(static_cast<size_t>(size));
  std::iota(ordinals.begin(), ordinals.end(), device_ordinal(device));
  return make_nccl_group(std::move(ordinals));
#else
  fail("--tp-communicator nccl: this build of llm42 has no NCCL (it was not found next to the "
       "CUDA toolkit at build time)");
#endif
}

}  // namespace llm42
