#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <immintrin.h>
#include <sched.h>

namespace ama {

namespace {
// A worker that just finished a task polls for the next one for up to
// 50 us before it sleeps: a decoder step issues ~80 parallel_for calls a few
// microseconds apart, and a futex wake-up costs more than the work between
// them (base decode at 2 threads: 7.9 ms/token with sleeping workers, 4.4
// with polling). A pool with no work sleeps.
constexpr auto kSpin = std::chrono::microseconds(50);

// Polls done() until it holds or kSpin has passed; returns done().
template <typename Done>
bool spin_until(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      _mm_pause();
    }
    if (std::chrono::steady_clock::now() > deadline) return done();
  }
}
}  // namespace

int ThreadPool::hardware_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  // The calling thread does the share of task 0, so n-1 workers suffice.
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

static void run_task(const std::function<void(size_t, size_t)>& fn, size_t n, size_t chunk, int index) {
  size_t begin = static_cast<size_t>(index) * chunk;
  if (begin >= n) return;
  fn(begin, std::min(n, begin + chunk));
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Poll briefly, then sleep until the generation changes.
    spin_until([&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    // An exception must not leave the thread function (std::terminate); it
    // is handed to the caller, which rethrows it once all shares are done.
    try {
      run_task(*job_, job_n_, job_chunk_, index);
    } catch (...) {
      record_error(std::current_exception());
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_.notify_one();
    }
  }
}

void ThreadPool::parallel_tasks(size_t n, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  parallel_for(std::min<size_t>(n, n_threads_), 1, [&](size_t, size_t) {
    for (size_t i = next.fetch_add(1, std::memory_order_relaxed); i < n; i = next.fetch_add(1, std::memory_order_relaxed))
      fn(i);
  });
}

void ThreadPool::parallel_tasks_owned(const std::vector<size_t>& bounds, const std::function<void(size_t)>& fn) {
  if (bounds.size() < 2) return;
  const size_t parts = bounds.size() - 1;
  std::unique_ptr<std::atomic<size_t>[]> next(new std::atomic<size_t>[parts]);
  for (size_t s = 0; s < parts; ++s) next[s].store(bounds[s], std::memory_order_relaxed);
  parallel_for(parts, 1, [&](size_t own, size_t) {
    for (size_t k = 0; k < parts; ++k) {
      const size_t s = (own + k) % parts;
      for (size_t i = next[s].fetch_add(1, std::memory_order_relaxed); i < bounds[s + 1];
           i = next[s].fetch_add(1, std::memory_order_relaxed))
        fn(i);
    }
  });
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  size_t units = (n + grain - 1) / grain;
  if (n_threads_ == 1 || units == 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call(call_mu_);
  // job_ and its bounds are published by the release increment of
  // generation_ (and by the mutex for sleeping workers).
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = ((units + n_threads_ - 1) / n_threads_) * grain;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  // If our share throws (bad_alloc), the workers still use fn: wait for
  // them before the exception leaves this frame.
  try {
    run_task(fn, n, job_chunk_, 0);
  } catch (...) {
    record_error(std::current_exception());
  }
  if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  // Every share has finished (a worker records its error before its
  // release decrement of pending_), so error_ is final for this call. Take
  // it, leaving the pool clean for the next call.
  if (has_error_.load(std::memory_order_acquire)) {
    std::exception_ptr error;
    {
      std::lock_guard<std::mutex> lock(error_mu_);
      error.swap(error_);
      has_error_.store(false, std::memory_order_relaxed);
    }
    std::rethrow_exception(error);
  }
}

void ThreadPool::record_error(std::exception_ptr e) {
  std::lock_guard<std::mutex> lock(error_mu_);
  if (!error_) {
    error_ = std::move(e);
    has_error_.store(true, std::memory_order_release);
  }
}

}  // namespace ama
