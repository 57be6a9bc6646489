// The fork-join pool: every index exactly once, across the spin and the
// sleep paths, from several callers, and an exception from the caller's share.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace ama {
namespace {

void expect_covers(ThreadPool& pool, size_t n, size_t grain) {
  std::vector<std::atomic<int>> hits(n);
  pool.parallel_for(n, grain, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i << " of " << n << ", grain " << grain;
}

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (size_t n : {1, 2, 3, 7, 64, 1000})
      for (size_t grain : {1, 3, 16, 2000}) expect_covers(pool, n, grain);
  }
}

TEST(ThreadPool, ManyCallsThroughSpinAndSleep) {
  ThreadPool pool(2);
  for (int i = 0; i < 2000; ++i) {
    expect_covers(pool, 1 + i % 97, 1 + i % 5);
    // Now and then wait past the 50 us poll so that workers go to sleep.
    if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST(ThreadPool, CallersFromSeveralThreadsAreSerialized) {
  ThreadPool pool(2);
  std::vector<std::thread> callers;
  std::atomic<long> total{0};
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        pool.parallel_for(100, 1, [&](size_t b, size_t e) { total += static_cast<long>(e - b); });
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 4L * 200 * 100);
}

TEST(ThreadPool, ExceptionFromCallerShareWaitsForWorkers) {
  ThreadPool pool(2);
  std::atomic<int> worker_done{0};
  EXPECT_THROW(pool.parallel_for(2, 1,
                                 [&](size_t b, size_t) {
                                   if (b == 0) throw std::runtime_error("caller share");
                                   std::this_thread::sleep_for(std::chrono::milliseconds(20));
                                   worker_done = 1;
                                 }),
               std::runtime_error);
  EXPECT_EQ(worker_done.load(), 1);  // the worker finished before the exception escaped
  expect_covers(pool, 10, 1);        // and the pool still works
}

}  // namespace
}  // namespace ama
