// Greedy decoding of one 30 s window as a state machine over decoder steps,
// so that the sequential transcriber (one sequence at a time) and the
// batched pipeline (many sequences per DecoderStage step) run the same
// rules: openai/whisper decoding.py at temperature 0.
//
// Feeding order: the prompt up to and including <|startoftranscript|> (its
// logits give P(no speech)), then the rest of the prompt (language, task,
// <|notimestamps|>), then one sampled token per step.
#pragma once

#include <vector>

#include "decode/logit_filters.h"
#include "text/tokenizer.h"

namespace ama {

enum class Task { transcribe, translate };

struct WindowRequest {
  std::vector<int> prompt;  // previous text (or the initial prompt); may be empty
  int language_token = -1;  // multilingual models only
  Task task = Task::transcribe;
  bool timestamps = true;
  int sample_len = 224;     // at most this many sampled tokens (openai: n_text_ctx / 2)
  // > 0: sample exactly this many tokens, never stopping at end of text
  // (bench --e2e: random weights never stop by themselves).
  int forced_tokens = 0;
};

// Result of decoding one window.
struct WindowResult {
  std::vector<int> tokens;  // sampled, eot excluded
  double avg_logprob = 0;
  double no_speech_prob = 0;
};

// The token sequence fed before sampling, and where <|startoftranscript|> is.
struct WindowPrompt {
  std::vector<int> tokens;
  int sot_index = 0;
};
WindowPrompt window_prompt(const Tokenizer& tok, const WindowRequest& r, int n_text_ctx);

class GreedyWindow {
 public:
  // rules must outlive this object.
  GreedyWindow(const Tokenizer& tok, const LogitRules& rules, int n_text_ctx, const WindowRequest& request);

  // The tokens to feed at the next step; empty once done().
  const std::vector<int>& next_input() const { return input_; }
  // Takes the logits [n_vocab] of the last token fed (modified in place by
  // the logit rules).
  void on_logits(float* logits);
  bool done() const { return done_; }
  const WindowResult& result() const { return result_; }

 private:
  void sample(float* logits);

  const Tokenizer& tok_;
  const LogitRules& rules_;
  WindowRequest req_;
  WindowPrompt prompt_;
  int n_text_ctx_;
  int phase_ = 0;  // 0: prefix up to sot fed next, 1: rest of the prompt, 2: sampling
  std::vector<int> input_;
  int fed_ = 0;    // tokens fed so far (the sequence's position)
  double sum_logprob_ = 0;
  bool done_ = false;
  WindowResult result_;
};

}  // namespace ama
