// Response bodies and timing headers: see responses.h.
#include "server/responses.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "decode/output_formats.h"

namespace ama::server {

namespace {

using ojson = nlohmann::ordered_json;

std::string fixed(double v, int digits = 3) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

double round_to(double v, int digits) {
  const double p = std::pow(10.0, digits);
  return std::round(v * p) / p;
}

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string dump(const ojson& j, int indent = -1) {
  return j.dump(indent, ' ', false, ojson::error_handler_t::replace);
}

ojson timing_json(const RequestTiming& t) {
  ojson j;
  j["model"] = t.model;
  j["processing_time"] = round_to(t.processing_s, 4);
  j["audio_duration"] = round_to(t.audio_s, 3);
  j["realtime_factor"] = round_to(t.realtime_factor(), 5);
  ojson s;
  s["upload"] = round_to(t.upload_s, 4);
  s["wait"] = round_to(t.wait_s, 4);
  s["decode_audio"] = round_to(t.stages.decode_audio, 4);
  s["vad"] = round_to(t.stages.vad, 4);
  s["mel"] = round_to(t.stages.mel, 4);
  s["encode"] = round_to(t.stages.encode, 4);
  s["decode"] = round_to(t.stages.decode, 4);
  j["stage_times"] = s;
  j["windows"] = t.windows;
  j["decoded_tokens"] = t.decoded_tokens;
  j["fallbacks"] = t.fallbacks;
  return j;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> timing_headers(const RequestTiming& t, bool finished) {
  std::vector<std::pair<std::string, std::string>> h;
  h.emplace_back("X-Processing-Time", fixed(t.processing_s, 4));
  h.emplace_back("openai-processing-ms", std::to_string(static_cast<long long>(std::llround(t.processing_s * 1000))));
  if (!t.model.empty()) {
    std::string m = t.model.substr(0, 200);  // the client's text: printable ASCII only in a header
    for (char& c : m)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    h.emplace_back("X-Model", m);
  }
  if (!finished) return h;
  h.emplace_back("X-Audio-Duration", fixed(t.audio_s, 3));
  h.emplace_back("X-Realtime-Factor", fixed(t.realtime_factor(), 5));
  h.emplace_back("X-Stage-Times", "upload=" + fixed(t.upload_s, 4) + ";wait=" + fixed(t.wait_s, 4) +
                                      ";decode_audio=" + fixed(t.stages.decode_audio, 4) +
                                      ";vad=" + fixed(t.stages.vad, 4) + ";mel=" + fixed(t.stages.mel, 4) +
                                      ";encode=" + fixed(t.stages.encode, 4) + ";decode=" + fixed(t.stages.decode, 4));
  return h;
}

Result<Body> format_response(const AudioRequest& r, const Transcript& t, const RequestTiming& timing) {
  const Task task = r.endpoint == Endpoint::translations ? Task::translate : Task::transcribe;
  if (r.response_format == "json") {
    ojson j;
    j["text"] = strip(t.text());
    ojson usage;
    usage["type"] = "duration";
    usage["seconds"] = static_cast<long long>(std::ceil(t.duration));
    j["usage"] = usage;
    return Body{"application/json", dump(j)};
  }
  if (r.response_format == "text") return Body{"text/plain; charset=utf-8", sanitize_utf8(strip(t.text())) + "\n"};
  if (r.response_format == "srt" || r.response_format == "vtt") {
    auto s = format_transcript(t, r.response_format, {}, task);
    if (!s) return s.error();
    return Body{r.response_format == "vtt" ? "text/vtt; charset=utf-8" : "text/plain; charset=utf-8", *s};
  }
  if (r.response_format == "verbose_json") {
    auto s = format_transcript(t, "verbose_json", {}, task);
    if (!s) return s.error();
    ojson j = ojson::parse(*s, nullptr, false);
    if (j.is_discarded()) return make_error("verbose_json writer produced invalid JSON");
    // OpenAI: segments unless only word granularity was asked for; words only when asked for.
    if (r.granularities_given && !r.segment_timestamps) j.erase("segments");
    if (!r.word_timestamps) j.erase("words");
    else if (!j.contains("words")) j["words"] = ojson::array();
    j["amanuensis"] = timing_json(timing);
    return Body{"application/json", dump(j, 2)};
  }
  return make_error("unknown response_format " + r.response_format);
}

std::string sse_delta(const Segment& s, int index) {
  ojson j;
  j["type"] = "transcript.text.delta";
  j["delta"] = s.text;
  j["id"] = index;
  j["start"] = round_to(s.start, 3);
  j["end"] = round_to(s.end, 3);
  j["text"] = strip(s.text);
  j["avg_logprob"] = s.avg_logprob;
  j["compression_ratio"] = s.compression_ratio;
  j["no_speech_prob"] = s.no_speech_prob;
  j["temperature"] = s.temperature;
  if (!s.words.empty()) {
    ojson words = ojson::array();
    for (const Word& w : s.words) {
      ojson wj;
      wj["word"] = w.word;
      wj["start"] = round_to(w.start, 3);
      wj["end"] = round_to(w.end, 3);
      wj["probability"] = w.probability;
      words.push_back(wj);
    }
    j["words"] = words;
  }
  return "data: " + dump(j) + "\n\n";
}

std::string sse_done(const Transcript& t, const RequestTiming& timing, Task task) {
  ojson j;
  j["type"] = "transcript.text.done";
  j["text"] = strip(t.text());
  j["task"] = task == Task::translate ? "translate" : "transcribe";
  j["language"] = t.language;
  j["duration"] = round_to(t.duration, 3);
  j["segments"] = static_cast<long long>(t.segments.size());
  j["amanuensis"] = timing_json(timing);
  return "data: " + dump(j) + "\n\n";
}

std::string sse_error(const ApiError& e) {
  ojson j = ojson::parse(error_json(e));
  j["type"] = "error";
  j["status"] = e.status;
  return "data: " + dump(j) + "\n\n";
}

}  // namespace ama::server
