// OpenAI's logit rules for sampling (openai/whisper decoding.py):
// SuppressBlank, SuppressTokens and ApplyTimestampRules, in that order.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

#include "text/tokenizer.h"

namespace ama {

struct LogitRules {
  bool timestamps = true;               // false: no timestamp tokens at all
  int max_initial_timestamp_index = 50;  // 1.0 s / 0.02 s; < 0 disables
  std::vector<int> suppress;            // non-speech tokens and task/control tokens
  std::vector<int> blank;               // encode(" ") + eot, suppressed at the first step
};

struct LogitRuleOptions {
  bool timestamps = true;
  // openai's --suppress_tokens: comma-separated ids; -1 adds the non-speech
  // tokens; "" suppresses only the control tokens (always suppressed).
  std::string suppress_tokens = "-1";
  bool suppress_blank = true;
  float max_initial_timestamp = 1.0f;  // seconds; < 0: no limit
};
Result<LogitRules> make_logit_rules(const Tokenizer& tok, const LogitRuleOptions& o);

// The default rule set for a tokenizer (suppress_tokens="-1", suppress_blank=True).
LogitRules default_logit_rules(const Tokenizer& tok, bool timestamps);

// logits: one row of n_vocab; sampled: the tokens sampled so far in this
// window (after the prompt). Masked entries become -infinity.
void apply_logit_rules(const LogitRules& rules, const Tokenizer& tok, const std::vector<int>& sampled, float* logits);

}  // namespace ama
