// Language identification (openai/whisper decoding.py detect_language): the
// decoder's logits after <|startoftranscript|>, softmax over the language
// tokens only.
#pragma once

#include <memory>
#include <vector>

#include "core/result.h"
#include "decode/transcript.h"
#include "engine/stages.h"
#include "text/tokenizer.h"

namespace ama {

// Every language of the model with its probability, highest first.
// English-only models: {"en", 1}.
Result<std::vector<LanguageProbability>> detect_language(DecoderStage& stage,
                                                         std::shared_ptr<const EncoderState> encoder,
                                                         const Tokenizer& tok);

// The first n (openai reports all; json and verbose_json show the top 5).
std::vector<LanguageProbability> top_languages(std::vector<LanguageProbability> all, size_t n);

}  // namespace ama
