#include "decode/greedy.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ama {

namespace {

int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// log softmax(x)[index]. The sum is kept in double (log-probabilities are
// summed over hundreds of tokens and compared with thresholds); each term is
// a float exp, within an ulp of the double one and about twice as fast: this
// pass over the 51865 logits runs once per sampled token, on one core.
double log_softmax_at(const float* x, int n, int index) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  return static_cast<double>(x[index]) - mx - std::log(s);
}

}  // namespace

WindowPrompt window_prompt(const Tokenizer& tok, const WindowRequest& r, int n_text_ctx) {
  const SpecialTokens& s = tok.special();
  WindowPrompt p;
  if (!r.prompt.empty()) {
    // openai keeps the last n_text_ctx / 2 - 1 tokens of the previous text.
    p.tokens.push_back(s.sot_prev);
    const size_t keep = std::min(r.prompt.size(), static_cast<size_t>(std::max(0, n_text_ctx / 2 - 1)));
    p.tokens.insert(p.tokens.end(), r.prompt.end() - keep, r.prompt.end());
  }
  p.sot_index = static_cast<int>(p.tokens.size());
  p.tokens.push_back(s.sot);
  if (tok.multilingual()) {
    p.tokens.push_back(r.language_token);
    p.tokens.push_back(r.task == Task::translate ? s.translate : s.transcribe);
  }
  if (!r.timestamps) p.tokens.push_back(s.no_timestamps);
  return p;
}

GreedyWindow::GreedyWindow(const Tokenizer& tok, const LogitRules& rules, int n_text_ctx, const WindowRequest& request)
    : tok_(tok), rules_(rules), req_(request), prompt_(window_prompt(tok, request, n_text_ctx)), n_text_ctx_(n_text_ctx) {
  input_.assign(prompt_.tokens.begin(), prompt_.tokens.begin() + prompt_.sot_index + 1);
  if (static_cast<int>(prompt_.tokens.size()) >= n_text_ctx_) {
    done_ = true;  // nothing can be sampled
    input_.clear();
  }
}

void GreedyWindow::on_logits(float* logits) {
  if (done_) return;
  fed_ += static_cast<int>(input_.size());
  const int n_vocab = tok_.n_vocab();
  if (phase_ == 0) {
    // P(no speech) from the logits at <|startoftranscript|>, before any rule.
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n_vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
    for (int i = 0; i < n_vocab; ++i) sum += std::exp(logits[i] - mx);
    result_.no_speech_prob = std::exp(logits[tok_.special().no_speech] - mx) / sum;
    if (prompt_.sot_index + 1 < static_cast<int>(prompt_.tokens.size())) {
      phase_ = 1;
      input_.assign(prompt_.tokens.begin() + prompt_.sot_index + 1, prompt_.tokens.end());
      return;
    }
  }
  phase_ = 2;
  sample(logits);
}

void GreedyWindow::sample(float* logits) {
  const int n_vocab = tok_.n_vocab();
  const int eot = tok_.special().eot;
  apply_logit_rules(rules_, tok_, result_.tokens, logits);
  const bool forced = req_.forced_tokens > 0;
  if (forced) logits[eot] = -std::numeric_limits<float>::infinity();
  int next = argmax(logits, n_vocab);
  if (!std::isfinite(logits[next])) next = eot;  // every token masked: end the window
  sum_logprob_ += log_softmax_at(logits, n_vocab, next);
  const int limit = forced ? req_.forced_tokens : req_.sample_len;
  if (next != eot) result_.tokens.push_back(next);
  const int n = static_cast<int>(result_.tokens.size());
  if (next == eot || n >= limit || fed_ + 1 > n_text_ctx_) {
    done_ = true;
    input_.clear();
    result_.avg_logprob = sum_logprob_ / (n + 1.0);
    return;
  }
  input_.assign(1, next);
}

}  // namespace ama
