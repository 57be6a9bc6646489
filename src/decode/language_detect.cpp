#include "decode/language_detect.h"

#include <algorithm>
#include <cmath>

namespace ama {

Result<std::vector<LanguageProbability>> detect_language(DecoderStage& stage,
                                                         std::shared_ptr<const EncoderState> encoder,
                                                         const Tokenizer& tok) {
  if (!tok.multilingual()) return std::vector<LanguageProbability>{{"en", 1.0}};
  const SpecialTokens& s = tok.special();
  auto seq = stage.add_sequence(std::move(encoder));
  if (!seq) return seq.error();
  std::vector<float> logits;
  const Status st = stage.step({{*seq, {s.sot}}}, logits);
  stage.free(*seq);
  if (!st) return st.error();
  double mx = -INFINITY;
  for (int i = 0; i < s.n_languages; ++i) mx = std::max(mx, static_cast<double>(logits[s.language_begin + i]));
  double sum = 0;
  std::vector<LanguageProbability> out;
  for (int i = 0; i < s.n_languages; ++i) {
    const double e = std::exp(logits[s.language_begin + i] - mx);
    sum += e;
    out.push_back({tok.language_code(s.language_begin + i), e});
  }
  for (LanguageProbability& l : out) l.probability /= sum;
  // Highest first; ties keep openai's language order (its argmax takes the first).
  std::stable_sort(out.begin(), out.end(),
                   [](const LanguageProbability& a, const LanguageProbability& b) { return a.probability > b.probability; });
  return out;
}

std::vector<LanguageProbability> top_languages(std::vector<LanguageProbability> all, size_t n) {
  if (all.size() > n) all.resize(n);
  return all;
}

}  // namespace ama
