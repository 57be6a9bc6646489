// Decoding one 30 s window at one temperature, on the stage seam: the
// strategies of openai/whisper decoding.py (greedy, beam search, best-of-n
// sampling) behind one interface, as CTranslate2 separates them.
//
// A WindowSearch is a state machine over DecoderStage steps, so that the
// sequential transcriber (one window per step) and the batched pipeline
// (many windows per step) run the same rules, and beams and samples are
// sequences of the same stage, batched with everything else.
//
// Feeding order: the prompt up to and including <|startoftranscript|> (its
// logits give P(no speech)), then the rest of the prompt (language, task,
// <|notimestamps|>, prefix), then one token per live hypothesis per step.
// Hypotheses that continue from the same parent share its KV by fork()
// (a copy of the prefix; see strategy notes in search.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/result.h"
#include "decode/logit_filters.h"
#include "engine/stages.h"
#include "text/tokenizer.h"

namespace ama {

enum class Task { transcribe, translate };

struct WindowRequest {
  std::vector<int> prompt;  // previous text (or the initial prompt); may be empty
  std::vector<int> prefix;  // forced start of this window's text (openai's `prefix`); not part of the result
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
  double sum_logprob = 0;   // including the end of text's
  double avg_logprob = 0;   // sum_logprob / (tokens + 1), as openai
  double no_speech_prob = 0;
};

// The token sequence fed before sampling, and where <|startoftranscript|> is.
struct WindowPrompt {
  std::vector<int> tokens;
  int sot_index = 0;
};
WindowPrompt window_prompt(const Tokenizer& tok, const WindowRequest& r, int n_text_ctx);

// <|startoftranscript|>, and for multilingual models the language and task
// tokens: openai's sot_sequence.
std::vector<int> sot_sequence(const Tokenizer& tok, int language_token, Task task);

struct SearchOptions {
  float temperature = 0;      // 0: argmax (greedy) or beam search; > 0: sampling
  int beam_size = 1;          // at temperature 0: > 1 is beam search
  int best_of = 1;            // at temperature > 0: independent samples, the best is kept
  float patience = 1;         // beam search ends after round(beam_size * patience) finished candidates
  float length_penalty = -1;  // < 0: rank by sum_logprob / length (openai's None); else / ((5 + length) / 6)^alpha
  uint64_t seed = 0;          // sampling: the same seed gives the same tokens
};
// Errors for absurd values (beam_size or best_of outside [1, 64], patience
// <= 0 or non-finite, temperature < 0 or non-finite, length_penalty > 10...).
Status validate(const SearchOptions& o);

// A hypothesis: a beam or a sample.
struct Hypothesis {
  std::vector<int> tokens;  // sampled so far (no eot)
  double sum_logprob = 0;
};
// A live hypothesis extended by one token.
struct Continuation {
  int parent;  // index into the live hypotheses
  int token;
  double sum_logprob;
};

// openai's MaximumLikelihoodRanker score of a finished hypothesis.
double rank_score(const Hypothesis& h, float length_penalty);

// The strategy interface: given each live hypothesis's logits (after the
// logit rules), choose the continuations and the hypotheses that end.
class Strategy {
 public:
  virtual ~Strategy() = default;
  // rows[i] is live[i]'s logits [n_vocab]. Appends the hypotheses that go on
  // to `next`, and those that ended with eot to `finished` (eot not in their
  // tokens, its log-probability in their sum).
  virtual void select(const std::vector<Hypothesis>& live, float* const* rows, int n_vocab, int eot,
                      std::vector<Continuation>& next, std::vector<Hypothesis>& finished) = 0;
  // The search may stop with this many finished hypotheses (beam patience).
  virtual size_t enough_finished() const = 0;
  // At the length limit, live hypotheses join the candidates until there are
  // this many (openai's finalize).
  virtual size_t min_candidates() const = 0;
};
// Greedy (temperature 0, beam 1), beam search (temperature 0, beam > 1) or
// sampling (temperature > 0, best_of samples).
std::unique_ptr<Strategy> make_strategy(const SearchOptions& o);

class WindowSearch {
 public:
  // Adds the window's first sequence to `stage`. rules must outlive this.
  static Result<std::unique_ptr<WindowSearch>> start(DecoderStage& stage, std::shared_ptr<const EncoderState> encoder,
                                                     const Tokenizer& tok, const LogitRules& rules,
                                                     const WindowRequest& request, const SearchOptions& options);
  ~WindowSearch();  // frees its sequences
  WindowSearch(const WindowSearch&) = delete;
  WindowSearch& operator=(const WindowSearch&) = delete;

  // Appends this window's inputs for the next step (none once done()).
  void inputs(std::vector<DecoderStage::Input>& batch) const;
  // The logits of the inputs appended by the last inputs(), one row each,
  // consecutive. Modified in place by the logit rules.
  Status on_logits(float* rows);
  bool done() const { return done_; }
  const WindowResult& result() const { return result_; }
  // Sequences forked for hypotheses so far (beam search cost accounting).
  int forks() const { return forks_; }

 private:
  struct Live {
    Hypothesis h;
    DecoderStage::SeqId seq;
    int next_token;
  };
  WindowSearch(DecoderStage& stage, const Tokenizer& tok, const LogitRules& rules, const WindowRequest& request,
               const SearchOptions& options);
  Status advance(float* rows);
  void finish();

  DecoderStage& stage_;
  const Tokenizer& tok_;
  const LogitRules& rules_;
  WindowRequest req_;
  SearchOptions opt_;
  std::unique_ptr<Strategy> strategy_;
  WindowPrompt prompt_;
  int phase_ = 0;                 // 0: prefix up to sot fed next, 1: rest of the prompt, 2: sampling
  DecoderStage::SeqId prompt_seq_ = -1;
  std::vector<int> prompt_input_;
  std::vector<Live> live_;
  std::vector<Hypothesis> finished_;
  int steps_ = 0;                 // sampling steps taken
  int forks_ = 0;
  bool done_ = false;
  WindowResult result_;
  std::vector<float*> row_ptrs_;
  std::vector<Continuation> next_;
};

}  // namespace ama
