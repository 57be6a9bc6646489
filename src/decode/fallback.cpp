#include "decode/fallback.h"

#include <zlib.h>

#include <cmath>

namespace ama {

Status validate(const DecodingOptions& o) {
  if (o.temperatures.empty() || o.temperatures.size() > 64) return make_error("give 1 to 64 temperatures");
  for (size_t i = 0; i < o.temperatures.size(); ++i) {
    const float t = o.temperatures[i];
    if (!std::isfinite(t) || t < 0 || t > 100) return make_error("temperatures must be in [0, 100]");
    if (i > 0 && !(t > o.temperatures[i - 1])) return make_error("temperatures must increase");
  }
  for (float t : o.temperatures) {
    SearchOptions s{t, o.beam_size, o.best_of, o.patience, o.length_penalty, 0};
    AMA_TRY(validate(s));
  }
  auto finite = [](const std::optional<float>& v) { return !v || std::isfinite(*v); };
  if (!finite(o.compression_ratio_threshold) || !finite(o.logprob_threshold) || !finite(o.no_speech_threshold))
    return make_error("thresholds must be finite numbers");
  if (o.no_speech_threshold && (*o.no_speech_threshold < 0 || *o.no_speech_threshold > 1))
    return make_error("the no-speech threshold is a probability, in [0, 1]");
  return Status::Ok();
}

double compression_ratio(const std::string& text) {
  if (text.empty()) return 0;  // openai divides by len(zlib.compress(b"")) = 8: 0.0
  uLongf n = compressBound(static_cast<uLong>(text.size()));
  std::vector<Bytef> buf(n);
  if (compress2(buf.data(), &n, reinterpret_cast<const Bytef*>(text.data()), static_cast<uLong>(text.size()),
                Z_DEFAULT_COMPRESSION) != Z_OK)
    return 0;
  return static_cast<double>(text.size()) / static_cast<double>(n);
}

bool cut_repetition(const Tokenizer& tok, std::vector<int>& tokens) {
  constexpr int kMaxPeriod = 64, kMinRepeats = 3;
  std::vector<size_t> at;  // positions of text tokens
  for (size_t i = 0; i < tokens.size(); ++i)
    if (!tok.is_special(tokens[i])) at.push_back(i);
  const int n = static_cast<int>(at.size());
  auto text = [&](int i) { return tokens[at[i]]; };
  int best_cover = 0, best_start = 0, best_period = 0;
  for (int p = 1; p <= kMaxPeriod && p * kMinRepeats <= n; ++p) {
    // run[i]: text(i) == text(i + p) holds for positions i .. i + run - 1.
    int run = 0;
    for (int i = n - p - 1; i >= -1; --i) {
      const bool same = i >= 0 && text(i) == text(i + p);
      if (same) {
        ++run;
        continue;
      }
      // positions i+1 .. i+run+p are periodic with period p
      const int start = i + 1, cover = run + p;
      if (cover >= kMinRepeats * p && cover > best_cover) {
        best_cover = cover;
        best_start = start;
        best_period = p;
      }
      run = 0;
    }
  }
  if (best_period == 0) return false;
  tokens.resize(at[best_start + best_period - 1] + 1);
  return true;
}

WindowDecode::WindowDecode(DecoderStage& stage, std::shared_ptr<const EncoderState> encoder, const Tokenizer& tok,
                           const LogitRules& rules, const WindowRequest& request, const DecodingOptions& options,
                           uint64_t seed)
    : stage_(stage), encoder_(std::move(encoder)), tok_(tok), rules_(rules), req_(request), opt_(options), seed_(seed) {}

Result<std::unique_ptr<WindowDecode>> WindowDecode::start(DecoderStage& stage,
                                                          std::shared_ptr<const EncoderState> encoder,
                                                          const Tokenizer& tok, const LogitRules& rules,
                                                          const WindowRequest& request, const DecodingOptions& options,
                                                          uint64_t seed) {
  AMA_TRY(validate(options));
  std::unique_ptr<WindowDecode> w(new WindowDecode(stage, std::move(encoder), tok, rules, request, options, seed));
  AMA_TRY(w->begin_attempt());
  return w;
}

Status WindowDecode::begin_attempt() {
  const float t = opt_.temperatures[t_index_];
  SearchOptions s;
  s.temperature = t;
  s.beam_size = t > 0 ? 1 : opt_.beam_size;
  s.best_of = t > 0 ? opt_.best_of : 1;
  s.patience = opt_.patience;
  s.length_penalty = opt_.length_penalty;
  // A seed per window and temperature: the samples do not depend on which
  // windows share a step or on the order they finish in.
  s.seed = seed_ * 0x9E3779B97F4A7C15ull + t_index_;
  search_.reset();  // frees the previous attempt's sequences first
  auto w = WindowSearch::start(stage_, encoder_, tok_, rules_, req_, s);
  if (!w) return w.error();
  search_ = std::move(*w);
  return Status::Ok();
}

void WindowDecode::inputs(std::vector<DecoderStage::Input>& batch) const {
  if (!done_) search_->inputs(batch);
}

Status WindowDecode::on_logits(float* rows) {
  if (done_) return make_error("the window is already decoded");
  AMA_TRY(search_->on_logits(rows));
  if (search_->done()) judge();
  if (!done_) return Status::Ok();
  search_.reset();
  encoder_.reset();
  return Status::Ok();
}

void WindowDecode::judge() {
  const WindowResult& r = search_->result();
  const double t = opt_.temperatures[t_index_];
  outcome_.result = r;
  outcome_.temperature = t;
  outcome_.compression_ratio = compression_ratio(tok_.decode(r.tokens));
  outcome_.forks += search_->forks();
  ++outcome_.attempts;
  const bool too_repetitive =
      opt_.compression_ratio_threshold && outcome_.compression_ratio > *opt_.compression_ratio_threshold;
  bool needs_fallback = too_repetitive || (opt_.logprob_threshold && r.avg_logprob < *opt_.logprob_threshold);
  const bool silent = opt_.no_speech_threshold && r.no_speech_prob > *opt_.no_speech_threshold &&
                      opt_.logprob_threshold && r.avg_logprob < *opt_.logprob_threshold;
  if (silent) needs_fallback = false;  // openai: silence is not retried, it is skipped
  if (needs_fallback && t_index_ + 1 < opt_.temperatures.size()) {
    ++t_index_;
    const Status st = begin_attempt();
    if (st) return;
    // Cannot happen after the first attempt started (same prompt, same
    // stage); keep this result rather than fail the window.
  }
  // openai's skip: P(no speech) above its threshold, unless the text is
  // probable enough.
  outcome_.no_speech = opt_.no_speech_threshold && r.no_speech_prob > *opt_.no_speech_threshold &&
                       !(opt_.logprob_threshold && r.avg_logprob > *opt_.logprob_threshold);
  if (too_repetitive && !outcome_.no_speech && cut_repetition(tok_, outcome_.result.tokens)) {
    outcome_.repetition_cut = true;
    outcome_.compression_ratio = compression_ratio(tok_.decode(outcome_.result.tokens));
  }
  done_ = true;
}

}  // namespace ama
