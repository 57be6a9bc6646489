// Whisper's languages: the 100 codes with their English names, in the order
// of the language tokens (openai/whisper tokenizer.py LANGUAGES), and the
// lookup of what a user typed (a code or a name, any case) to a code.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace ama {

struct LanguageInfo {
  std::string_view code;  // "en"
  std::string_view name;  // "english" (lower case, as openai spells it)
};

// All 100, in token order (the same order as Tokenizer::language_codes()).
const std::vector<LanguageInfo>& languages();

// "en", "EN", "English", "castilian" (an alias) -> the code; "auto" (any case)
// and "" -> "auto". Surrounding spaces are ignored. Unknown -> an error that
// lists the codes.
Result<std::string> language_code_from_user(std::string_view text);

// "en" -> "english"; "" for an unknown code.
std::string language_name(std::string_view code);

// One line per language, "en  english", for a --language list/help output.
std::string language_table_text();

}  // namespace ama
