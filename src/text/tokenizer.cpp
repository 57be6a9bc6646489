#include "text/tokenizer.h"

#include <locale.h>
#include <wchar.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cwctype>

namespace ama {
namespace {

constexpr int kNumTimestamps = 1501;  // <|0.00|> .. <|30.00|>, 0.02 s apart
constexpr int kEnglishVocab = 51864;
constexpr int kMultilingualVocab = 51865;
constexpr int kMaxLanguages = 100;

// ---------------------------------------------------------------------------
// UTF-8

struct Utf8Step {
  size_t length;   // bytes consumed (>= 1)
  char32_t value;  // code point, or U+FFFD if invalid
  bool valid;
};

// Reads one code point at s[pos]. For an invalid sequence, `length` is the
// "maximal subpart" (the longest valid prefix of a sequence, at least 1
// byte), which is what Python's errors="replace" turns into one U+FFFD.
Utf8Step next_utf8(std::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(pos);
  if (b0 < 0x80) return {1, b0, true};

  int needed = 0;                         // continuation bytes
  unsigned char lo = 0x80, hi = 0xBF;     // allowed range of the 2nd byte
  char32_t value = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    needed = 1, value = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    needed = 2, value = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;            // no overlong forms
    if (b0 == 0xED) hi = 0x9F;            // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    needed = 3, value = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;            // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;            // <= U+10FFFF
  } else {
    return {1, 0xFFFD, false};
  }
  size_t i = pos + 1;
  for (int k = 0; k < needed; ++k, ++i) {
    const bool in_range = i < s.size() && byte(i) >= (k == 0 ? lo : 0x80) &&
                          byte(i) <= (k == 0 ? hi : 0xBF);
    if (!in_range) return {i - pos, 0xFFFD, false};
    value = (value << 6) | (byte(i) & 0x3F);
  }
  return {i - pos, value, true};
}

std::string make_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Step step = next_utf8(s, pos);
    out.append(step.valid ? s.substr(pos, step.length) : std::string_view("\xEF\xBF\xBD"));
    pos += step.length;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Character classes for the GPT-2 pre-split pattern:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

enum class CharClass { kLetter, kNumber, kSpace, kOther };

struct Range {
  char32_t first, last;
};

bool in_ranges(char32_t c, const Range* ranges, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (c >= ranges[i].first && c <= ranges[i].last) return true;
  }
  return false;
}

// Unicode White_Space (what \s matches), beyond ASCII.
constexpr Range kSpaceRanges[] = {
    {0x85, 0x85},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}};

// Common non-ASCII numbers (\p{N}); the C library files most of these under
// "alpha" since iswdigit() is ASCII-only.
constexpr Range kNumberRanges[] = {
    {0xB2, 0xB3},       {0xB9, 0xB9},       {0xBC, 0xBE},       {0x660, 0x669},
    {0x6F0, 0x6F9},     {0x966, 0x96F},     {0x9E6, 0x9EF},     {0xA66, 0xA6F},
    {0xAE6, 0xAEF},     {0xB66, 0xB6F},     {0xBE6, 0xBF2},     {0xC66, 0xC6F},
    {0xCE6, 0xCEF},     {0xD66, 0xD6F},     {0xDE6, 0xDEF},     {0xE50, 0xE59},
    {0xED0, 0xED9},     {0xF20, 0xF33},     {0x1040, 0x1049},   {0x17E0, 0x17E9},
    {0x1810, 0x1819},   {0x2070, 0x2070},   {0x2074, 0x2079},   {0x2080, 0x2089},
    {0x2150, 0x2182},   {0x2185, 0x2189},   {0x2460, 0x249B},   {0x24EA, 0x24FF},
    {0x2776, 0x2793},   {0x3007, 0x3007},   {0x3021, 0x3029},   {0x3038, 0x303A},
    {0x3220, 0x3229},   {0x3280, 0x3289},   {0xFF10, 0xFF19}};

