// The OpenAI audio API's request parameters and error shapes, as pure
// functions (no sockets, no model): the server calls them, and so do the
// tests and the libFuzzer target (fuzz/fuzz_request.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "decode/fallback.h"

namespace ama::server {

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
};
std::string error_json(const ApiError& e);
ApiError bad_request(std::string message, std::string param = {}, std::string code = {});
// 500, type server_error: a fault of ours.
ApiError internal_error(std::string message);

enum class Endpoint { transcriptions, translations };

// A form field that is not the file (name, value).
using FormFields = std::vector<std::pair<std::string, std::string>>;

// The parameters of POST /v1/audio/transcriptions and /translations.
struct AudioRequest {
  Endpoint endpoint = Endpoint::transcriptions;
  std::string model;               // as given (any name; reported back)
  std::string language;            // empty: detect (transcriptions only)
  std::string prompt;
  std::string response_format = "json";  // json, text, srt, verbose_json, vtt
  float temperature = 0;           // OpenAI: 0 = automatic fallback from 0
  bool word_timestamps = false;    // timestamp_granularities[] has "word"
  bool segment_timestamps = false; // timestamp_granularities[] has "segment"
  bool granularities_given = false;
  bool stream = false;             // beyond OpenAI: server-sent events per segment
};

// Checks the fields (every one known, each value valid, no duplicates but
// timestamp_granularities[]) and fills an AudioRequest. `has_file`: the form
// had a `file` part. Unknown fields are errors naming them, as OpenAI.
struct ParseResult {
  std::optional<AudioRequest> request;
  ApiError error;
};
ParseResult parse_audio_request(Endpoint endpoint, const FormFields& fields, bool has_file);

// OpenAI's temperature semantics as a fallback schedule: 0 -> 0, 0.2, ..,
// 1.0; t > 0 -> t, t + 0.2, .. up to 1.0.
std::vector<float> temperature_schedule(float t);

// The decoding options of a request: the server's defaults (beam size,
// best_of, thresholds) with the request's temperature schedule (without
// `fallback`: the request's temperature alone).
DecodingOptions request_decoding(const AudioRequest& r, const DecodingOptions& defaults, bool fallback = true);

// The bearer token of an Authorization header ("Bearer KEY"), or nullopt.
std::optional<std::string> bearer_token(std::string_view authorization);
// Compares in time independent of where the strings first differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace ama::server
