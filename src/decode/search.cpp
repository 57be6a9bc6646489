#include "decode/search.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/splitmix64.h"

namespace ama {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// log(sum(exp(x))) over a row. The sum is kept in double (log-probabilities
// are summed over hundreds of tokens and compared with thresholds); each
// term is a float exp, within an ulp of the double one and about twice as
// fast: this pass over the 51865 logits runs once per hypothesis per token.
double log_sum_exp(const float* x, int n) {
  float mx = kNegInf;
  for (int i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  if (mx == kNegInf) return -INFINITY;
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::exp(x[i] - mx);
  return mx + std::log(s);
}

// Uniform doubles in [0, 1) from our own generator, so that a seed gives
// the same samples on every standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  double uniform() { return static_cast<double>(g_.next() >> 11) * 0x1.0p-53; }

 private:
  SplitMix64 g_;
};

// Greedy (temperature 0) and sampling: every hypothesis draws its own next
// token; the first step draws `n` from the prompt's one row (openai's
// best_of copies of the prompt give the same distribution).
class SamplingStrategy final : public Strategy {
 public:
  SamplingStrategy(int n, float temperature, uint64_t seed) : n_(n), t_(temperature), rng_(seed) {}

  void select(const std::vector<Hypothesis>& live, float* const* rows, int n_vocab, int eot,
              std::vector<Continuation>& next, std::vector<Hypothesis>& finished) override {
    const bool first = !started_;
    started_ = true;
    for (size_t i = 0; i < live.size(); ++i) {
      const float* row = rows[i];
      const double lse = log_sum_exp(row, n_vocab);
      const int draws = first ? n_ : 1;
      for (int d = 0; d < draws; ++d) {
        int token = t_ == 0 ? argmax(row, n_vocab) : sample(row, n_vocab);
        double lp = 0;
        if (!std::isfinite(row[token]) || lse == -INFINITY)
          token = eot;  // every token masked: end the window
        else
          lp = row[token] - lse;
        const double sum = live[i].sum_logprob + lp;
        if (token == eot)
          finished.push_back(Hypothesis{live[i].tokens, sum});
        else
          next.push_back(Continuation{static_cast<int>(i), token, sum});
      }
    }
  }
  size_t enough_finished() const override { return static_cast<size_t>(n_); }
  size_t min_candidates() const override { return static_cast<size_t>(n_); }

 private:
  // A draw from softmax(row / T) (openai: Categorical(logits=logits / T)).
  int sample(const float* row, int n) {
    float mx = kNegInf;
    for (int i = 0; i < n; ++i) mx = std::max(mx, row[i]);
    if (mx == kNegInf) return 0;
    p_.resize(n);
    double total = 0;
    const float inv_t = 1.0f / t_;
    for (int i = 0; i < n; ++i) total += (p_[i] = std::exp((row[i] - mx) * inv_t));
    double u = rng_.uniform() * total;
    int last = 0;
    for (int i = 0; i < n; ++i) {
      if (p_[i] <= 0) continue;
      last = i;
      if (u < p_[i]) return i;
      u -= p_[i];
    }
    return last;  // rounding left u just past the end
  }

  int n_;
  float t_;
  Rng rng_;
  bool started_ = false;
  std::vector<float> p_;
};

// openai's BeamSearchDecoder: each beam proposes its beam_size + 1 most
// probable tokens; the beam_size best non-ending candidates go on, and
// candidates ending in eot that rank above them are finished.
class BeamStrategy final : public Strategy {
 public:
  BeamStrategy(int beam_size, float patience)
      : beam_(beam_size),
        // Python's round() rounds half to even, as nearbyint does by default.
        max_candidates_(static_cast<size_t>(std::nearbyint(beam_size * static_cast<double>(patience)))) {}

  void select(const std::vector<Hypothesis>& live, float* const* rows, int n_vocab, int eot,
              std::vector<Continuation>& next, std::vector<Hypothesis>& finished) override {
    struct Cand {
      double score;
      int parent, token;
    };
    std::vector<Cand> cands;
    const int k = beam_ + 1;
    std::vector<int> top;
    for (size_t i = 0; i < live.size(); ++i) {
      const float* row = rows[i];
      const double lse = log_sum_exp(row, n_vocab);
      if (lse == -INFINITY) continue;
      // The k largest logits, highest first (ties: lower id first), by
      // insertion into a short sorted list: one pass over the row.
      top.clear();
      for (int t = 0; t < n_vocab; ++t) {
        if (row[t] == kNegInf) continue;
        if (static_cast<int>(top.size()) == k && row[t] <= row[top.back()]) continue;
        auto at = std::upper_bound(top.begin(), top.end(), t, [&](int a, int b) { return row[a] > row[b]; });
        top.insert(at, t);
        if (static_cast<int>(top.size()) > k) top.pop_back();
      }
      for (int t : top) cands.push_back(Cand{live[i].sum_logprob + (row[t] - lse), static_cast<int>(i), t});
    }
    std::stable_sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) { return a.score > b.score; });
    int saved = 0;
    for (const Cand& c : cands) {
      if (c.token == eot) {
        finished.push_back(Hypothesis{live[c.parent].tokens, c.score});
      } else {
        next.push_back(Continuation{c.parent, c.token, c.score});
        if (++saved == beam_) break;
      }
    }
  }
  size_t enough_finished() const override { return max_candidates_; }
  size_t min_candidates() const override { return static_cast<size_t>(beam_); }

 private:
  int beam_;
  size_t max_candidates_;
};

}  // namespace

