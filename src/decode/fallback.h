// Temperature fallback for one window (openai/whisper transcribe.py's
// decode_with_fallback) as a state machine over WindowSearch runs, so that
// it too runs inside batched decoder steps: a window decoded at 0.0 whose
// text is too repetitive (gzip compression ratio > 2.4) or too improbable
// (average log-probability < -1.0) is decoded again at 0.2, 0.4, ... 1.0,
// unless it is judged silent. A repetition loop that survives every
// temperature is cut after its first occurrence and flagged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "decode/search.h"

namespace ama {

struct DecodingOptions {
  std::vector<float> temperatures{0.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f};
  int beam_size = 5;          // at temperature 0; 1 is greedy
  int best_of = 5;            // samples at temperatures > 0
  float patience = 1;
  float length_penalty = -1;  // < 0: openai's None
  std::optional<float> compression_ratio_threshold = 2.4f;
  std::optional<float> logprob_threshold = -1.0f;
  std::optional<float> no_speech_threshold = 0.6f;
  uint64_t seed = 0;

  // One greedy pass at temperature 0, no fallback (benchmarks of the model
  // workload, and tests of other things).
  static DecodingOptions greedy() {
    DecodingOptions o;
    o.temperatures = {0.0f};
    o.beam_size = 1;
    o.best_of = 1;
    return o;
  }
};
Status validate(const DecodingOptions& o);

// len(text) / len(zlib.compress(text)) of the UTF-8 bytes, as openai.
double compression_ratio(const std::string& text);

// Cuts a repetition loop: finds the periodic run of text tokens (period up
// to 64 tokens, repeated at least 3 times) covering the most tokens, and
// keeps tokens up to the end of its first period. Timestamp tokens inside
// the loop are skipped when comparing. False if there is no such run.
bool cut_repetition(const Tokenizer& tok, std::vector<int>& tokens);

struct WindowOutcome {
  WindowResult result;            // the decoding kept
  double temperature = 0;         // at which it was decoded
  double compression_ratio = 0;
  bool repetition_cut = false;    // a loop survived every temperature and was cut
  bool no_speech = false;         // judged silent: the window gives no text
  int attempts = 0;               // temperatures tried
  int forks = 0;                  // hypothesis forks over all attempts
};

class WindowDecode {
 public:
  // seed: this window's own seed (so samples do not depend on batching).
  static Result<std::unique_ptr<WindowDecode>> start(DecoderStage& stage, std::shared_ptr<const EncoderState> encoder,
                                                     const Tokenizer& tok, const LogitRules& rules,
                                                     const WindowRequest& request, const DecodingOptions& options,
                                                     uint64_t seed);
  void inputs(std::vector<DecoderStage::Input>& batch) const;
  Status on_logits(float* rows);
  bool done() const { return done_; }
  const WindowOutcome& outcome() const { return outcome_; }

 private:
  WindowDecode(DecoderStage& stage, std::shared_ptr<const EncoderState> encoder, const Tokenizer& tok,
               const LogitRules& rules, const WindowRequest& request, const DecodingOptions& options, uint64_t seed);
  Status begin_attempt();
  void judge();

  DecoderStage& stage_;
  std::shared_ptr<const EncoderState> encoder_;
  const Tokenizer& tok_;
  const LogitRules& rules_;
  WindowRequest req_;
  DecodingOptions opt_;
  uint64_t seed_;
  size_t t_index_ = 0;
  std::unique_ptr<WindowSearch> search_;
  bool done_ = false;
  WindowOutcome outcome_;
};

}  // namespace ama
