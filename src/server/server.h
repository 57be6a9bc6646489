// `amanuensis serve`: an OpenAI-compatible transcription server on
// cpp-httplib. One model and one decoding Scheduler are shared by every
// request, so the windows of all requests in flight are decoded together
// (continuous batching across requests).
//
//   POST /v1/audio/transcriptions, /v1/audio/translations  (multipart/form-data)
//   GET  /v1/models, /v1/models/{id}, /health, /metrics, /
//
// Requests are admitted into a bounded queue (--max-queue: uploading,
// preparing or decoding; full -> 429 at once); uploads stream to a
// temporary file (--max-upload-mb -> 413); pass 1 (FFmpeg decode + VAD)
// runs on the request's thread, at most --max-prepare at a time; a client
// that disconnects, or a request that runs past --request-timeout (504),
// cancels its job. SIGTERM/SIGINT: stop accepting, finish what is in
// flight, exit 0.
#pragma once

#include <string>

namespace ama::server {

struct ServerOptions {
  std::string model_path;
  std::string vad_model;          // Silero VAD weights
  std::string host = "127.0.0.1";
  int port = 8080;                // 0: any free port
  int max_batch = 0;              // windows per decoder step; 0: the default
  int max_queue = 16;             // requests admitted at once
  int max_prepare = 2;            // concurrent pass-1 preparations
  double max_upload_mb = 25;      // OpenAI's limit
  std::string api_key;            // empty: no authentication
  double request_timeout = 0;     // seconds; 0: none
  int threads = 0;                // compute threads; 0: all cores
  std::string compute = "auto";
  int beam_size = 5;
  int best_of = 5;
  bool temperature_fallback = true;  // false: each request's temperature alone
};

// Runs until SIGTERM or SIGINT (then drains) or a fatal error. Prints
// "amanuensis: listening on http://HOST:PORT" on stdout once bound.
// Returns the process exit code.
int run_server(const ServerOptions& options);

}  // namespace ama::server