// Spacing combining marks (category Mc) of the scripts Whisper supports;
// the C library calls them "alpha" but \p{L} does not match them. Gaps
// inside a range hold no letters or numbers.
constexpr Range kSpacingMarkRanges[] = {
    {0x903, 0x903},   {0x93B, 0x93B},   {0x93E, 0x94F},   {0x982, 0x983},
    {0x9BE, 0x9CC},   {0x9D7, 0x9D7},   {0xA03, 0xA03},   {0xA3E, 0xA40},
    {0xA83, 0xA83},   {0xABE, 0xACC},   {0xB02, 0xB03},   {0xB3E, 0xB57},
    {0xBBE, 0xBCC},   {0xBD7, 0xBD7},   {0xC01, 0xC03},   {0xC41, 0xC44},
    {0xC82, 0xC83},   {0xCBE, 0xCD6},   {0xD02, 0xD03},   {0xD3E, 0xD4C},
    {0xD57, 0xD57},   {0xD82, 0xD83},   {0xDCF, 0xDDF},   {0xDF2, 0xDF3},
    {0xF3E, 0xF3F},   {0xF7F, 0xF7F},   {0x102B, 0x103C}, {0x1056, 0x1057},
    {0x1062, 0x1064}, {0x1067, 0x106D}, {0x1083, 0x108C}, {0x108F, 0x108F},
    {0x109A, 0x109C}, {0x17B6, 0x17C8}};

// Used only when no UTF-8 locale exists: punctuation/symbol blocks; every
// other non-ASCII code point is then taken to be a letter.
constexpr Range kFallbackOtherRanges[] = {
    {0x80, 0xA9},     {0xAB, 0xB4},     {0xB6, 0xB9},     {0xBB, 0xBF},
    {0xD7, 0xD7},     {0xF7, 0xF7},     {0x300, 0x36F},   {0x2000, 0x2BFF},
    {0x3000, 0x303F}, {0xFE30, 0xFE4F}, {0xFF00, 0xFF0F}, {0xFF1A, 0xFF20},
    {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65}, {0x1F000, 0x1FAFF}};

template <size_t N>
bool in_ranges(char32_t c, const Range (&ranges)[N]) {
  return in_ranges(c, ranges, N);
}

// A UTF-8 LC_CTYPE locale for the wide-character class functions, created
// once and kept for the life of the process; nullptr if none is available.
locale_t utf8_locale() {
  static const locale_t loc = [] {
    for (const char* name : {"C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8"}) {
      if (locale_t l = newlocale(LC_CTYPE_MASK, name, static_cast<locale_t>(0))) return l;
    }
    return static_cast<locale_t>(0);
  }();
  return loc;
}

CharClass classify(char32_t c, bool valid, locale_t loc) {
  if (!valid) return CharClass::kOther;
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::kLetter;
    if (c >= '0' && c <= '9') return CharClass::kNumber;
    if (c == ' ' || (c >= '\t' && c <= '\r')) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (in_ranges(c, kSpaceRanges)) return CharClass::kSpace;
  if (in_ranges(c, kNumberRanges)) return CharClass::kNumber;
  if (in_ranges(c, kSpacingMarkRanges)) return CharClass::kOther;
  if (loc == static_cast<locale_t>(0)) {
    return in_ranges(c, kFallbackOtherRanges) ? CharClass::kOther : CharClass::kLetter;
  }
  const auto wc = static_cast<wint_t>(c);
  if (iswspace_l(wc, loc)) return CharClass::kSpace;
  if (iswdigit_l(wc, loc)) return CharClass::kNumber;
  // The C library's "alpha" includes many combining marks; \p{L} does not.
  // Zero-width code points (nonspacing marks, format characters) are never
  // letters. wcwidth() follows the thread's locale, set by split_gpt2().
  if (iswalpha_l(wc, loc) && wcwidth(static_cast<wchar_t>(c)) != 0) return CharClass::kLetter;
  return CharClass::kOther;
}

struct CodePoint {
  size_t begin;  // byte offset in the text
  char32_t value;
  CharClass cls;
};

