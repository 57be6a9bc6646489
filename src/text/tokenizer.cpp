#include "text/tokenizer.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "text/tiktoken.h"

namespace ama {
namespace {

constexpr int kNumTimestamps = 1501;  // <|0.00|> .. <|30.00|>, 0.02 s apart
constexpr int kEnglishVocab = 51864;
constexpr int kMultilingualVocab = 51865;
constexpr int kMaxLanguages = 100;

std::string make_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Char ch = next_utf8(s, pos);
    out.append(ch.valid ? s.substr(pos, ch.length) : std::string_view("\xEF\xBF\xBD"));
    pos += ch.length;
  }
  return out;
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
  return build(std::move(regular_tokens), n_vocab, /*repair_lossy=*/true);
}

Result<Tokenizer> Tokenizer::from_tiktoken(std::string_view contents, int n_vocab) {
  auto tokens = parse_tiktoken(contents);
  if (!tokens.ok()) return tokens.error();
  return build(std::move(tokens).value(), n_vocab, /*repair_lossy=*/false);
}

Result<Tokenizer> Tokenizer::from_gpt2_unicode(const std::vector<std::string>& spelled, int n_vocab) {
  // Code point -> byte for GPT-2's byte-level alphabet: 256 code points, all
  // below U+0144 (0x100 + 68 unprintable bytes).
  std::vector<int> byte_of(0x100 + 68, -1);
  int next_shifted = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    byte_of[printable ? b : 0x100 + next_shifted++] = b;
  }
  std::vector<std::string> tokens;
  tokens.reserve(spelled.size());
  for (size_t id = 0; id < spelled.size(); ++id) {
    const std::string& s = spelled[id];
    std::string bytes;
    for (size_t pos = 0; pos < s.size();) {
      const Utf8Char ch = next_utf8(s, pos);
      if (!ch.valid || ch.value >= byte_of.size() || byte_of[ch.value] < 0)
        return make_error("tokenizer: token " + std::to_string(id) + " (\"" + make_valid_utf8(s) +
                          "\") has a character outside GPT-2's byte alphabet");
      bytes.push_back(static_cast<char>(byte_of[ch.value]));
      pos += ch.length;
    }
    tokens.push_back(std::move(bytes));
  }
  return build(std::move(tokens), n_vocab, /*repair_lossy=*/false);
}

Result<Tokenizer> Tokenizer::load_tiktoken(const std::string& path, int n_vocab) {
  // C stdio rather than a stream: reading a directory must be an error, not
  // an exception from the stream buffer.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return make_error("tiktoken: cannot open " + path);
  std::string contents;
  char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) contents.append(buf, got);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return make_error("tiktoken: cannot read " + path);
  auto tok = from_tiktoken(contents, n_vocab);
  if (!tok.ok()) return make_error(path + ": " + tok.message());
  return tok;
}

