// Prometheus metrics: see metrics.h.
#include "server/metrics.h"

#include <cstdio>

namespace ama::server {

namespace {

std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

void header(std::string& o, const char* name, const char* type, const char* help) {
  o += "# HELP ";
  o += name;
  o += " ";
  o += help;
  o += "\n# TYPE ";
  o += name;
  o += " ";
  o += type;
  o += "\n";
}

void gauge(std::string& o, const char* name, const char* help, double v) {
  header(o, name, "gauge", help);
  o += std::string(name) + " " + num(v) + "\n";
}

void counter(std::string& o, const char* name, const char* help, double v) {
  header(o, name, "counter", help);
  o += std::string(name) + " " + num(v) + "\n";
}

}  // namespace

const std::vector<double>& Metrics::rtf_buckets() {
  static const std::vector<double> b = {0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10};
  return b;
}

Metrics::Metrics() : rtf_counts_(rtf_buckets().size() + 1, 0) {}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::observe_transcription(double audio_seconds, double processing_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++transcriptions_;
  audio_seconds_ += audio_seconds;
  processing_seconds_ += processing_seconds;
  if (audio_seconds <= 0) return;
  const double rtf = processing_seconds / audio_seconds;
  size_t i = 0;
  while (i < rtf_buckets().size() && rtf > rtf_buckets()[i]) ++i;
  ++rtf_counts_[i];
  rtf_sum_ += rtf;
}

void Metrics::count_cancelled(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++cancelled_[reason];
}

void Metrics::observe_occupancy(double fraction) {
  std::lock_guard<std::mutex> lock(mu_);
  occupancy_sum_ += fraction;
  ++occupancy_samples_;
}

long long Metrics::cancelled(const std::string& reason) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cancelled_.find(reason);
  return it == cancelled_.end() ? 0 : it->second;
}

std::string Metrics::render(const MetricsSnapshot& s) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string o;
  gauge(o, "amanuensis_ready", "1 once the model is loaded", s.ready ? 1 : 0);

  header(o, "amanuensis_http_requests_total", "counter", "HTTP requests answered, by endpoint and status");
  for (const auto& [key, n] : requests_)
    o += "amanuensis_http_requests_total{endpoint=\"" + key.first + "\",status=\"" + std::to_string(key.second) +
         "\"} " + std::to_string(n) + "\n";
  header(o, "amanuensis_http_errors_total", "counter", "HTTP requests answered with a status >= 400, by endpoint and status");
  for (const auto& [key, n] : requests_)
    if (key.second >= 400)
      o += "amanuensis_http_errors_total{endpoint=\"" + key.first + "\",status=\"" + std::to_string(key.second) +
           "\"} " + std::to_string(n) + "\n";
  header(o, "amanuensis_cancelled_total", "counter", "transcriptions cancelled, by reason (disconnect, timeout)");
  for (const char* reason : {"disconnect", "timeout"}) {
    auto it = cancelled_.find(reason);
    o += std::string("amanuensis_cancelled_total{reason=\"") + reason + "\"} " +
         std::to_string(it == cancelled_.end() ? 0 : it->second) + "\n";
  }

  gauge(o, "amanuensis_queue_depth", "requests admitted: uploading, preparing (decode + VAD) or decoding", s.queue_depth);
  gauge(o, "amanuensis_queue_capacity", "the most requests admitted at once (--max-queue)", s.queue_capacity);
  gauge(o, "amanuensis_preparing_requests", "requests in pass 1 (audio decoding and VAD)", s.preparing);
  gauge(o, "amanuensis_decoding_jobs", "files in the decoding scheduler", s.decoding_jobs);
  gauge(o, "amanuensis_queued_windows", "30 s windows waiting for a batch slot", s.queued_windows);
  gauge(o, "amanuensis_batch_windows", "windows in the current decoder step", s.batch_windows);
  gauge(o, "amanuensis_batch_sequences", "decoder sequences in the current step (beams, samples)", s.batch_sequences);
  gauge(o, "amanuensis_batch_max", "windows decoded together at most (--max-batch)", s.max_batch);
  gauge(o, "amanuensis_batch_occupancy", "windows in the current step / max batch",
        s.max_batch > 0 ? static_cast<double>(s.batch_windows) / s.max_batch : 0);
  gauge(o, "amanuensis_batch_occupancy_average", "mean of the sampled batch occupancy while decoding",
        occupancy_samples_ > 0 ? occupancy_sum_ / occupancy_samples_ : 0);
  counter(o, "amanuensis_decoder_steps_total", "decoder steps run", static_cast<double>(s.decoder_steps));
  counter(o, "amanuensis_scheduler_busy_seconds_total", "decoding worker time in steps and encoding", s.busy_seconds);

  counter(o, "amanuensis_transcriptions_total", "transcriptions completed", static_cast<double>(transcriptions_));
  counter(o, "amanuensis_audio_seconds_total", "seconds of audio transcribed", audio_seconds_);
  counter(o, "amanuensis_processing_seconds_total", "seconds spent on completed transcriptions", processing_seconds_);

  header(o, "amanuensis_realtime_factor", "histogram",
         "processing seconds per second of audio, per transcription (lower is faster)");
  long long cumulative = 0;
  for (size_t i = 0; i < rtf_buckets().size(); ++i) {
    cumulative += rtf_counts_[i];
    o += "amanuensis_realtime_factor_bucket{le=\"" + num(rtf_buckets()[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += rtf_counts_.back();
  o += "amanuensis_realtime_factor_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  o += "amanuensis_realtime_factor_sum " + num(rtf_sum_) + "\n";
  o += "amanuensis_realtime_factor_count " + std::to_string(cumulative) + "\n";
  return o;
}

}  // namespace ama::server