// Splits `text` into the pieces matched by the GPT-2 pattern, in order.
std::vector<std::string_view> split_gpt2(std::string_view text) {
  const locale_t loc = utf8_locale();
  const locale_t previous = loc ? uselocale(loc) : static_cast<locale_t>(0);

  std::vector<CodePoint> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Step step = next_utf8(text, pos);
    cps.push_back({pos, step.value, classify(step.value, step.valid, loc)});
    pos += step.length;
  }
  if (loc) uselocale(previous);

  const size_t m = cps.size();
  const auto value = [&](size_t i) { return i < m ? cps[i].value : char32_t{0}; };
  const auto run_end = [&](size_t i, CharClass cls) {
    while (i < m && cps[i].cls == cls) ++i;
    return i;
  };
  // Returns the end (code point index) of the match starting at i.
  const auto match = [&](size_t i) -> size_t {
    if (value(i) == '\'') {  // 's 't 're 've 'm 'll 'd
      const char32_t a = value(i + 1), b = value(i + 2);
      if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+"
    const size_t start = (value(i) == ' ' && i + 1 < m && cps[i + 1].cls != CharClass::kSpace)
                             ? i + 1
                             : i;
    if (cps[start].cls != CharClass::kSpace) return run_end(start, cps[start].cls);
    // "\s+(?!\S)": a whitespace run leaves its last character to the next
    // piece when a non-space follows; otherwise "\s+".
    const size_t end = run_end(i, CharClass::kSpace);
    return (end < m && end - i >= 2) ? end - 1 : end;
  };

  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < m;) {
    const size_t j = match(i);
    const size_t end_byte = j < m ? cps[j].begin : text.size();
    pieces.push_back(text.substr(cps[i].begin, end_byte - cps[i].begin));
    i = j;
  }
  return pieces;
}

const std::string& empty_string() {
  static const std::string empty;
  return empty;
}

// Older whisper.cpp converters decoded every token as UTF-8 with
// errors="replace", so tokens that are not valid UTF-8 on their own were
// stored as U+FFFD (EF BF BD) -- including the 128 single-byte tokens for
// bytes 0x80..0xFF. GPT-2 byte-level vocabularies put the 256 byte tokens
// first in a fixed order (printable bytes 33..126, 161..172, 174..255, then
// the rest ascending), so those tokens can be restored. Multi-byte tokens
// lost this way cannot; encode() then spells such text with shorter tokens.
// Returns the number of tokens restored.
int repair_byte_tokens(std::vector<std::string>& tokens) {
  std::vector<int> order;
  const auto printable = [](int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  };
  for (int b = 0; b < 256; ++b) {
    if (printable(b)) order.push_back(b);
  }
  for (int b = 0; b < 256; ++b) {
    if (!printable(b)) order.push_back(b);
  }
  int repaired = 0;
  for (size_t id = 0; id < order.size() && id < tokens.size(); ++id) {
    if (order[id] >= 0x80 && tokens[id] == "\xEF\xBF\xBD") {
      tokens[id] = std::string(1, static_cast<char>(order[id]));
      ++repaired;
    }
  }
  return repaired;
}

}  // namespace

// ---------------------------------------------------------------------------

Result<Tokenizer> Tokenizer::create(std::vector<std::string> regular_tokens, int n_vocab) {
  if (n_vocab < kEnglishVocab) {
    return make_error("tokenizer: n_vocab " + std::to_string(n_vocab) +
                      " is too small (need at least " + std::to_string(kEnglishVocab) + ")");
  }
  SpecialTokens sp{};
  if (n_vocab >= kMultilingualVocab) {
    sp.eot = 50257;
    sp.sot = 50258;
    sp.n_languages = std::min(kMaxLanguages, n_vocab - 51765 - 1);
    sp.translate = sp.sot + 1 + sp.n_languages;
  } else {
    sp.eot = 50256;
    sp.sot = 50257;
    sp.n_languages = 0;
    sp.translate = 50357;  // English-only models keep 99 unused language slots
  }
  sp.language_begin = sp.sot + 1;
  sp.transcribe = sp.translate + 1;
  sp.sot_lm = sp.translate + 2;
  sp.sot_prev = sp.translate + 3;
  sp.no_speech = sp.translate + 4;
  sp.no_timestamps = sp.translate + 5;
  sp.timestamp_begin = sp.translate + 6;
  if (sp.timestamp_begin + kNumTimestamps > n_vocab) {
    return make_error("tokenizer: n_vocab " + std::to_string(n_vocab) +
                      " cannot hold the special and timestamp tokens");
  }

  // The English ggml vocab carries "<|endoftext|>" as entry 50256 (= eot).
  if (regular_tokens.size() == static_cast<size_t>(sp.eot) + 1 &&
      regular_tokens.back() == "<|endoftext|>") {
    regular_tokens.pop_back();
  }
  if (!regular_tokens.empty() && regular_tokens.back() == "<|endoftext|>") {
    return make_error("tokenizer: English-only vocabulary (ends with <|endoftext|>) but n_vocab " +
                      std::to_string(n_vocab) + " is multilingual");
  }
  if (regular_tokens.size() != static_cast<size_t>(sp.eot)) {
    return make_error("tokenizer: vocabulary has " + std::to_string(regular_tokens.size()) +
                      " regular tokens, expected " + std::to_string(sp.eot) + " for n_vocab " +
                      std::to_string(n_vocab));
  }

  const bool lossy = repair_byte_tokens(regular_tokens) > 0;

  Tokenizer tok;
  tok.lossy_ = lossy;
  tok.special_ = sp;
  tok.n_vocab_ = n_vocab;
  tok.tokens_ = std::move(regular_tokens);
  tok.ranks_.reserve(tok.tokens_.size());
  for (size_t i = 0; i < tok.tokens_.size(); ++i) {
    if (!tok.tokens_[i].empty()) tok.ranks_.emplace(tok.tokens_[i], static_cast<int>(i));
  }
  // Byte-level BPE needs every single byte as a token.
  for (int b = 0; b < 256; ++b) {
    if (tok.rank_of(std::string(1, static_cast<char>(b))) < 0) {
      return make_error("tokenizer: vocabulary lacks the single-byte token " + std::to_string(b));
    }
  }
  return tok;
}