Result<Tokenizer> Tokenizer::build(std::vector<std::string> regular_tokens, int n_vocab,
                                   bool repair_lossy) {
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

  const bool lossy = repair_lossy && repair_byte_tokens(regular_tokens) > 0;

  Tokenizer tok;
  tok.lossy_ = lossy;
  tok.special_ = sp;
  tok.n_vocab_ = n_vocab;
  tok.tokens_ = std::move(regular_tokens);
  tok.ranks_.reserve(tok.tokens_.size());
  for (size_t i = 0; i < tok.tokens_.size(); ++i) {
    if (tok.tokens_[i].empty()) continue;
    tok.ranks_.emplace(tok.tokens_[i], static_cast<int>(i));
    tok.max_token_bytes_ = std::max(tok.max_token_bytes_, tok.tokens_[i].size());
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

// Byte-pair merging with tiktoken's order: repeatedly join the adjacent pair
// of parts whose concatenation has the lowest rank, the leftmost such pair on
// ties, until no adjacent pair is a token. tiktoken rescans every pair after
// each merge (quadratic on long pieces); here the parts form a doubly linked
// list over byte offsets and the candidate pairs sit in a min-heap keyed by
// (rank, start offset), so a piece of n bytes takes O(n log n). A heap entry
// goes stale when either of its parts has been merged into something else;
// it is then recognised on pop (its span no longer matches two live parts)
// and skipped. Every merge pushes the (at most two) pairs it creates, so the
// live entries are always exactly the current adjacent pairs that are tokens.
void Tokenizer::bpe(std::string_view piece, BpeScratch& scratch, std::vector<int>& out) const {
  // Offsets are 32-bit: a piece of 4 GiB or more (never seen in practice) is
  // merged in 2 GiB slices.
  constexpr size_t kMaxPiece = size_t{1} << 31;
  while (piece.size() >= UINT32_MAX) {
    bpe(piece.substr(0, kMaxPiece), scratch, out);
    piece.remove_prefix(kMaxPiece);
  }
  const size_t n = piece.size();
  if (n == 0) return;
  if (n <= max_token_bytes_) {
    if (const int whole = rank_of(piece); whole >= 0) {  // tiktoken's shortcut
      out.push_back(whole);
      return;
    }
  }
  // Part starting at byte s spans [s, next[s]); prev[s] is the start of the
  // part before it. Only entries at live part starts are meaningful.
  auto& next = scratch.next;
  auto& prev = scratch.prev;
  auto& heap = scratch.heap;
  next.resize(n);
  prev.resize(n);
  heap.clear();
  for (size_t i = 0; i < n; ++i) {
    next[i] = static_cast<uint32_t>(i + 1);
    prev[i] = static_cast<uint32_t>(i) - 1;  // wraps for i = 0: never read
  }
  const auto pair_rank = [&](uint32_t start, uint32_t end) {
    if (end - start > max_token_bytes_) return -1;
    return rank_of(piece.substr(start, end - start));
  };
  const auto later = [](const BpeScratch::Pair& a, const BpeScratch::Pair& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.start > b.start;
  };
  const auto push = [&](uint32_t start, uint32_t end) {
    const int rank = pair_rank(start, end);
    if (rank < 0) return;
    heap.push_back({rank, start, end});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (uint32_t i = 0; i + 2 <= n; ++i) {
    const int rank = pair_rank(i, i + 2);
    if (rank >= 0) heap.push_back({rank, i, i + 2});
  }
  std::make_heap(heap.begin(), heap.end(), later);

  const auto end = static_cast<uint32_t>(n);
  constexpr uint32_t kDead = UINT32_MAX;  // next[] of a part merged into its left neighbour
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const BpeScratch::Pair pair = heap.back();
    heap.pop_back();
    // Live iff `start` still begins a part and that part plus the next one
    // still span exactly [start, end). Boundaries only ever disappear, so the
    // inner boundary is then also the one the entry was made with.
    const uint32_t mid = next[pair.start];
    if (mid == kDead || mid >= end || next[mid] != pair.end) continue;
    next[pair.start] = pair.end;
    next[mid] = kDead;
    if (pair.end < end) prev[pair.end] = pair.start;
    if (pair.start > 0) push(prev[pair.start], pair.end);
    if (pair.end < end) push(pair.start, next[pair.end]);
  }
  for (uint32_t s = 0; s < end; s = next[s]) {
    const int id = rank_of(piece.substr(s, next[s] - s));
    if (id >= 0) out.push_back(id);  // always found: single bytes are checked in create()
  }
}

std::vector<int> Tokenizer::encode(std::string_view utf8) const {
  std::vector<int> ids;
  BpeScratch scratch;
  for (std::string_view piece : split_gpt2(utf8)) bpe(piece, scratch, ids);
  return ids;
}

std::vector<int> Tokenizer::encode_piece(std::string_view bytes) const {
  std::vector<int> ids;
  BpeScratch scratch;
  bpe(bytes, scratch, ids);
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
