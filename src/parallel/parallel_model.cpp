#include "parallel/parallel_model.h"

#include <algorithm>

#include "backend/communicator.h"
#include "util/error.h"

namespace llm42 {

ParallelModel::ParallelModel(Transformer& model)
    : models_{&model}, kv_(1), kv_storage_(1) {}

ParallelModel::ParallelModel(int tp, int ranks_per_device, const std::function<Rank(int)>& build,
                             const std::function<void()>& build_failed)
    : owned_(static_cast<size_t>(tp)),
      models_(static_cast<size_t>(tp), nullptr),
      kv_(static_cast<size_t>(tp)),
      kv_storage_(static_cast<size_t>(tp)),
      ranks_per_device_(ranks_per_device),
      build_failed_(build_failed) {
  LLM42_ASSERT(tp >= 1, "{} ranks", tp);
  // Every rank builds its part on the thread that will run it (its device is current there).
  const std::function<void(int)> make = [&](int r) {
    owned_[static_cast<size_t>(r)] = build(r);
    models_[static_cast<size_t>(r)] = owned_[static_cast<size_t>(r)].model.get();
  };
  for (int r = 1; r < tp; ++r) threads_.emplace_back(&ParallelModel::worker, this, r);
  try {
    run_all(make);
    built_ = true;
    build_failed_ = nullptr;  // it may refer to what built the ranks, gone after construction
  } catch (...) {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    throw;
  }
}

ParallelModel::~ParallelModel() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  // The KV caches and models go before the backends that own their memory.
  kv_storage_.clear();
  for (Rank& r : owned_) {
    r.model.reset();
    r.comm.reset();
    r.backend.reset();
  }
}

void ParallelModel::worker(int r) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* task = nullptr;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || epoch_ != seen; });
      if (stopping_) return;
      seen = epoch_;
      task = task_;
    }
    std::exception_ptr error;
    try {
      (*task)(r);  // this thread made rank r's backend: its device is current here
    } catch (...) {
      error = std::current_exception();
    }
    if (error) rank_failed(r, error);
    {
      std::lock_guard lock(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
}

void ParallelModel::rank_failed(int r, std::exception_ptr error) {
  bool consequence = false;
  try {
    std::rethrow_exception(error);
  } catch (const ExchangeAborted&) {
    consequence = true;
  } catch (...) {
  }
  {
    std::lock_guard lock(mu_);
    // The cause is kept over the other ranks' aborted exchanges, whatever order they come in.
    if (!consequence && !cause_) {
      cause_ = error;
      failed_rank_ = r;
    }
    if (!error_) error_ = error;
  }
  // The others may be waiting for this rank at an exchange: release them. While the ranks are
  // still being built, owned_ is being written and nothing exchanges yet, but the others may be
  // waiting for this one to join their group.
  if (built_) {
    for (Rank& rank : owned_)
      if (rank.comm != nullptr) rank.comm->abort();
  } else if (!consequence && build_failed_) {
    build_failed_();
  }
}

void ParallelModel::bind_rank0() {
  // Rank 0 runs on whichever thread calls (the loader's, then the engine's): make its device
  // current once per calling thread, not on every pass.
  const std::thread::id self = std::this_thread::get_id();
  if (models_.front() == nullptr || rank0_thread_ == self) return;
  models_.front()->backend().bind_thread();
  rank0_thread_ = self;
}

void ParallelModel::run_all(const std::function<void(int)>& fn) {
  if (!broken_.empty())
    fail("tensor-parallel model unusable: {}; restart to load it again", broken_);
  bind_rank0();
  if (threads_.empty()) {
    fn(0);
    return;
  }
  {
    std::lock_guard lock(mu_);
    task_ = &fn;
    pending_ = static_cast<int>(threads_.size());
    error_ = nullptr;
    cause_ = nullptr;
    failed_rank_ = -1;
    ++epoch_;
  }
  work_cv_.notify_all();
  try {
    fn(0);
  } catch (...) {
    rank_failed(0, std::current_exception());
  }
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  task_ = nullptr;
  if (!error_) return;
  // Every rank has left the pass: mend the exchanges for the next one where that can be done.
  const std::exception_ptr cause = cause_ ? cause_ : error_;
  const int rank = failed_rank_;
  lock.unlock();
  bool mended = true;
  if (built_)
    for (Rank& r : owned_)
      if (r.comm != nullptr) mended = r.comm->recover() && mended;
  std::string what = "unknown error";
  try {
    std::rethrow_exception(cause);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  if (rank >= 0) what = fmt::format("tensor-parallel rank {} failed: {}", rank, what);
  if (!mended) {
    broken_ = what;
    fail("{} (its {} exchanges were aborted and cannot be mended)", what, communicator_name());
  }
  fail("{}", what);
}

std::string ParallelModel::communicator_name() const {
  return owned_.empty() || owned_.front().comm == nullptr ? "" : owned_.front().comm->name();
}

bool ParallelModel::exchanges_capturable() const {
  if (tp_size() == 1) return true;
  for (const Rank& r : owned_)
    if (r.comm == nullptr || !r.comm->capturable()) return false;
  return true;
}

size_t ParallelModel::weight_bytes() const {
  size_t n = 0;
  for (const Transformer* m : models_) n += m->weights().bytes();
  return n;
}

size_t ParallelModel::bytes_per_decode_step() const {
  size_t n = 0;
  for (const Transformer* m : models_) n = std::max(n, m->weights().bytes_per_decode_step());
  return n;
}

size_t ParallelModel::free_memory_per_rank() const {
  size_t least = SIZE_MAX;
  for (const Transformer* m : models_)
    least = std::min(least, m->backend().free_memory());
  return least / static_cast<size_t>(ranks_per_device_);
}

size_t ParallelModel::kv_block_bytes(int block_size) const {
  size_t most = 0;
  for (const Transformer* m : models_) {
    const size_t heads = static_cast<size_t>(m->dims().n_kv_heads());
    most = std::max<size_t>(most, size_t{2} * static_cast<size_t>(m->config().n_layers) *
                              static_cast<size_t>(block_size) * heads *
                              static_cast<size_t>(m->config().head_dim) *
                              dtype_size(m->backend().activation_dtype()));
  }
  return most;
}

void ParallelModel::allocate_kv(int n_blocks, int block_size) {
  run_all([&](int r) {
    const auto i = static_cast<size_t>(r);
    kv_storage_[i].clear();
    kv_[i] = models_[i]->allocate_kv_cache(n_blocks, block_size, kv_storage_[i]);
  });
}

void ParallelModel::release_kv() {
  run_all([&](int r) {
    const auto i = static_cast<size_t>(r);
    kv_storage_[i].clear();
    kv_[i] = KvCache{};
  });
}

size_t ParallelModel::kv_bytes() const {
  size_t n = 0;
  for (const KvCache& kv : kv_) n += kv.bytes();
  return n;
}

Tensor ParallelModel::forward(const PassInput& pass) {
  Tensor logits;
  run_all([&](int r) {
    const auto i = static_cast<size_t>(r);
    const Tensor l = models_[i]->forward(pass, kv_[i]);
    if (r == 0) logits = l;
  });
  return logits;
}

Transformer::GraphStats ParallelModel::graph_stats() const { return models_.front()->graph_stats(); }

void ParallelModel::warm_up() {
  run_all([&](int r) { models_[static_cast<size_t>(r)]->warm_up(); });
}

}  // namespace llm42