bool Tokenizer::is_timestamp(int id) const {
  return id >= special_.timestamp_begin && id < special_.timestamp_begin + kNumTimestamps;
}

std::string Tokenizer::token_text(int id) const {
  const SpecialTokens& sp = special_;
  if (id < 0 || id >= n_vocab_) return "";
  if (id < sp.eot) return tokens_[static_cast<size_t>(id)];
  if (id == sp.eot) return "<|endoftext|>";
  if (id == sp.sot) return "<|startoftranscript|>";
  if (id < sp.translate) {  // language slots (unused ones in English-only models)
    return "<|" + language_codes()[static_cast<size_t>(id - sp.language_begin)] + "|>";
  }
  if (id == sp.translate) return "<|translate|>";
  if (id == sp.transcribe) return "<|transcribe|>";
  if (id == sp.sot_lm) return "<|startoflm|>";
  if (id == sp.sot_prev) return "<|startofprev|>";
  if (id == sp.no_speech) return "<|nospeech|>";
  if (id == sp.no_timestamps) return "<|notimestamps|>";
  if (is_timestamp(id)) {
    const int centis = (id - sp.timestamp_begin) * 2;
    char buf[32];
    std::snprintf(buf, sizeof buf, "<|%d.%02d|>", centis / 100, centis % 100);
    return buf;
  }
  return "<|extra_" + std::to_string(id) + "|>";
}

const std::string& Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= special_.eot) return empty_string();
  return tokens_[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string bytes;
  for (int id : ids) bytes += token_bytes(id);
  return make_valid_utf8(bytes);
}

int Tokenizer::rank_of(std::string_view bytes) const {
  const auto it = ranks_.find(bytes);
  return it == ranks_.end() ? -1 : it->second;
}

// Merges byte parts of `piece`, lowest-ranked adjacent pair first, until no
// adjacent pair forms a token; appends the resulting ids.
void Tokenizer::bpe(std::string_view piece, std::vector<int>& out) const {
  if (const int whole = rank_of(piece); whole >= 0) {
    out.push_back(whole);
    return;
  }
  constexpr int kNone = INT_MAX;
  // Part k is piece[starts[k], starts[k+1]); pair_rank[k] is the rank of
  // parts k and k+1 joined, or kNone.
  std::vector<size_t> starts(piece.size() + 1);
  for (size_t k = 0; k < starts.size(); ++k) starts[k] = k;
  const auto joined_rank = [&](size_t k) {
    if (k + 2 >= starts.size()) return kNone;
    const int r = rank_of(piece.substr(starts[k], starts[k + 2] - starts[k]));
    return r < 0 ? kNone : r;
  };
  std::vector<int> pair_rank(piece.size() > 0 ? piece.size() - 1 : 0);
  for (size_t k = 0; k < pair_rank.size(); ++k) pair_rank[k] = joined_rank(k);

  while (!pair_rank.empty()) {
    const auto best = std::min_element(pair_rank.begin(), pair_rank.end());
    if (*best == kNone) break;
    const auto k = static_cast<size_t>(best - pair_rank.begin());
    starts.erase(starts.begin() + static_cast<std::ptrdiff_t>(k) + 1);
    pair_rank.erase(best);
    if (k < pair_rank.size()) pair_rank[k] = joined_rank(k);
    if (k > 0) pair_rank[k - 1] = joined_rank(k - 1);
  }
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    const int id = rank_of(piece.substr(starts[k], starts[k + 1] - starts[k]));
    if (id >= 0) out.push_back(id);  // always found: single bytes are checked in create()
  }
}

