// The fork-join pool: every index exactly once, across the spin and the
// sleep paths, from several callers, and exceptions from the caller's share
// and from the workers' shares.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
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

// Every share except the caller's throws, so the exception that reaches the
// caller comes from a worker thread (before the fix it left the worker's
// thread function and called std::terminate). Half the rounds the caller's
// share is slow, so that the workers finish and go back to waiting first;
// the other half a worker is slow and the caller waits for it.
TEST(ThreadPool, ExceptionFromWorkerShareReachesCaller) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    const std::thread::id caller = std::this_thread::get_id();
    for (int round = 0; round < 20; ++round) {
      SCOPED_TRACE("threads " + std::to_string(threads) + ", round " + std::to_string(round));
      std::atomic<int> caller_shares{0}, worker_shares{0};
      std::string what;
      try {
        pool.parallel_for(threads, 1, [&](size_t b, size_t) {
          if (std::this_thread::get_id() == caller) {
            if (round % 2 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            caller_shares += 1;
            return;
          }
          if (round % 2 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          worker_shares += 1;
          throw std::runtime_error("worker share " + std::to_string(b));
        });
      } catch (const std::runtime_error& e) {
        what = e.what();
      }
      EXPECT_EQ(what.rfind("worker share ", 0), 0u) << "caught: '" << what << "'";
      EXPECT_EQ(caller_shares.load(), 1);
      EXPECT_EQ(worker_shares.load(), threads - 1);  // every worker share ran, on a worker thread
      expect_covers(pool, 100, 1);                    // the pool still works, with no stale error
    }
  }
}

// When every share throws, the caller gets exactly one of the exceptions, of
// any type, and only after the slowest share has finished.
TEST(ThreadPool, ExceptionsFromAllSharesGiveOneAfterAllFinish) {
  ThreadPool pool(3);
  std::atomic<int> finished{0};
  int caught = -1;
  try {
    pool.parallel_for(3, 1, [&](size_t b, size_t) {
      if (b == 2) std::this_thread::sleep_for(std::chrono::milliseconds(30));
      finished += 1;
      throw static_cast<int>(b);  // not a std::exception: must still arrive intact
    });
  } catch (int b) {
    caught = b;
  }
  EXPECT_GE(caught, 0);
  EXPECT_LE(caught, 2);
  EXPECT_EQ(finished.load(), 3);  // the slow share ended before the exception left parallel_for
  expect_covers(pool, 1000, 3);
  EXPECT_NO_THROW(pool.parallel_for(3, 1, [](size_t, size_t) {}));  // the error does not leak into the next call
}

// The first exception wins: a worker throws at once, the caller's share
// throws 50 ms after seeing the worker start to throw.
TEST(ThreadPool, FirstExceptionIsTheOneRethrown) {
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> worker_throwing{false};
  std::string what;
  try {
    pool.parallel_for(2, 1, [&](size_t, size_t) {
      if (std::this_thread::get_id() != caller) {
        worker_throwing = true;
        throw std::runtime_error("worker, first");
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!worker_throwing && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      throw std::runtime_error("caller, second");
    });
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  EXPECT_EQ(what, "worker, first");
  expect_covers(pool, 10, 1);
}

// parallel_tasks: every task once, whatever the thread count; a slow task
// does not keep the other thread from taking the rest (dynamic claiming);
// an exception from any task reaches the caller after all have finished.
TEST(ThreadPool, TasksCoverEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (size_t n : {0, 1, 2, 3, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_tasks(n, [&](size_t i) { hits[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "task " << i << " of " << n << ", " << threads << " threads";
    }
  }
}

TEST(ThreadPool, TasksGoToWhicheverThreadIsFree) {
  ThreadPool pool(2);
  // Task 0 sleeps; with fixed halves its thread would also own tasks 1..49.
  // Claimed one at a time, the other thread runs (nearly) all of them.
  std::vector<std::thread::id> who(100);
  pool.parallel_tasks(100, [&](size_t i) {
    if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    who[i] = std::this_thread::get_id();
  });
  int with_task0 = 0;
  for (size_t i = 1; i < who.size(); ++i) with_task0 += who[i] == who[0];
  EXPECT_LT(with_task0, 10) << "the thread that slept also ran " << with_task0 << " of the other 99 tasks";
}

TEST(ThreadPool, TaskExceptionReachesCaller) {
  ThreadPool pool(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.parallel_tasks(50,
                                   [&](size_t i) {
                                     ran.fetch_add(1);
                                     if (i == 7) throw std::runtime_error("task 7");
                                   }),
               std::runtime_error);
  EXPECT_GE(ran.load(), 8);
  std::atomic<int> after{0};
  pool.parallel_tasks(10, [&](size_t) { after.fetch_add(1); });  // still usable
  EXPECT_EQ(after.load(), 10);
}

// parallel_tasks_owned: every task once, whatever the ranges (empty ones,
// more or fewer ranges than threads); each thread starts with its own range;
// an exception reaches the caller and the pool stays usable.
TEST(ThreadPool, OwnedRangesCoverEveryIndexOnce) {
  const std::vector<std::vector<size_t>> all_bounds = {
      {}, {0}, {0, 0}, {0, 1}, {0, 5, 5}, {0, 0, 7}, {0, 3, 7}, {0, 500, 1000}, {0, 1, 2, 3}, {0, 10, 10, 40, 64}, {3, 9, 20}};
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (const auto& bounds : all_bounds) {
      const size_t n = bounds.empty() ? 0 : bounds.back();
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_tasks_owned(bounds, [&](size_t i) { hits[i].fetch_add(1); });
      const size_t first = bounds.empty() ? 0 : bounds.front();
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[i].load(), i >= first ? 1 : 0)
            << "task " << i << " of " << bounds.size() << " bounds up to " << n << ", " << threads << " threads";
    }
  }
}

TEST(ThreadPool, EachThreadStartsWithItsOwnRange) {
  ThreadPool pool(2);
  // Task 0, the caller's first, waits until another task has run: the
  // worker's first task, which must be the first of its own range (50), and
  // not the next of the caller's (1).
  std::atomic<int> others{0};
  std::atomic<long> worker_first{-1};
  pool.parallel_tasks_owned({0, 50, 100}, [&](size_t i) {
    if (i == 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (others.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      return;
    }
    long none = -1;
    worker_first.compare_exchange_strong(none, static_cast<long>(i));
    others.fetch_add(1);
  });
  EXPECT_EQ(others.load(), 99);
  EXPECT_EQ(worker_first.load(), 50) << "the other thread began with task " << worker_first.load();
}

TEST(ThreadPool, OwnedTaskExceptionReachesCaller) {
  ThreadPool pool(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.parallel_tasks_owned({0, 25, 50},
                                         [&](size_t i) {
                                           ran.fetch_add(1);
                                           if (i == 30) throw std::runtime_error("task 30");
                                         }),
               std::runtime_error);
  EXPECT_GE(ran.load(), 26);
  std::atomic<int> after{0};
  pool.parallel_tasks_owned({0, 5, 10}, [&](size_t) { after.fetch_add(1); });  // still usable
  EXPECT_EQ(after.load(), 10);
}

}  // namespace
}  // namespace ama
