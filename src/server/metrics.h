// The server's Prometheus metrics (GET /metrics, text exposition format
// 0.0.4): requests and errors by endpoint and status, queue depth, batch
// occupancy, audio seconds processed, cancellations, and a histogram of
// realtime factors. Thread-safe.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ama::server {

// What the server knows at scrape time (gauges).
struct MetricsSnapshot {
  bool ready = false;
  int queue_depth = 0;       // requests admitted (uploading, preparing or decoding)
  int queue_capacity = 0;    // --max-queue
  int preparing = 0;         // requests in pass 1 (decode + VAD)
  int decoding_jobs = 0;     // files in the scheduler
  int batch_windows = 0;     // windows in the current decoder step
  int batch_sequences = 0;
  int max_batch = 0;
  int queued_windows = 0;
  long long decoder_steps = 0;
  double busy_seconds = 0;
};

class Metrics {
 public:
  Metrics();
  // Every HTTP answer (endpoint: a known path, or "other").
  void count_request(const std::string& endpoint, int status);
  // A transcription that completed: its audio and processing seconds.
  void observe_transcription(double audio_seconds, double processing_seconds);
  // A job cancelled: reason "disconnect" or "timeout".
  void count_cancelled(const std::string& reason);
  // Occupancy of the decoder batch, sampled (windows / max_batch).
  void observe_occupancy(double fraction);

  std::string render(const MetricsSnapshot& s) const;

  // For tests and logs.
  long long cancelled(const std::string& reason) const;

  // Realtime factor buckets: processing seconds per audio second.
  static const std::vector<double>& rtf_buckets();

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, long long> requests_;
  std::map<std::string, long long> cancelled_;
  double audio_seconds_ = 0, processing_seconds_ = 0;
  long long transcriptions_ = 0;
  std::vector<long long> rtf_counts_;  // per bucket (not cumulative), plus +Inf
  double rtf_sum_ = 0;
  double occupancy_sum_ = 0;
  long long occupancy_samples_ = 0;
};

}  // namespace ama::server
