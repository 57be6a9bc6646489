// Long-form transcription, following openai/whisper transcribe.py with
// greedy decoding: 30 s windows, seeking by the last timestamp, and the
// previous text as a prompt. One Transcriber is one stream: it owns the
// per-stream state (scratch, KV caches) and borrows the shared model.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audio/mel.h"
#include "backend/backend.h"
#include "core/result.h"
#include "decode/fallback.h"
#include "decode/search.h"
#include "decode/logit_filters.h"
#include "decode/transcript.h"
#include "engine/stages.h"
#include "model/whisper_model.h"

namespace ama {

// Options shared by both long-form modes (sequential and batched).
struct TranscribeOptions {
  std::string language = "auto";  // a code or English name ("en", "English"), or "auto" to detect
  Task task = Task::transcribe;
  bool timestamps = true;
  bool word_timestamps = false;
  // Sequential mode: the previous window's text is the next one's prompt
  // (batched chunks are never conditioned on each other).
  bool condition_on_previous_text = true;
  std::string initial_prompt;     // the first window's prompt (batched: every chunk's)
  std::string prefix;             // forced start of the first window's text
  std::string suppress_tokens = "-1";
  float max_initial_timestamp = 1.0f;  // seconds; < 0: no limit
  // openai's hallucination_silence_threshold (seconds; needs word
  // timestamps): skip silence longer than this around a likely hallucination.
  std::optional<float> hallucination_silence_threshold;
  DecodingOptions decoding;       // strategy, temperature fallback, thresholds, seed
  std::function<void(double done_seconds, double total_seconds)> on_progress;
};


// Splits one window's sampled tokens into segments at pairs of consecutive
// timestamps (openai transcribe.py), and gives the mel frame to seek to next.
struct WindowSegments {
  std::vector<Segment> segments;
  int next_seek = 0;
};
WindowSegments split_window(const Tokenizer& tok, const std::vector<int>& tokens, int seek, int segment_size,
                            bool timestamps);

// The language token for a requested language ("auto" or "": -1, to be
// detected; English-only models: -1 and "en" only), checked against the
// model and the task. Both long-form modes use it.
Result<int> requested_language_token(const Tokenizer& tok, const std::string& language, Task task);

// The logit rules of the options (timestamps, suppressed tokens, the max
// initial timestamp).
Result<LogitRules> logit_rules_for(const Tokenizer& tok, const TranscribeOptions& o);

// s without leading and trailing ASCII whitespace.
std::string trim_whitespace(const std::string& s);

class Engine;

// OpenAI's sequential long-form mode: one window at a time, seeking by the
// last timestamp and conditioning on the previous text. Holds the whole
// audio (openai normalizes the log-mel by the global max of the file); the
// batched pipeline (decode/pipeline.h) is the default and streams instead.
class Transcriber {
 public:
  // On the engine's stages.
  explicit Transcriber(const Engine& engine);
  // On CPU stages over a model packed for `backend`.
  Transcriber(std::shared_ptr<const WhisperModel> model, Backend& backend);
  // On any stages (a device backend's, or scripted ones in tests); the
  // model gives the tokenizer, the mel filters and the shapes.
  Transcriber(std::shared_ptr<const WhisperModel> model, std::unique_ptr<EncoderStage> encoder,
              std::unique_ptr<DecoderStage> decoder);

  Result<Transcript> transcribe(const std::vector<float>& audio16k, const TranscribeOptions& options);

  // Encodes one window of normalized mel [n_mels][ld] (3000 frames) and
  // prepares cross-attention for decoding.
  Status encode_window(const float* mel, int ld);
  // The last window's encoder output [n_audio_ctx][n_audio_state].
  Result<std::vector<float>> encoder_output() const;

  // Language probabilities from the current window (the decoder's logits
  // after <|startoftranscript|>, softmax over the language tokens), highest
  // first; English-only models: {"en", 1}.
  Result<std::vector<LanguageProbability>> detect_language();

  // One window (the current one) decoded with temperature fallback.
  Result<WindowOutcome> decode_window(const WindowRequest& request, const LogitRules& rules,
                                      const DecodingOptions& options, uint64_t seed);

  // Logits for the given tokens fed from position 0: [n][n_vocab].
  Result<std::vector<float>> logits_for(const std::vector<int>& tokens);

 private:
  Result<DecoderStage::SeqId> fresh_sequence();

  std::shared_ptr<const WhisperModel> model_;
  std::unique_ptr<EncoderStage> encoder_;
  std::unique_ptr<DecoderStage> decoder_;
  std::shared_ptr<const EncoderState> state_;
  DecoderStage::SeqId seq_ = -1;
  LogMel mel_;
};

}  // namespace ama
