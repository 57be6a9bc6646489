// The bodies the audio endpoints answer with: OpenAI's json ({"text"}),
// text, srt, vtt and verbose_json (with our "amanuensis" object: model,
// processing time, realtime factor, stage times), the server-sent events
// of stream=true, and the timing headers.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/result.h"
#include "decode/pipeline.h"
#include "server/api.h"

namespace ama::server {

// How long a request took, for headers and the "amanuensis" object.
struct RequestTiming {
  std::string model;           // the name the client asked for (or the loaded model's)
  double processing_s = 0;     // the request's wall time so far (upload included)
  double upload_s = 0;         // receiving the upload
  double wait_s = 0;           // waiting for a preparation slot
  double audio_s = 0;          // audio duration
  StageTimes stages;           // decode_audio, vad, mel, encode, decode
  int windows = 0, decoded_tokens = 0, fallbacks = 0;
  // processing seconds per second of audio (0 without audio)
  double realtime_factor() const { return audio_s > 0 ? processing_s / audio_s : 0; }
};

// "X-Processing-Time", "X-Realtime-Factor", "X-Stage-Times", ... (name, value).
std::vector<std::pair<std::string, std::string>> timing_headers(const RequestTiming& t, bool finished);

// The response body and its Content-Type for a finished transcription.
struct Body {
  std::string content_type;
  std::string text;
};
Result<Body> format_response(const AudioRequest& r, const Transcript& t, const RequestTiming& timing);

// Server-sent events (each "data: {...}\n\n").
std::string sse_delta(const Segment& s, int index);
std::string sse_done(const Transcript& t, const RequestTiming& timing, Task task);
std::string sse_error(const ApiError& e);

}  // namespace ama::server