std::vector<int> Tokenizer::encode(std::string_view utf8) const {
  std::vector<int> ids;
  for (std::string_view piece : split_gpt2(utf8)) bpe(piece, ids);
  return ids;
}

int Tokenizer::language_token(std::string_view code) const {
  const auto& codes = language_codes();
  for (int i = 0; i < special_.n_languages; ++i) {
    if (codes[static_cast<size_t>(i)] == code) return special_.language_begin + i;
  }
  return -1;
}

std::string Tokenizer::language_code(int token) const {
  const int index = token - special_.language_begin;
  if (index < 0 || index >= special_.n_languages) return "";
  return language_codes()[static_cast<size_t>(index)];
}

const std::vector<std::string>& Tokenizer::language_codes() {
  static const std::vector<std::string> codes = {
      "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr",  "pl", "ca", "nl", "ar",
      "sv", "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms",  "cs", "ro", "da", "hu",
      "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "mi", "ml",  "cy", "sk", "te", "fa",
      "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu",  "is", "hy", "ne", "mn",
      "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn",  "yo", "so", "af", "oc",
      "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo",  "ht", "ps", "tk", "nn",
      "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw",
      "su", "yue"};
  return codes;
}

std::vector<int> Tokenizer::non_speech_tokens() const {
  // Symbols that openai/whisper suppresses so the model does not emit
  // speaker tags or non-speech annotations.
  std::vector<std::string> symbols = {
      "\"", "#", "(", ")", "*", "+", "/", ":", ";", "<", "=", ">", "@", "[", "\\", "]", "^", "_",
      "`", "{", "|", "}", "~", "\xE3\x80\x8C", "\xE3\x80\x8D", "\xE3\x80\x8E", "\xE3\x80\x8F",
      "<<", ">>", "<<<", ">>>", "--", "---", "-(", "-[", "('", "(\"", "((", "))", "(((", ")))",
      "[[", "]]", "{{", "}}", "\xE2\x99\xAA\xE2\x99\xAA", "\xE2\x99\xAA\xE2\x99\xAA\xE2\x99\xAA"};
  // Musical symbols U+2669..U+266F (always suppressed, even when split).
  const std::vector<std::string> miscellaneous = {
      "\xE2\x99\xA9", "\xE2\x99\xAA", "\xE2\x99\xAB", "\xE2\x99\xAC",
      "\xE2\x99\xAD", "\xE2\x99\xAE", "\xE2\x99\xAF"};

  std::vector<int> result;
  for (const char* s : {" -", " '"}) {
    const std::vector<int> ids = encode(s);
    if (!ids.empty()) result.push_back(ids[0]);
  }
  const auto add = [&](const std::string& symbol, bool always) {
    for (const std::string& text : {symbol, " " + symbol}) {
      const std::vector<int> ids = encode(text);
      if (ids.empty() || (ids.size() > 1 && !always)) continue;
      // In a lossy vocab the partial-character tokens a split symbol starts
      // with are gone; the bare byte (or space) left in their place would
      // suppress far more than the symbol, so it is not added.
      if (lossy_ && ids.size() > 1 && token_bytes(ids[0]).size() == 1) continue;
      result.push_back(ids[0]);
    }
  };
  for (const std::string& s : symbols) add(s, false);
  for (const std::string& s : miscellaneous) add(s, true);

  std::sort(result.begin(), result.end());
  result.erase(std::unique(result.begin(), result.end()), result.end());
  return result;
}

}  // namespace ama
