// The admission pool's queue: cheap tasks first, large ones aged in, none starved.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

#include "server/worker_pool.h"

namespace llm42::server {
namespace {

// One thread, held by a first task until release(), so that the queue fills up first.
class HeldPool {
 public:
  HeldPool() {
    pool_.submit([this] {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return released_; });
    });
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }
  WorkerPool& pool() { return pool_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  WorkerPool pool_{1};  // last: destroyed (joined) first
};

TEST(WorkerPool, CheapTasksGoFirst) {
  std::vector<char> order;
  {
    HeldPool held;
    held.pool().submit([&] { order.push_back('A'); }, 1'000'000);
    held.pool().submit([&] { order.push_back('B'); }, 10);
    held.pool().submit([&] { order.push_back('C'); }, 500);
    held.pool().submit([&] { order.push_back('D'); }, 10);
    held.release();
  }
  EXPECT_EQ(order, (std::vector<char>{'B', 'D', 'C', 'A'}));
}

TEST(WorkerPool, LargeTasksAreNotStarved) {
  // A stream of small tasks (each submits the next) arriving after a large one: the large one
  // runs once its cost's worth of small work has run, not after the whole stream.
  std::vector<int> order;  // 0: the large task; i > 0: small task i
  std::function<void(int)> small;  // outlives the pool, whose tasks call it
  {
    HeldPool held;
    WorkerPool& pool = held.pool();
    small = [&](int i) {
      order.push_back(i);
      if (i < 40) pool.submit([&small, i] { small(i + 1); }, 10);
    };
    pool.submit([&] { order.push_back(0); }, 100);
    pool.submit([&small] { small(1); }, 10);
    held.release();
  }
  ASSERT_EQ(order.size(), 41u);
  const auto large_at = std::find(order.begin(), order.end(), 0) - order.begin();
  EXPECT_LE(large_at, 11);
  EXPECT_GE(large_at, 5);
}

}  // namespace
}  // namespace llm42::server
