#include "parallel/inprocess_communicator.h"

#include "util/error.h"

namespace llm42 {

InProcessGroup::InProcessGroup(int size)
    : size_(size), published_(static_cast<size_t>(size), nullptr) {
  LLM42_ASSERT(size >= 1, "group of {} ranks", size);
}

void InProcessGroup::arrive_and_wait() {
  std::unique_lock lock(mu_);
  if (aborted_) throw ExchangeAborted("in-process exchange aborted: another rank failed");
  const uint64_t phase = generation_;
  if (++arrived_ == size_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return generation_ != phase || aborted_; });
  if (generation_ == phase) throw ExchangeAborted("in-process exchange aborted: another rank failed");
}

void InProcessGroup::abort() {
  {
    std::lock_guard lock(mu_);
    aborted_ = true;
  }
  cv_.notify_all();
}

void InProcessGroup::reset() {
  std::lock_guard lock(mu_);
  aborted_ = false;
  arrived_ = 0;
  ++generation_;
}

InProcessCommunicator::InProcessCommunicator(std::shared_ptr<InProcessGroup> group, int rank,
                                             Backend& backend)
    : group_(std::move(group)), rank_(rank), backend_(backend) {
  LLM42_ASSERT(rank >= 0 && rank < group_->size(), "rank {} of {}", rank, group_->size());
}

void InProcessCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  const size_t bytes = in.nbytes();
  const int n = size();
  LLM42_ASSERT(out.nbytes() == bytes * static_cast<size_t>(n), "all_gather of {} into {}",
               in.shape_string(), out.shape_string());
  // 1. This rank's input is complete; offer it. 2. Copy every rank's input into place.
  // 3. Wait until every rank has copied before anyone reuses its input.
  backend_.synchronize();
  group_->published_[static_cast<size_t>(rank_)] = in.data;
  group_->arrive_and_wait();
  for (int r = 0; r < n; ++r)
    backend_.copy_device(static_cast<char*>(out.data) + bytes * static_cast<size_t>(r),
                         group_->published_[static_cast<size_t>(r)], bytes);
  backend_.synchronize();
  group_->arrive_and_wait();
}

void InProcessCommunicator::all_reduce_sum(const Tensor& t) {
  if (size() == 1) return;
  const size_t need = t.nbytes() * static_cast<size_t>(size());
  if (scratch_.bytes() < need) scratch_ = Buffer(backend_, need);
  const Tensor parts(scratch_.get(), t.dtype, t.device, {size(), t.numel()});
  all_gather(t, parts);
  backend_.sum_parts(parts, Tensor(t.data, t.dtype, t.device, {t.numel()}));
}

}  // namespace llm42
