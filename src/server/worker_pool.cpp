#include "server/worker_pool.h"

#include <algorithm>

namespace llm42::server {

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkerPool::submit(std::function<void()> task, uint64_t cost) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.emplace(std::pair{virtual_time_ + cost, arrivals_++}, std::move(task));
  }
  cv_.notify_one();
}

void WorkerPool::run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      const auto first = tasks_.begin();
      virtual_time_ = std::max(virtual_time_, first->first.first);
      task = std::move(first->second);
      tasks_.erase(first);
    }
    task();
  }
}

}  // namespace llm42::server
