// A small fork-join thread pool. The machines have 2 cores, so the pool never
// holds more workers than asked for. Between the closely spaced calls of a
// forward pass a worker polls for a few tens of microseconds; an idle pool
// sleeps on a condition variable.
//
// parallel_for splits [0, n) into contiguous chunks by a fixed rule that
// depends only on n and the grain, never on timing, and every output element
// is computed by exactly one task with the same arithmetic whatever the
// thread count; results are therefore bit-identical at 1 and 2 threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ama {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) over chunks covering [0, n); blocks until all done.
  // Chunks are multiples of `grain` (except the last). Calls from several
  // threads are serialized; fn must not call parallel_for on the same pool.
  // If fn throws, in the caller's share or a worker's, the other shares
  // still run to the end (they may be using the same buffers), and then the
  // first exception thrown is rethrown here; the pool stays usable.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

  // Calls fn(i) once for each task i in [0, n), the threads taking the next
  // task from a shared counter as they finish one, so that a thread slowed
  // down for a while (on a 2-vCPU VM one often is) does not hold the call up
  // with half the work. Each task must compute its outputs the same way
  // whichever thread runs it; results are then as deterministic as with
  // parallel_for. Calls are serialized as above. If a task throws, its
  // thread takes no more tasks; the others finish what is left, and then
  // the first exception is rethrown here.
  void parallel_tasks(size_t n, const std::function<void(size_t)>& fn);

  // Like parallel_tasks, over the tasks [bounds.front(), bounds.back())
  // split into ranges [bounds[s], bounds[s + 1]) (non-decreasing bounds):
  // the thread of share s first takes the tasks of range s in order, then
  // helps with what is left of the others', one task at a time. With
  // size() + 1 bounds each thread owns one range, and the data its range
  // touches stays in its own cache (cpu_backend.cpp's GEMM: each thread's
  // rows of the activations).
  void parallel_tasks_owned(const std::vector<size_t>& bounds, const std::function<void(size_t)>& fn);

  // Number of usable hardware threads (at least 1).
  static int hardware_threads();

 private:
  void worker_loop(int index);
  // Keeps the first exception of the current call (the others are dropped).
  void record_error(std::exception_ptr e);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // Published to workers by the release increment of generation_.
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_chunk_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  // The first exception thrown by any share of the current call, read by the
  // caller once every share has finished. has_error_ spares the caller a lock
  // on the common path, where nothing threw.
  std::mutex error_mu_;
  std::exception_ptr error_;
  std::atomic<bool> has_error_{false};
};

}  // namespace ama
