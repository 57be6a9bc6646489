// openai/whisper transcribe.py's --hallucination_silence_threshold: with
// word timestamps, a segment whose first words look anomalous (improbable,
// very short or very long) and that is surrounded by silence longer than
// the threshold is taken for a hallucination, and the window is cut before
// it. Shared by the sequential loop (which then seeks past the silence) and
// the batched pipeline (which has no seeking and only drops the segments).
#pragma once

#include <optional>
#include <vector>

#include "decode/transcript.h"

namespace ama {

// openai's word_anomaly_score and is_segment_anomaly (the first 8 words
// that are not punctuation).
double word_anomaly_score(const Word& w);
bool is_segment_anomaly(const Segment* s);

struct HallucinationWindow {
  double threshold;           // seconds of silence
  double time_offset;         // window start, seconds
  double window_end;          // time_offset + 30 s
  double segment_duration;    // seconds of content in this window
  double last_speech;         // end of the speech before this window
};

// The index of the first segment to drop: a likely hallucination with
// silence (or more anomalies) before and after it; nullopt if none.
// `start` receives where the next window should start (seconds), as openai:
// max(time_offset + 1, segment start).
std::optional<size_t> find_hallucination(const std::vector<Segment>& segments, const HallucinationWindow& w,
                                         double* start = nullptr);

// The first segment that has words, or nullptr.
const Segment* next_words_segment(const std::vector<Segment>& segments, size_t from = 0);

// The end of the last word of the segments, if any has words.
std::optional<double> last_word_end(const std::vector<Segment>& segments);

}  // namespace ama
