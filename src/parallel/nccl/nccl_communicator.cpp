#include "parallel/nccl/nccl_communicator.h"

#include <cuda_runtime.h>
#include <fmt/ranges.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "util/error.h"

namespace llm42 {
namespace {

void check(ncclResult_t r, const char* what, const char* file, int line) {
  if (r != ncclSuccess)
    fail("NCCL: {} failed: {} ({}:{})", what, ncclGetErrorString(r), file, line);
}
#define LLM42_NCCL_CHECK(call) check((call), #call, __FILE__, __LINE__)


ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    default:
      fail("NCCL: no reduction for dtype {}", dtype_name(d));
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, cudaStream_t stream)
      : comm_(comm), rank_(rank), size_(size), stream_(stream) {}
  ~NcclCommunicator() override {
    if (!aborted_.load()) ncclCommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }

  void all_reduce_sum(const Tensor& t) override {
    check_live();
    LLM42_NCCL_CHECK(ncclAllReduce(t.data, t.data, static_cast<size_t>(t.numel()),
                                   nccl_type(t.dtype), ncclSum, comm_, stream_));
  }

  void all_gather(const Tensor& in, const Tensor& out) override {
    LLM42_ASSERT(out.nbytes() == in.nbytes() * static_cast<size_t>(size_),
                 "all_gather of {} into {}", in.shape_string(), out.shape_string());
    // As bytes: a gather does no arithmetic.
    check_live();
    LLM42_NCCL_CHECK(ncclAllGather(in.data, out.data, in.nbytes(), ncclUint8, comm_, stream_));
  }

  // ncclCommAbort ends the operations in flight (a rank blocked on its stream waiting for a
  // peer that failed returns) and frees the communicator: it cannot be mended.
  void abort() override {
    if (!aborted_.exchange(true)) ncclCommAbort(comm_);
  }
  bool recover() override { return false; }
  bool capturable() const override { return true; }

 private:
  void check_live() const {
    if (aborted_.load())
      throw ExchangeAborted(fmt::format("NCCL rank {}: its communicator was aborted after a "
                                        "rank failed",
                                        rank_));
  }

  ncclComm_t comm_;
  int rank_, size_;
  cudaStream_t stream_;
  std::atomic<bool> aborted_{false};
};

class NcclGroup final : public CommunicatorGroup {
 public:
  NcclGroup(std::vector<int> ordinals, int broken_rank)
      : ordinals_(std::move(ordinals)), broken_rank_(broken_rank) {
    LLM42_ASSERT(!ordinals_.empty(), "an NCCL group needs at least one rank");
    // NVLink multicast (NVLS) stays off unless the environment says otherwise: the lent
    // machines must not create multicast objects, and the exchanges are small.
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    LLM42_NCCL_CHECK(ncclGetUniqueId(&id_));
  }
  // A communicator no rank took (its rank failed after the init): aborted, not leaked.
  ~NcclGroup() override {
    for (ncclComm_t c : comms_)
      if (c != nullptr) ncclCommAbort(c);
  }
  int size() const override { return static_cast<int>(ordinals_.size()); }
  bool shares_device() const override { return false; }
  std::string rank_device(const std::string&, int r) const override {
    return "cuda:" + std::to_string(ordinals_.at(static_cast<size_t>(r)));
  }

