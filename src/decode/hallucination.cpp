#include "decode/hallucination.h"

#include <algorithm>
#include <string_view>

#include "decode/timing.h"

namespace ama {

double word_anomaly_score(const Word& w) {
  const double duration = w.end - w.start;
  double score = 0;
  if (w.probability < 0.15) score += 1.0;
  if (duration < 0.133) score += (0.133 - duration) * 15;
  if (duration > 2.0) score += duration - 2.0;
  return score;
}

bool is_segment_anomaly(const Segment* s) {
  if (!s || s->words.empty()) return false;
  // openai tests `word not in punctuation`: a substring test on the joined
  // punctuation marks.
  static const std::string punctuation = std::string(kPrependPunctuations) + kAppendPunctuations;
  double score = 0;
  int n = 0;
  for (const Word& w : s->words) {
    if (!w.word.empty() && punctuation.find(w.word) != std::string::npos) continue;
    if (w.word.empty()) continue;  // "" is in every string
    score += word_anomaly_score(w);
    if (++n == 8) break;
  }
  return score >= 3 || score + 0.01 >= n;
}

const Segment* next_words_segment(const std::vector<Segment>& segments, size_t from) {
  for (size_t i = from; i < segments.size(); ++i)
    if (!segments[i].words.empty()) return &segments[i];
  return nullptr;
}

std::optional<double> last_word_end(const std::vector<Segment>& segments) {
  for (auto it = segments.rbegin(); it != segments.rend(); ++it)
    if (!it->words.empty()) return it->words.back().end;
  return std::nullopt;
}

std::optional<size_t> find_hallucination(const std::vector<Segment>& segments, const HallucinationWindow& w,
                                         double* start) {
  double last_end = w.last_speech;
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& s = segments[i];
    if (s.words.empty()) continue;
    if (is_segment_anomaly(&s)) {
      const Segment* next = next_words_segment(segments, i + 1);
      const double next_start = next ? next->words.front().start : w.time_offset + w.segment_duration;
      const bool silence_before =
          s.start - last_end > w.threshold || s.start < w.threshold || s.start - w.time_offset < 2.0;
      const bool silence_after =
          next_start - s.end > w.threshold || is_segment_anomaly(next) || w.window_end - s.end < 2.0;
      if (silence_before && silence_after) {
        if (start) *start = std::max(w.time_offset + 1, s.start);
        return i;
      }
    }
    last_end = s.end;
  }
  return std::nullopt;
}

}  // namespace ama
