// tiktoken compatibility: the .tiktoken BPE file format and the GPT-2
// pre-split pattern that openai/whisper's tokenizer (tiktoken) uses.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace ama {

// Parses the contents of a .tiktoken file (openai/whisper's gpt2.tiktoken,
// multilingual.tiktoken): one line per token, "base64(token bytes) rank".
// Ranks must be 0, 1, 2, ... in file order; the result holds the token bytes
// by rank. Empty lines are skipped and "\r\n" line ends are accepted. The
// base64 must be canonical (RFC 4648 alphabet, '=' padding to a multiple of
// 4); "=" alone is the empty token, as multilingual.tiktoken's rank 50256.
// Errors (with the line number) for a bad field count, bad base64, a rank
// that is not the next one, or a token that repeats an earlier one.
Result<std::vector<std::string>> parse_tiktoken(std::string_view contents);

// Character classes of the GPT-2 pattern, from the Unicode 16.0 tables of
// rust-lang/regex (regex-syntax 0.8.5, the regex engine under tiktoken's
// fancy-regex): kLetter = \p{L} (Lu Ll Lt Lm Lo), kNumber = \p{N} (Nd Nl No),
// kSpace = \s (the White_Space property), kOther = everything else
// (marks, punctuation, symbols, controls, unassigned).
enum class Gpt2CharClass { kLetter, kNumber, kSpace, kOther };
Gpt2CharClass gpt2_char_class(char32_t c);

// Splits `text` into the pieces matched, in order, by tiktoken's GPT-2
// pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// The pieces cover `text` exactly. Each invalid UTF-8 sequence (maximal
// subpart, as Python's errors="replace") counts as one kOther character;
// tiktoken itself only ever sees valid text.
std::vector<std::string_view> split_gpt2(std::string_view text);

// One UTF-8 character at text[pos] (pos < text.size()). An invalid sequence
// is its "maximal subpart" (the longest valid prefix of a sequence, at least
// one byte), which Python's errors="replace" turns into one U+FFFD; then
// `value` is U+FFFD and `valid` false.
struct Utf8Char {
  size_t length;  // bytes (>= 1)
  char32_t value;
  bool valid;
};
Utf8Char next_utf8(std::string_view text, size_t pos);

}  // namespace ama