Status validate(const SearchOptions& o) {
  if (!std::isfinite(o.temperature) || o.temperature < 0)
    return make_error("temperature must be a finite number >= 0");
  if (o.beam_size < 1 || o.beam_size > 64) return make_error("beam size must be in [1, 64]");
  if (o.best_of < 1 || o.best_of > 64) return make_error("best-of must be in [1, 64]");
  if (!std::isfinite(o.patience) || o.patience <= 0 || o.patience > 64)
    return make_error("patience must be in (0, 64]");
  if (o.temperature == 0 && o.beam_size > 1 && std::nearbyint(o.beam_size * static_cast<double>(o.patience)) < 1)
    return make_error("beam size x patience rounds to 0 candidates");
  if (!std::isfinite(o.length_penalty) || o.length_penalty > 10)
    return make_error("length penalty must be in [0, 10] (or negative for none)");
  return Status::Ok();
}

double rank_score(const Hypothesis& h, float length_penalty) {
  const double length = static_cast<double>(h.tokens.size());
  double penalty = length_penalty < 0 ? length : std::pow((5.0 + length) / 6.0, length_penalty);
  if (penalty <= 0) penalty = 1;  // an empty hypothesis
  return h.sum_logprob / penalty;
}

std::unique_ptr<Strategy> make_strategy(const SearchOptions& o) {
  if (o.temperature == 0 && o.beam_size > 1) return std::make_unique<BeamStrategy>(o.beam_size, o.patience);
  return std::make_unique<SamplingStrategy>(o.temperature > 0 ? o.best_of : 1, o.temperature, o.seed);
}

std::vector<int> sot_sequence(const Tokenizer& tok, int language_token, Task task) {
  const SpecialTokens& s = tok.special();
  std::vector<int> out{s.sot};
  if (tok.multilingual()) {
    out.push_back(language_token);
    out.push_back(task == Task::translate ? s.translate : s.transcribe);
  }
  return out;
}

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
  const std::vector<int> start = sot_sequence(tok, r.language_token, r.task);
  p.tokens.insert(p.tokens.end(), start.begin(), start.end());
  if (!r.timestamps) p.tokens.push_back(s.no_timestamps);
  // openai's prefix: after the start sequence, fed but not sampled.
  p.tokens.insert(p.tokens.end(), r.prefix.begin(), r.prefix.end());
  return p;
}

WindowSearch::WindowSearch(DecoderStage& stage, const Tokenizer& tok, const LogitRules& rules,
                           const WindowRequest& request, const SearchOptions& options)
    : stage_(stage), tok_(tok), rules_(rules), req_(request), opt_(options), strategy_(make_strategy(options)) {}

Result<std::unique_ptr<WindowSearch>> WindowSearch::start(DecoderStage& stage,
                                                          std::shared_ptr<const EncoderState> encoder,
                                                          const Tokenizer& tok, const LogitRules& rules,
                                                          const WindowRequest& request, const SearchOptions& options) {
  AMA_TRY(validate(options));
  if (tok.n_vocab() != stage.n_vocab()) return make_error("the tokenizer does not belong to this decoder");
  std::unique_ptr<WindowSearch> w(new WindowSearch(stage, tok, rules, request, options));
  w->prompt_ = window_prompt(tok, request, stage.n_text_ctx());
  if (static_cast<int>(w->prompt_.tokens.size()) >= stage.n_text_ctx())
    return make_error("the prompt (" + std::to_string(w->prompt_.tokens.size()) +
                      " tokens) does not fit the text context of " + std::to_string(stage.n_text_ctx()));
  auto seq = stage.add_sequence(std::move(encoder));
  if (!seq) return seq.error();
  w->prompt_seq_ = *seq;
  const auto& t = w->prompt_.tokens;
  w->prompt_input_.assign(t.begin(), t.begin() + w->prompt_.sot_index + 1);
  return w;
}

WindowSearch::~WindowSearch() {
  stage_.free(prompt_seq_);
  for (const Live& l : live_) stage_.free(l.seq);
}