  // The ranks are threads of this process. They meet here; the last to come initializes every
  // rank's communicator in one NCCL group call, and each rank takes its own. Initialized rank by
  // rank (one ncclCommInitRank per thread), a rank whose init failed inside NCCL would leave the
  // others waiting in theirs for good; in one group, NCCL gives the others up and the call
  // returns the error. The rank that made the call throws it; the others throw ExchangeAborted
  // (NCCL does not say which rank failed). A rank that fails before it comes releases the
  // others through abort_joins.
  std::unique_ptr<Communicator> join(int r, Backend& backend) override {
    auto* cuda = dynamic_cast<CudaBackend*>(&backend);
    LLM42_ASSERT(cuda != nullptr, "the NCCL communicator needs a CUDA backend");
    cuda->bind_thread();
    std::unique_lock lock(mu_);
    if (joins_aborted_) throw aborted_join(r);
    if (++arrived_ == size()) {
      init_all();
      cv_.notify_all();
      cuda->bind_thread();  // init_all visited every rank's device
      if (!init_error_.empty()) fail("NCCL: {}", init_error_);
    } else {
      cv_.wait(lock, [&] { return joins_aborted_ || initialized_; });
      if (!initialized_) throw aborted_join(r);
      if (!init_error_.empty())
        throw ExchangeAborted(
            fmt::format("NCCL rank {}: the group's init failed (the rank that ran it says why)", r));
    }
    ncclComm_t comm = std::exchange(comms_[static_cast<size_t>(r)], nullptr);
    return std::make_unique<NcclCommunicator>(comm, r, size(), cuda->stream());
  }
  void abort_joins() override {
    {
      std::lock_guard lock(mu_);
      joins_aborted_ = true;
    }
    cv_.notify_all();
  }

 private:
  static ExchangeAborted aborted_join(int r) {
    return ExchangeAborted(
        fmt::format("NCCL rank {}: stopped waiting for the group after another rank failed", r));
  }

  // Called with mu_ held by the last rank to come. Sets initialized_, and init_error_ on failure
  // (then no communicator is left: those NCCL returned are aborted; NCCL frees only part of a
  // failed init's state, which is one reason a failed start should end the process).
  void init_all() {
    initialized_ = true;
    comms_.assign(ordinals_.size(), nullptr);
    for (const int ordinal : ordinals_) {
      const cudaError_t e = cudaSetDevice(ordinal);
      if (e != cudaSuccess) {
        init_error_ = fmt::format("GPU {} cannot be used: {}", ordinal, cudaGetErrorString(e));
        return;
      }
    }
    ncclResult_t result = ncclGroupStart();
    if (result == ncclSuccess) {
      for (int r = 0; r < size(); ++r) {
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        // The test hook: a network no NCCL plugin provides, refused inside this rank's init
        // (before its bootstrap), while the others wait there for it.
        if (r == broken_rank_) config.netName = "llm42-test-no-such-network";
        (void)cudaSetDevice(ordinals_[static_cast<size_t>(r)]);
        // A call that fails here (its arguments, or its context or memory before NCCL queues
        // the init) makes the group's end fail without running the queued inits.
        const ncclResult_t queued = ncclCommInitRankConfig(&comms_[static_cast<size_t>(r)],
                                                           size(), id_, r, &config);
        if (result == ncclSuccess) result = queued;
      }
      // A rank's init that fails there makes NCCL set the others' abort flags, so they stop
      // waiting for it: the group's end returns the error instead of hanging.
      const ncclResult_t ended = ncclGroupEnd();
      if (result == ncclSuccess) result = ended;
    }
    if (result != ncclSuccess) {
      // NCCL's last warning, process-wide: usually the failure's own reason.
      const char* detail = ncclGetLastError(nullptr);
      init_error_ = fmt::format("initializing the group of {} ranks on GPUs {} failed: {}{}{}",
                                size(), fmt::join(ordinals_, ","), ncclGetErrorString(result),
                                detail && *detail ? " (NCCL: " : "", detail ? detail : "");
      if (detail && *detail) init_error_ += ")";
      for (ncclComm_t& c : comms_) {
        if (c != nullptr) ncclCommAbort(c);
        c = nullptr;
      }
    }
  }

  std::vector<int> ordinals_;  // rank r's GPU
  int broken_rank_;            // the test hook's rank, or -1
  ncclUniqueId id_{};
  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  int arrived_ = 0;  // ranks that reached join
  bool joins_aborted_ = false;
  bool initialized_ = false;      // init_all ran
  std::string init_error_;        // its failure, if it failed
  std::vector<ncclComm_t> comms_;  // rank r's until it takes it
};

}  // namespace

std::unique_ptr<CommunicatorGroup> make_nccl_group(std::vector<int> ordinals, int broken_rank) {
  return std::make_unique<NcclGroup>(std::move(ordinals), broken_rank);
}

}  // namespace llm42
