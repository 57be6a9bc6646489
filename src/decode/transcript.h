// What a transcription produces: segments, words and language
// probabilities, in the shape of openai/whisper's result dictionary (and of
// OpenAI's verbose_json). Writers: decode/output_formats.h.
#pragma once

#include <string>
#include <vector>

namespace ama {

struct Word {
  std::string word;      // with its leading space, as openai gives it (" Hello,")
  double start = 0, end = 0;  // seconds
  double probability = 0;     // mean probability of its tokens
};

struct Segment {
  double start = 0, end = 0;  // seconds
  std::string text;
  std::vector<int> tokens;    // sampled tokens, timestamps included
  int seek = 0;               // mel frame of the window it came from
  double temperature = 0;     // of the decoding that was kept
  double avg_logprob = 0;
  double compression_ratio = 0;
  double no_speech_prob = 0;
  // A repetition loop survived every fallback temperature and was cut here;
  // such text is never used as a prompt (reported in verbose_json).
  bool repetition_cut = false;
  std::vector<Word> words;    // with --word-timestamps
};

struct LanguageProbability {
  std::string code;  // "en"
  double probability = 0;
};

struct Transcript {
  std::string language;
  // Highest first, at most 5; empty when the language was given, not detected.
  std::vector<LanguageProbability> language_probs;
  double duration = 0;  // seconds of audio
  std::vector<Segment> segments;
  std::string text() const;  // all segment texts joined
};

}  // namespace ama
