#include "decode/logit_filters.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace ama {

Result<LogitRules> make_logit_rules(const Tokenizer& tok, const LogitRuleOptions& o) {
  const SpecialTokens& s = tok.special();
  LogitRules r;
  r.timestamps = o.timestamps;
  if (!std::isfinite(o.max_initial_timestamp) || o.max_initial_timestamp > 30)
    return make_error("the max initial timestamp must be at most 30 s (negative: no limit)");
  r.max_initial_timestamp_index =
      o.max_initial_timestamp < 0 ? -1 : static_cast<int>(std::lround(o.max_initial_timestamp / 0.02));
  // Parse the list: integers separated by commas (spaces allowed).
  std::string list = o.suppress_tokens;
  bool non_speech = false;
  size_t pos = 0;
  while (list.find_first_not_of(" ,") != std::string::npos && pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    std::string item = list.substr(pos, comma - pos);
    const size_t b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
    item = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    char* end = nullptr;
    errno = 0;
    const long v = item.empty() ? 0 : std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < -1 || v >= tok.n_vocab())
      return make_error("--suppress-tokens: '" + item + "' is not -1 or a token id in [0, " +
                        std::to_string(tok.n_vocab()) + ")");
    if (v == -1)
      non_speech = true;
    else
      r.suppress.push_back(static_cast<int>(v));
    pos = comma + 1;
    if (comma == list.size()) break;
  }
  if (non_speech) {
    const std::vector<int> ns = tok.non_speech_tokens();
    r.suppress.insert(r.suppress.end(), ns.begin(), ns.end());
  }
  for (int t : {s.transcribe, s.translate, s.sot, s.sot_prev, s.sot_lm, s.no_speech}) r.suppress.push_back(t);
  std::sort(r.suppress.begin(), r.suppress.end());
  r.suppress.erase(std::unique(r.suppress.begin(), r.suppress.end()), r.suppress.end());
  if (o.suppress_blank) {
    r.blank = tok.encode(" ");
    r.blank.push_back(s.eot);
  }
  return r;
}

LogitRules default_logit_rules(const Tokenizer& tok, bool timestamps) {
  LogitRuleOptions o;
  o.timestamps = timestamps;
  return *make_logit_rules(tok, o);
}

void apply_logit_rules(const LogitRules& rules, const Tokenizer& tok, const std::vector<int>& sampled, float* logits) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const SpecialTokens& s = tok.special();
  const int n_vocab = tok.n_vocab();
  const int ts_begin = s.timestamp_begin;
  auto mask = [&](int begin, int end) {
    begin = std::max(begin, 0);
    end = std::min(end, n_vocab);
    for (int i = begin; i < end; ++i) logits[i] = kNegInf;
  };

  if (sampled.empty())
    for (int t : rules.blank) mask(t, t + 1);
  for (int t : rules.suppress) mask(t, t + 1);

  if (!rules.timestamps) {
    mask(ts_begin, n_vocab);
    return;
  }
  mask(s.no_timestamps, s.no_timestamps + 1);

  const size_t n = sampled.size();
  const bool last_ts = n >= 1 && sampled[n - 1] >= ts_begin;
  const bool penultimate_ts = n < 2 || sampled[n - 2] >= ts_begin;
  if (last_ts) {
    if (penultimate_ts)
      mask(ts_begin, n_vocab);  // a pair is complete: text must follow
    else
      mask(0, s.eot);  // an opening timestamp: no normal text
  }
  int last_timestamp = -1;
  for (int t : sampled)
    if (t >= ts_begin) last_timestamp = t;
  if (last_timestamp >= 0) {
    // Timestamps never decrease, and a segment has nonzero length.
    const int limit = (last_ts && !penultimate_ts) ? last_timestamp : last_timestamp + 1;
    mask(ts_begin, limit);
  }
  if (n == 0) {
    mask(0, ts_begin);  // the first token is a timestamp
    if (rules.max_initial_timestamp_index >= 0) mask(ts_begin + rules.max_initial_timestamp_index + 1, n_vocab);
  }

  // If the timestamps together are more probable than any single text
  // token, force a timestamp: log sum_ts p > max_text log p. Both sides share
  // the softmax denominator, so it cancels, and only the 1501 timestamp
  // logits need exp (the whole vocabulary did before: 0.3 ms of a 51865-wide
  // double exp pass per token, on one core).
  double text_max = -INFINITY, ts_max = -INFINITY;
  for (int i = 0; i < ts_begin; ++i) text_max = std::max(text_max, static_cast<double>(logits[i]));
  for (int i = ts_begin; i < n_vocab; ++i) ts_max = std::max(ts_max, static_cast<double>(logits[i]));
  if (ts_max == -INFINITY) return;
  double ts_sum = 0;
  for (int i = ts_begin; i < n_vocab; ++i) ts_sum += std::exp(static_cast<double>(logits[i]) - ts_max);
  if (std::log(ts_sum) + ts_max > text_max) mask(0, ts_begin);
}

}  // namespace ama
