// Continuous batching across files: the decoding half of the batched
// pipeline, shared by every transcription in flight (the server's requests,
// or one CLI run). One worker thread owns the engine's stages; callers
// prepare their file (audio decoding, VAD, chunking: decode/pipeline.h) on
// their own thread and then hand its chunks over. Every decoder step carries
// the windows of all files in flight, up to max_batch windows (each window
// one or more sequences: beams, samples).
//
// A window's result does not depend on what it was batched with (every row
// of a decoder step is computed independently, and each window has its own
// seed), so a file's transcript is byte for byte the same alone or among
// others; tests/test_scheduler.cpp checks it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "decode/pipeline.h"

namespace ama {

class Engine;

struct SchedulerOptions {
  int max_batch = 0;  // windows decoded together; 0: default_batch_size()
};

// What a caller can watch while its file is decoded. Called from the worker
// thread; keep them short.
struct JobEvents {
  std::function<void(const Segment&)> on_segment;  // in time order, as they are final
  std::function<void(double done_seconds, double total_seconds)> on_progress;
};

class Scheduler {
 public:
  static Result<std::unique_ptr<Scheduler>> create(const Engine& engine, const SchedulerOptions& options);
  ~Scheduler();  // cancels what is still queued and stops the worker
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Decodes a prepared file (blocking; any thread, many at once). `cancel`,
  // when set by the caller (a client that went away), ends the job early
  // with an error, freeing its windows at the next step.
  Result<PipelineResult> run(PreparedAudio audio, const PipelineOptions& options, const JobEvents& events = {},
                             const std::atomic<bool>* cancel = nullptr);

  struct Stats {
    int jobs = 0;              // files being decoded
    int windows = 0;           // windows in the current step
    int sequences = 0;         // decoder sequences in the current step
    int queued_windows = 0;    // chunks waiting for a slot
    int max_batch = 0;
    long long steps = 0;       // decoder steps so far
    double busy_seconds = 0;   // worker time spent in steps and encoding
  };
  Stats stats() const;
  int max_batch() const { return max_batch_; }

 private:
  struct Job;
  Scheduler(const Engine& engine, int max_batch);
  void worker();
  void fail_job(Job& job, const std::string& message);

  const Engine& engine_;
  int max_batch_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> jobs_;  // in arrival order
  bool stop_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace ama
