#include "decode/output_formats.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace ama {

namespace {

std::string strip(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n\r"), e = s.find_last_not_of(" \t\n\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// A cue's text must not contain the arrow that separates cue times.
std::string cue_text(const std::string& s) {
  std::string t = strip(s);
  for (size_t p; (p = t.find("-->")) != std::string::npos;) t.replace(p, 3, "->");
  return t;
}

}  // namespace

const std::vector<std::string>& output_format_names() {
  static const std::vector<std::string> names = {"txt", "srt", "vtt", "json"};
  return names;
}

std::string format_timestamp(double seconds, char decimal_marker) {
  long long ms = std::llround(std::max(0.0, seconds) * 1000.0);
  const long long h = ms / 3600000;
  ms -= h * 3600000;
  const long long m = ms / 60000;
  ms -= m * 60000;
  const long long s = ms / 1000;
  ms -= s * 1000;
  char buf[96];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld%c%03lld", h, m, s, decimal_marker, ms);
  return buf;
}

Result<std::string> format_transcript(const Transcript& t, const std::string& format) {
  std::string out;
  if (format == "txt") {
    for (const Segment& s : t.segments) out += strip(s.text) + "\n";
  } else if (format == "srt") {
    int i = 1;
    for (const Segment& s : t.segments) {
      out += std::to_string(i++) + "\n" + format_timestamp(s.start, ',') + " --> " + format_timestamp(s.end, ',') +
             "\n" + cue_text(s.text) + "\n\n";
    }
  } else if (format == "vtt") {
    out = "WEBVTT\n\n";
    for (const Segment& s : t.segments)
      out += format_timestamp(s.start, '.') + " --> " + format_timestamp(s.end, '.') + "\n" + cue_text(s.text) + "\n\n";
  } else if (format == "json") {
    nlohmann::json j;
    j["text"] = t.text();
    j["language"] = t.language;
    j["duration"] = t.duration;
    j["segments"] = nlohmann::json::array();
    int id = 0;
    for (const Segment& s : t.segments) {
      j["segments"].push_back({{"id", id++},
                               {"seek", s.seek},
                               {"start", s.start},
                               {"end", s.end},
                               {"text", s.text},
                               {"tokens", s.tokens},
                               {"avg_logprob", s.avg_logprob},
                               {"no_speech_prob", s.no_speech_prob}});
    }
    // Invalid UTF-8 cannot occur (the tokenizer replaces it), but never throw.
    out = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  } else {
    return make_error("unknown output format '" + format + "' (known: txt, srt, vtt, json)");
  }
  return out;
}

}  // namespace ama
