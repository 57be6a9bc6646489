#include "decode/output_formats.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "text/languages.h"

namespace ama {

namespace {

using ojson = nlohmann::ordered_json;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// A cue's text must not contain the arrow that separates cue times (also
// not after a replacement: "--->" -> "-->" -> "->").
std::string without_arrows(std::string s) {
  for (size_t p; (p = s.find("-->")) != std::string::npos;) s.replace(p, 3, "->");
  return s;
}

// Python's len() of a str: code points (the text is valid UTF-8 here).
int code_points(std::string_view s) {
  int n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// Seconds rounded to whole milliseconds, half to even (Python's round()).
// Not finite or negative: 0.
long long milliseconds(double seconds) {
  if (!std::isfinite(seconds) || seconds <= 0) return 0;
  return static_cast<long long>(std::nearbyint(std::min(seconds, 1e12) * 1000.0));
}

// A time for json: the double nearest the millisecond (1.2, not 1.2000000000000002).
double json_time(double seconds) { return static_cast<double>(milliseconds(seconds)) / 1000.0; }

bool has_words(const Transcript& t) {
  return std::any_of(t.segments.begin(), t.segments.end(), [](const Segment& s) { return !s.words.empty(); });
}

struct Timing {
  std::string word;
  double start, end;
};

// openai's SubtitlesWriter.iterate_result.iterate_subtitles: words grouped
// into subtitles, lines broken with '\n'.
std::vector<std::vector<Timing>> group_words(const Transcript& t, const WriterOptions& o) {
  const bool preserve_segments = o.max_line_count == 0 || o.max_line_width == 0;
  const int max_line_width = o.max_line_width > 0 ? o.max_line_width : 1000;
  const size_t max_words = o.max_words_per_line > 0 ? static_cast<size_t>(o.max_words_per_line) : 1000;

  std::vector<std::vector<Timing>> out;
  std::vector<Timing> subtitle;
  int line_len = 0, line_count = 1;
  double last = t.segments.empty() ? 0.0 : t.segments.front().start;
  for (const Segment& s : t.segments)
    if (!s.words.empty()) {
      last = s.words.front().start;
      break;
    }
  for (const Segment& seg : t.segments) {
    const size_t n = seg.words.size();
    for (size_t chunk = 0; chunk < n; chunk += max_words) {
      const size_t count = std::min(max_words, n - chunk);
      for (size_t i = 0; i < count; ++i) {
        const Word& w = seg.words[chunk + i];
        Timing timing{sanitize_utf8(w.word), w.start, w.end};
        const bool long_pause = !preserve_segments && timing.start - last > 3.0;
        const bool has_room = line_len + code_points(timing.word) <= max_line_width;
        const bool seg_break = i == 0 && !subtitle.empty() && preserve_segments;
        if (line_len > 0 && has_room && !long_pause && !seg_break) {
          line_len += code_points(timing.word);  // the line goes on
        } else {
          timing.word = strip(timing.word);  // a new line
          if ((!subtitle.empty() && o.max_line_count > 0 && (long_pause || line_count >= o.max_line_count)) ||
              seg_break) {
            out.push_back(std::move(subtitle));  // a new subtitle
            subtitle.clear();
            line_count = 1;
          } else if (line_len > 0) {
            ++line_count;  // a line break
            timing.word = "\n" + timing.word;
          }
          line_len = code_points(strip(timing.word));
        }
        last = timing.start;
        subtitle.push_back(std::move(timing));
      }
    }
  }
  if (!subtitle.empty()) out.push_back(std::move(subtitle));
  return out;
}

// re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", word)
std::string underlined(const std::string& word) {
  size_t b = 0;
  while (b < word.size() && is_space(word[b])) ++b;
  return word.substr(0, b) + "<u>" + word.substr(b) + "</u>";
}

std::string srt(const std::vector<Cue>& cues) {
  std::string out;
  int i = 1;
  for (const Cue& c : cues)
    out += std::to_string(i++) + "\n" + format_timestamp(c.start, ',', true) + " --> " +
           format_timestamp(c.end, ',', true) + "\n" + c.text + "\n\n";
  return out;
}

std::string vtt(const std::vector<Cue>& cues) {
  std::string out = "WEBVTT\n\n";
  for (const Cue& c : cues)
    out += format_timestamp(c.start, '.', false) + " --> " + format_timestamp(c.end, '.', false) + "\n" + c.text + "\n\n";
  return out;
}

std::string tsv(const Transcript& t) {
  std::string out = "start\tend\ttext\n";
  for (const Segment& s : t.segments) {
    std::string text = strip(sanitize_utf8(s.text));
    // A tab would split the column, a line break the row.
    std::replace_if(text.begin(), text.end(), [](char c) { return c == '\t' || c == '\n' || c == '\r'; }, ' ');
    out += std::to_string(milliseconds(s.start)) + "\t" + std::to_string(milliseconds(s.end)) + "\t" + text + "\n";
  }
  return out;
}

ojson word_json(const Word& w) {
  return {{"word", w.word}, {"start", json_time(w.start)}, {"end", json_time(w.end)}, {"probability", w.probability}};
}

ojson segment_json(const Segment& s, int id) {
  ojson j = {{"id", id},
             {"seek", s.seek},
             {"start", json_time(s.start)},
             {"end", json_time(s.end)},
             {"text", s.text},
             {"tokens", s.tokens},
             {"temperature", s.temperature},
             {"avg_logprob", s.avg_logprob},
             {"compression_ratio", s.compression_ratio},
             {"no_speech_prob", s.no_speech_prob}};
  if (s.repetition_cut) j["repetition_cut"] = true;
  if (!s.words.empty()) {
    j["words"] = ojson::array();
    for (const Word& w : s.words) j["words"].push_back(word_json(w));
  }
  return j;
}

// {"en": 0.97, "de": 0.01, ...}, highest first.
ojson language_probs_json(const Transcript& t) {
  ojson j = ojson::object();
  for (size_t i = 0; i < t.language_probs.size() && i < 5; ++i)
    j[t.language_probs[i].code] = t.language_probs[i].probability;
  return j;
}

ojson segments_json(const Transcript& t) {
  ojson j = ojson::array();
  int id = 0;
  for (const Segment& s : t.segments) j.push_back(segment_json(s, id++));
  return j;
}

std::string dump(const ojson& j, int indent) {
  // Invalid UTF-8 should not occur (the tokenizer replaces it), but never throw.
  return j.dump(indent, ' ', false, ojson::error_handler_t::replace) + "\n";
}

// openai's result dictionary (plus duration and language_probs).
std::string json(const Transcript& t) {
  ojson j;
  j["text"] = t.text();
  j["language"] = t.language;
  j["duration"] = json_time(t.duration);
  if (!t.language_probs.empty()) j["language_probs"] = language_probs_json(t);
  j["segments"] = segments_json(t);
  return dump(j, 2);
}

// The OpenAI API's response_format=verbose_json.
std::string verbose_json(const Transcript& t, Task task) {
  ojson j;
  j["task"] = task == Task::translate ? "translate" : "transcribe";
  const std::string name = language_name(t.language);
  j["language"] = name.empty() ? t.language : name;
  j["duration"] = json_time(t.duration);
  j["text"] = strip(t.text());
  j["segments"] = segments_json(t);
  if (has_words(t)) {
    j["words"] = ojson::array();
    for (const Segment& s : t.segments)
      for (const Word& w : s.words) j["words"].push_back(word_json(w));
  }
  if (!t.language_probs.empty()) j["language_probs"] = language_probs_json(t);
  return dump(j, 2);
}

}  // namespace

Status WriterOptions::validate() const {
  constexpr int kMax = 100000;
  auto check = [](const char* name, int v) -> Status {
    if (v < 0) return make_error(std::string(name) + " must not be negative (0: no limit), got " + std::to_string(v));
    if (v > kMax) return make_error(std::string(name) + " is absurdly large: " + std::to_string(v));
    return {};
  };
  AMA_TRY(check("max_line_width", max_line_width));
  AMA_TRY(check("max_line_count", max_line_count));
  AMA_TRY(check("max_words_per_line", max_words_per_line));
  return {};
}

bool WriterOptions::uses_words() const {
  return max_line_width > 0 || max_line_count > 0 || highlight_words || max_words_per_line > 0;
}

const std::vector<std::string>& output_format_names() {
  static const std::vector<std::string> names = {"txt", "srt", "vtt", "tsv", "json", "verbose_json"};
  return names;
}

Result<std::vector<std::string>> parse_output_formats(std::string_view list) {
  std::vector<std::string> out;
  auto add = [&out](const std::string& f) {
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  };
  size_t b = 0;
  while (b <= list.size()) {
    size_t e = list.find(',', b);
    if (e == std::string_view::npos) e = list.size();
    std::string name = strip(list.substr(b, e - b));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    b = e + 1;
    if (name.empty()) continue;
    if (name == "all") {
      for (const std::string& f : output_format_names()) add(f);
    } else if (std::find(output_format_names().begin(), output_format_names().end(), name) !=
               output_format_names().end()) {
      add(name);
    } else {
      return make_error("unknown output format '" + name + "' (known: txt, srt, vtt, tsv, json, verbose_json, all)");
    }
  }
  if (out.empty()) return make_error("no output format given (txt, srt, vtt, tsv, json, verbose_json, all)");
  return out;
}

std::string output_format_extension(const std::string& format) {
  return format == "verbose_json" ? "verbose.json" : format;
}

std::string format_timestamp(double seconds, char decimal_marker, bool always_include_hours) {
  long long ms = milliseconds(seconds);
  const long long h = ms / 3600000;
  ms -= h * 3600000;
  const long long m = ms / 60000;
  ms -= m * 60000;
  const long long s = ms / 1000;
  ms -= s * 1000;
  char buf[96];
  if (always_include_hours || h > 0)
    std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld%c%03lld", h, m, s, decimal_marker, ms);
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld%c%03lld", m, s, decimal_marker, ms);
  return buf;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      ok = k == 1 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::vector<Cue> subtitle_cues(const Transcript& t, const WriterOptions& o) {
  std::vector<Cue> cues;
  if (!has_words(t)) {
    for (const Segment& s : t.segments) cues.push_back({s.start, s.end, without_arrows(strip(sanitize_utf8(s.text)))});
    return cues;
  }
  for (const std::vector<Timing>& sub : group_words(t, o)) {
    std::string text;
    for (const Timing& w : sub) text += w.word;
    if (!o.highlight_words) {
      cues.push_back({sub.front().start, sub.back().end, without_arrows(text)});
      continue;
    }
    // One cue per word with that word underlined, and the plain text in
    // the gaps between words (compared as printed: in milliseconds).
    double last = sub.front().start;
    for (size_t i = 0; i < sub.size(); ++i) {
      if (milliseconds(last) != milliseconds(sub[i].start)) cues.push_back({last, sub[i].start, without_arrows(text)});
      std::string marked;
      for (size_t j = 0; j < sub.size(); ++j) marked += j == i ? underlined(sub[j].word) : sub[j].word;
      cues.push_back({sub[i].start, sub[i].end, without_arrows(marked)});
      last = sub[i].end;
    }
  }
  return cues;
}

Result<std::string> format_transcript(const Transcript& t, const std::string& format, const WriterOptions& options,
                                      Task task) {
  if (Status s = options.validate(); !s) return s.error();
  if (format == "txt") {
    std::string out;
    for (const Segment& s : t.segments) out += strip(sanitize_utf8(s.text)) + "\n";
    return out;
  }
  if (format == "srt") return srt(subtitle_cues(t, options));
  if (format == "vtt") return vtt(subtitle_cues(t, options));
  if (format == "tsv") return tsv(t);
  if (format == "json") return json(t);
  if (format == "verbose_json") return verbose_json(t, task);
  return make_error("unknown output format '" + format + "' (known: txt, srt, vtt, tsv, json, verbose_json)");
}

}  // namespace ama
