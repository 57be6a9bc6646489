// OpenAI's logit rules for sampling (openai/whisper decoding.py):
// SuppressBlank, SuppressTokens and ApplyTimestampRules, in that order.
#pragma once

#include <vector>

#include "text/tokenizer.h"

namespace ama {

struct LogitRules {
  bool timestamps = true;               // false: no timestamp tokens at all
  int max_initial_timestamp_index = 50;  // 1.0 s / 0.02 s; < 0 disables
  std::vector<int> suppress;            // non-speech tokens and task/control tokens
  std::vector<int> blank;               // encode(" ") + eot, suppressed at the first step
};

// The default rule set for a tokenizer (suppress_tokens="-1", suppress_blank=True).
LogitRules default_logit_rules(const Tokenizer& tok, bool timestamps);

// logits: one row of n_vocab; sampled: the tokens sampled so far in this
// window (after the prompt). Masked entries become -infinity.
void apply_logit_rules(const LogitRules& rules, const Tokenizer& tok, const std::vector<int>& sampled, float* logits);

}  // namespace ama
