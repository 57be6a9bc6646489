// The OpenAI audio API's parameters and errors: see api.h.
#include "server/api.h"

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace ama::server {

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Shortened and made printable, for quoting a client's value in a message.
std::string printable(std::string_view s) {
  std::string r;
  for (char c : s.substr(0, 64)) r += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  if (s.size() > 64) r += "...";
  return r;
}
std::string quote(std::string_view s) { return "'" + printable(s) + "'"; }

}  // namespace

std::string error_json(const ApiError& e) {
  nlohmann::ordered_json j;
  j["error"]["message"] = e.message;
  j["error"]["type"] = e.type;
  j["error"]["param"] = e.param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.param);
  j["error"]["code"] = e.code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.code);
  // Client text may hold invalid UTF-8: replace it rather than throw.
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

ApiError bad_request(std::string message, std::string param, std::string code) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

ApiError internal_error(std::string message) {
  ApiError e;
  e.status = 500;
  e.type = "server_error";
  e.message = std::move(message);
  return e;
}

std::vector<float> temperature_schedule(float t) {
  std::vector<float> out;
  for (int i = 0;; ++i) {
    const double v = static_cast<double>(t) + 0.2 * i;
    if (v > 1.0 + 1e-6) break;
    out.push_back(static_cast<float>(v));
  }
  if (out.empty()) out.push_back(t);
  return out;
}

DecodingOptions request_decoding(const AudioRequest& r, const DecodingOptions& defaults, bool fallback) {
  DecodingOptions d = defaults;
  d.temperatures = fallback ? temperature_schedule(r.temperature) : std::vector<float>{r.temperature};
  return d;
}

ParseResult parse_audio_request(Endpoint endpoint, const FormFields& fields, bool has_file) {
  ParseResult out;
  AudioRequest r;
  r.endpoint = endpoint;
  auto fail = [&](ApiError e) {
    out.error = std::move(e);
    return out;
  };
  std::vector<std::string> seen;
  for (const auto& [name, raw] : fields) {
    const bool repeatable = name == "timestamp_granularities[]" || name == "timestamp_granularities";
    if (!repeatable) {
      for (const auto& s : seen)
        if (s == name) return fail(bad_request("Duplicate parameter: " + name, name));
      seen.push_back(name);
    }
    const std::string value = trim(raw);
    if (name == "model") {
      r.model = value;
    } else if (name == "language" && endpoint == Endpoint::transcriptions) {
      if (value.size() > 64) return fail(bad_request("Invalid language " + quote(value), "language"));
      r.language = value;
    } else if (name == "prompt") {
      r.prompt = raw;
    } else if (name == "response_format") {
      const std::string f = lower(value);
      if (f != "json" && f != "text" && f != "srt" && f != "verbose_json" && f != "vtt")
        return fail(bad_request("Invalid response_format " + quote(value) +
                                    ": must be one of json, text, srt, verbose_json, vtt",
                                "response_format"));
      r.response_format = f;
    } else if (name == "temperature") {
      char* end = nullptr;
      const float t = value.empty() ? NAN : std::strtof(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !std::isfinite(t))
        return fail(bad_request("Invalid temperature " + quote(value) + ": must be a number", "temperature"));
      if (t < 0 || t > 1)
        return fail(bad_request("Invalid temperature " + quote(value) + ": must be between 0 and 1", "temperature"));
      r.temperature = t;
    } else if (repeatable) {
      r.granularities_given = true;
      const std::string g = lower(value);
      if (g == "word") r.word_timestamps = true;
      else if (g == "segment") r.segment_timestamps = true;
      else
        return fail(bad_request("Invalid timestamp_granularities[] value " + quote(value) + ": must be word or segment",
                                "timestamp_granularities"));
    } else if (name == "stream") {
      const std::string s = lower(value);
      if (s == "true" || s == "1") r.stream = true;
      else if (s == "false" || s == "0") r.stream = false;
      else return fail(bad_request("Invalid stream " + quote(value) + ": must be true or false", "stream"));
    } else {
      return fail(bad_request("Unrecognized request argument supplied: " + printable(name), name,
                              "unknown_parameter"));
    }
  }
  if (!has_file) return fail(bad_request("Missing required parameter: 'file'", "file"));
  if (r.granularities_given && r.response_format != "verbose_json")
    return fail(bad_request("timestamp_granularities[] is only supported with response_format=verbose_json",
                            "timestamp_granularities"));
  out.request = std::move(r);
  return out;
}

std::optional<std::string> bearer_token(std::string_view authorization) {
  std::string_view a = authorization;
  while (!a.empty() && a.front() == ' ') a.remove_prefix(1);
  if (a.size() < 7 || lower(a.substr(0, 7)) != "bearer ") return std::nullopt;
  a.remove_prefix(7);
  while (!a.empty() && a.front() == ' ') a.remove_prefix(1);
  while (!a.empty() && a.back() == ' ') a.remove_suffix(1);
  if (a.empty()) return std::nullopt;
  return std::string(a);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (b.empty()) return a.empty();
  size_t diff = a.size() ^ b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % b.size()]);
  return diff == 0;
}

}  // namespace ama::server
