// A small pool of threads for the work of admitting a request (JSON parsing, validation,
// chat templating, tokenization), so that the event loop never waits on it.
//
// The queue is ordered by cost, with aging: a task's key is the pool's virtual time when it
// arrives plus its cost, and the virtual time moves to the key of each task taken. So a small
// request does not wait behind a client's large ones (long prompts to template and tokenize),
// and a large one is delayed by at most its cost's worth of smaller work, never starved.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace llm42::server {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();  // runs what is queued, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // `cost`: the work the task stands for, e.g. the request's body bytes.
  void submit(std::function<void()> task, uint64_t cost = 0);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<uint64_t, uint64_t>, std::function<void()>> tasks_;  // (key, arrival)
  uint64_t virtual_time_ = 0;
  uint64_t arrivals_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace llm42::server
