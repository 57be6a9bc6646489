// Long-form transcription, following openai/whisper transcribe.py with
// greedy decoding: 30 s windows, seeking by the last timestamp, and the
// previous text as a prompt. One Transcriber is one stream: it owns the
// per-stream state (scratch, KV caches) and borrows the shared model.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "audio/mel.h"
#include "backend/backend.h"
#include "core/result.h"
#include "decode/greedy.h"
#include "decode/logit_filters.h"
#include "decode/transcript.h"
#include "engine/stages.h"
#include "model/whisper_model.h"

namespace ama {

struct TranscribeOptions {
  std::string language = "auto";  // a code such as "en", or "auto" to detect
  Task task = Task::transcribe;
  bool timestamps = true;
  bool condition_on_previous_text = true;
  std::string initial_prompt;
  float no_speech_threshold = 0.6f;   // skip a window judged silent ...
  float logprob_threshold = -1.0f;    // ... unless its average log-probability beats this
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

  Result<Transcript> transcribe(const std::vector<float>& audio16k, const TranscribeOptions& options);

  // Encodes one window of normalized mel [n_mels][ld] (3000 frames) and
  // prepares cross-attention for decoding.
  Status encode_window(const float* mel, int ld);
  // The last window's encoder output [n_audio_ctx][n_audio_state].
  Result<std::vector<float>> encoder_output() const;

  // Language probabilities from the current window: the decoder's logits
  // after <|startoftranscript|>, over the language tokens.
  Result<std::string> detect_language();

  // Greedy decoding of the current window, given prompt tokens.
  Result<WindowResult> decode_window(const std::vector<int>& prompt, int language_token, Task task, bool timestamps);

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
  LogitRules rules_ts_, rules_plain_;
};

}  // namespace ama
