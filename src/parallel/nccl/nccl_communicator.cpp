#include "parallel/nccl/nccl_communicator.h"

#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>

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
  NcclGroup(int size, int first) : size_(size), first_(first) {
    // NVLink multicast (NVLS) stays off unless the environment says otherwise: the lent
    // machines must not create multicast objects, and the exchanges are small.
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    LLM42_NCCL_CHECK(ncclGetUniqueId(&id_));
  }
  int size() const override { return size_; }
  bool shares_device() const override { return false; }
  std::string rank_device(const std::string&, int r) const override {
    return "cuda:" + std::to_string(first_ + r);
  }
  std::unique_ptr<Communicator> join(int r, Backend& backend) override {
    auto* cuda = dynamic_cast<CudaBackend*>(&backend);
    LLM42_ASSERT(cuda != nullptr, "the NCCL communicator needs a CUDA backend");
    cuda->bind_thread();
    // The ranks are threads of this process: they meet here before NCCL's init, which waits
    // for every rank and cannot be given up. A rank that fails before it comes releases the
    // others through abort_joins.
    {
      std::unique_lock lock(mu_);
      if (joins_aborted_) throw aborted_join(r);
      ++arrived_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return joins_aborted_ || arrived_ == size_; });
      if (joins_aborted_ && arrived_ < size_) throw aborted_join(r);
    }
    ncclComm_t comm = nullptr;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    LLM42_NCCL_CHECK(ncclCommInitRankConfig(&comm, size_, id_, r, &config));
    return std::make_unique<NcclCommunicator>(comm, r, size_, cuda->stream());
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

  int size_, first_;
  ncclUniqueId id_{};
  std::mutex mu_;  // guards the two below
  std::condition_variable cv_;
  int arrived_ = 0;  // ranks that reached join
  bool joins_aborted_ = false;
};

}  // namespace

std::unique_ptr<CommunicatorGroup> make_nccl_group(int size, int first_ordinal) {
  return std::make_unique<NcclGroup>(size, first_ordinal);
}

}  // namespace llm42
