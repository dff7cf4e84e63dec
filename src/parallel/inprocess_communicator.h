// The in-process Communicator: the ranks are threads of one process whose backends can read each
// other's memory (CPU ranks, or several ranks on one GPU), and exchange by copying from each
// other's buffers between two barriers. It proves the tensor-parallel design where there is one
// device (tests, the CPU), and is not meant to be fast.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/backend.h"
#include "backend/communicator.h"

namespace llm42 {

// What the ranks of one in-process group share.
class InProcessGroup {
 public:
  explicit InProcessGroup(int size);
  int size() const { return size_; }

  // Blocks until every rank has arrived (a reusable barrier); throws ExchangeAborted when the
  // group is aborted, before or while waiting.
  void arrive_and_wait();
  // Wakes every waiting rank with ExchangeAborted; later arrivals throw too until reset().
  void abort();
  // The barrier whole again (no rank may be waiting: after a failed pass has ended everywhere).
  void reset();

 private:
  friend class InProcessCommunicator;
  int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;  // completed barrier phases
  bool aborted_ = false;
  std::vector<const void*> published_;  // per rank: the buffer it offers in the current exchange
};

class InProcessCommunicator final : public Communicator {
 public:
  // `backend` is the rank's own: it copies and sums on it, in its stream.
  InProcessCommunicator(std::shared_ptr<InProcessGroup> group, int rank, Backend& backend);

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  std::string name() const override { return "in-process"; }
  // Gathers every rank's t, then sums them in rank order along the binary tree (sum_parts).
  void all_reduce_sum(const Tensor& t) override;
  void all_gather(const Tensor& in, const Tensor& out) override;
  void abort() override { group_->abort(); }
  bool recover() override {
    group_->reset();
    return true;
  }

 private:
  std::shared_ptr<InProcessGroup> group_;
  int rank_;
  Backend& backend_;
  Buffer scratch_;  // all_reduce_sum's gathered parts
};

}  // namespace llm42