void WindowSearch::inputs(std::vector<DecoderStage::Input>& batch) const {
  if (done_) return;
  if (phase_ < 2) {
    batch.push_back({prompt_seq_, prompt_input_});
    return;
  }
  for (const Live& l : live_) batch.push_back({l.seq, {l.next_token}});
}

Status WindowSearch::on_logits(float* rows) {
  if (done_) return make_error("the window is already decoded");
  const int n_vocab = tok_.n_vocab();
  if (phase_ == 0) {
    // P(no speech) from the logits at <|startoftranscript|>, before any rule.
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n_vocab; ++i) mx = std::max(mx, static_cast<double>(rows[i]));
    for (int i = 0; i < n_vocab; ++i) sum += std::exp(rows[i] - mx);
    result_.no_speech_prob = std::exp(rows[tok_.special().no_speech] - mx) / sum;
    if (prompt_.sot_index + 1 < static_cast<int>(prompt_.tokens.size())) {
      phase_ = 1;
      prompt_input_.assign(prompt_.tokens.begin() + prompt_.sot_index + 1, prompt_.tokens.end());
      return Status::Ok();
    }
  }
  if (phase_ < 2) {
    phase_ = 2;
    live_.push_back(Live{Hypothesis{}, prompt_seq_, -1});
    prompt_seq_ = -1;  // owned by the live hypothesis now
  }
  return advance(rows);
}

Status WindowSearch::advance(float* rows) {
  const int n_vocab = tok_.n_vocab();
  const int eot = tok_.special().eot;
  const bool forced = req_.forced_tokens > 0;
  row_ptrs_.resize(live_.size());
  std::vector<Hypothesis> hyps;
  hyps.reserve(live_.size());
  for (size_t i = 0; i < live_.size(); ++i) {
    float* row = rows + i * static_cast<size_t>(n_vocab);
    apply_logit_rules(rules_, tok_, live_[i].h.tokens, row);
    if (forced) row[eot] = kNegInf;
    row_ptrs_[i] = row;
    hyps.push_back(std::move(live_[i].h));
  }
  next_.clear();
  std::vector<Hypothesis> ended;
  strategy_->select(hyps, row_ptrs_.data(), n_vocab, eot, next_, ended);
  ++steps_;
  for (Hypothesis& h : ended)
    if (finished_.size() < strategy_->enough_finished()) finished_.push_back(std::move(h));

  // The continuations take over their parents' sequences: the first child
  // of a parent inherits it, every further child forks it (a copy of the
  // parent's KV so far), and parents without children are freed. Forks
  // happen before any sequence is fed again, so each copies its parent as
  // it was when its logits were computed.
  std::vector<Live> next_live;
  std::vector<char> claimed(live_.size(), 0);
  for (const Continuation& c : next_) {
    DecoderStage::SeqId seq;
    if (!claimed[c.parent]) {
      claimed[c.parent] = 1;
      seq = live_[c.parent].seq;
    } else {
      auto f = stage_.fork(live_[c.parent].seq);
      if (!f) return f.error();
      seq = *f;
      ++forks_;
    }
    Hypothesis h{hyps[c.parent].tokens, c.sum_logprob};
    h.tokens.push_back(c.token);
    next_live.push_back(Live{std::move(h), seq, c.token});
  }
  for (size_t i = 0; i < live_.size(); ++i)
    if (!claimed[i]) stage_.free(live_[i].seq);
  // Keep the parents' hypotheses for the length-limit candidates below.
  live_ = std::move(next_live);

  const int limit = forced ? req_.forced_tokens : req_.sample_len;
  const bool out_of_context = !live_.empty() && stage_.n_past(live_.front().seq) + 1 > stage_.n_text_ctx();
  if (live_.empty() || finished_.size() >= strategy_->enough_finished() || steps_ >= limit || out_of_context)
    finish();
  return Status::Ok();
}

void WindowSearch::finish() {
  // openai's finalize: without enough finished candidates, the live ones
  // (most probable first) join them.
  if (finished_.size() < strategy_->min_candidates()) {
    std::stable_sort(live_.begin(), live_.end(),
                     [](const Live& a, const Live& b) { return a.h.sum_logprob > b.h.sum_logprob; });
    for (const Live& l : live_) {
      if (finished_.size() >= strategy_->min_candidates()) break;
      finished_.push_back(l.h);
    }
  }
  for (const Live& l : live_) stage_.free(l.seq);
  live_.clear();
  done_ = true;
  if (finished_.empty()) return;  // nothing could be sampled
  size_t best = 0;
  for (size_t i = 1; i < finished_.size(); ++i)
    if (rank_score(finished_[i], opt_.length_penalty) > rank_score(finished_[best], opt_.length_penalty)) best = i;
  result_.tokens = finished_[best].tokens;
  result_.sum_logprob = finished_[best].sum_logprob;
  result_.avg_logprob = result_.sum_logprob / (result_.tokens.size() + 1.0);
}

}  // namespace ama
