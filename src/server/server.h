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
// runs on the request's thread, at most --max-prepare at a time; decoding
// runs in the shared Scheduler while the request's thread watches the job.
//
// Cancellation: httplib 0.11 does not tell a handler that its client left,
// so the handler finds its connection's socket (by both addresses) and
// polls it (POLLRDHUP, or a zero-byte MSG_PEEK) every 50 ms while it waits
// for a preparation slot or for the job; a client that left sets the job's
// cancel flag (the Scheduler drops its windows at the next step; 499 is
// logged, nobody reads it). stream=true also stops when a write fails.
// --request-timeout S: a request running longer (upload included) is
// cancelled the same way and answered 504 Gateway Timeout, type
// "timeout_error", code "request_timeout" (504 rather than 408: the client
// was not slow, our processing was). Pass 1 itself is not interruptible.
//
// Every audio answer carries X-Processing-Time (s) and openai-processing-ms;
// finished ones also X-Audio-Duration, X-Realtime-Factor (processing
// seconds per audio second, lower is faster), X-Stage-Times
// ("upload=..;wait=..;decode_audio=..;vad=..;mel=..;encode=..;decode=..")
// and X-Model; verbose_json and the stream's final event carry the same in
// an "amanuensis" object. Errors have OpenAI's shape with 400, 401 (/v1/*
// only, when a key is set; /health, /metrics and / stay open), 404, 405,
// 413, 429, 503 (loading or shutting down), 504, 500 (logged to stderr).
//
// SIGTERM/SIGINT: stop accepting (the listening socket is closed), let
// every connection's request finish (httplib's pool is joined), exit 0.
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
