// Whisper tokenizer: byte-level BPE over the GPT-2 style vocabulary stored in
// whisper.cpp ggml model files, plus Whisper's special tokens (end of text,
// start of transcript, languages, tasks, timestamps, ...).
//
// Token ids follow tiktoken / openai-whisper / whisper.cpp. Regular token i
// has BPE rank i; special tokens come right after the regular ones.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.h"

namespace ama {

struct SpecialTokens {
  int eot, sot, translate, transcribe, sot_lm, sot_prev, no_speech, no_timestamps, timestamp_begin;
  int language_begin;  // first language token (sot+1)
  int n_languages;     // 0 for English-only
};

class Tokenizer {
 public:
  // regular_tokens[i] = raw bytes of token i. n_vocab comes from the model
  // hparams: 51864 English-only, 51865 multilingual, 51866 large-v3, or a
  // custom (multilingual) size; ids past the timestamps are unnamed specials.
  // Multilingual iff n_vocab >= 51865. The English ggml vocab also lists
  // "<|endoftext|>" as its last entry; that one entry is accepted and dropped.
  // Byte tokens that old converters stored as U+FFFD are restored (see .cpp).
  // Errors if the token count does not match n_vocab or a byte token is missing.
  static Result<Tokenizer> create(std::vector<std::string> regular_tokens, int n_vocab);

  // The same from openai/whisper's exact BPE files (gpt2.tiktoken for
  // English-only n_vocab 51864, multilingual.tiktoken for 51865 and up):
  // `contents` is the file's text, one "base64(token bytes) rank" line per
  // token (see parse_tiktoken in text/tiktoken.h). Errors for a malformed
  // file (bad base64, ranks not 0, 1, 2, ..., a repeated token) or a token
  // count that does not fit n_vocab. No lossy-vocab repair is applied.
  static Result<Tokenizer> from_tiktoken(std::string_view contents, int n_vocab);
  // Reads the .tiktoken file at `path`; errors name the path (also when the
  // file is missing or unreadable).
  static Result<Tokenizer> load_tiktoken(const std::string& path, int n_vocab);

  // The same from a Hugging Face vocab.json (or tokenizer.json's model.vocab):
  // spelled[i] is regular token i as those files spell it, GPT-2's byte-level
  // alphabet (bytes_to_unicode in GPT-2's encoder.py: printable bytes 33..126,
  // 161..172 and 174..255 stand for themselves, the other 68 bytes are
  // U+0100 + their rank in ascending order), UTF-8 encoded. Errors for a
  // character outside those 256 or a token count that does not fit n_vocab.
  static Result<Tokenizer> from_gpt2_unicode(const std::vector<std::string>& spelled, int n_vocab);

  int n_vocab() const { return n_vocab_; }
  bool multilingual() const { return special_.n_languages > 0; }
  const SpecialTokens& special() const { return special_; }

  bool is_special(int id) const { return id >= special_.eot; }
  // id >= timestamp_begin, within the 1501 timestamp tokens (<|0.00|>..<|30.00|>).
  bool is_timestamp(int id) const;

  // Raw bytes for regular ids; tiktoken names for specials ("<|en|>",
  // "<|startoftranscript|>", "<|0.02|>", "<|extra_N|>"); "" if out of range.
  std::string token_text(int id) const;
  // Raw bytes of a regular token; empty for specials and out-of-range ids.
  const std::string& token_bytes(int id) const;

  // Concatenates the bytes of regular tokens (specials and out-of-range ids
  // are skipped) and returns valid UTF-8: each invalid sequence becomes
  // U+FFFD, like Python's bytes.decode("utf-8", errors="replace").
  std::string decode(const std::vector<int>& ids) const;

  // Byte-level BPE with tiktoken semantics: the GPT-2 pre-split pattern
  // (split_gpt2 in text/tiktoken.h, Unicode 16.0 classes), then per piece
  // the lowest-ranked adjacent pair merged first, the leftmost on ties.
  // With a .tiktoken vocab the ids equal tiktoken's encode_ordinary. Never
  // produces special tokens ("<|endoftext|>" in the text is plain text).
  std::vector<int> encode(std::string_view utf8) const;
  // The byte-pair merges alone: `bytes` (valid UTF-8 or not) as one piece,
  // without the pre-split, as encode() treats each piece: a piece that is
  // itself a token is that token. O(n log n) in the piece length.
  std::vector<int> encode_piece(std::string_view bytes) const;

  // Language token for a code such as "en"; -1 if unknown or not in this model.
  int language_token(std::string_view code) const;
  // Code of a language token; "" if `token` is not a language token.
  std::string language_code(int token) const;
  // The 100 codes in openai/whisper LANGUAGES order ("en", "zh", ..., "yue").
  static const std::vector<std::string>& language_codes();

  // openai/whisper Tokenizer.non_speech_tokens: sorted, unique. With a lossy
  // (old-converter) vocab the lost partial "\xE2\x99" tokens cannot be found.
  std::vector<int> non_speech_tokens() const;

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using RankMap = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

  // Working memory of bpe(), reused across the pieces of one encode().
  struct BpeScratch {
    struct Pair {
      int rank;
      uint32_t start, end;  // byte span of two adjacent parts
    };
    std::vector<uint32_t> next, prev;
    std::vector<Pair> heap;
  };

  Tokenizer() = default;
  static Result<Tokenizer> build(std::vector<std::string> regular_tokens, int n_vocab,
                                 bool repair_lossy);
  int rank_of(std::string_view bytes) const;  // -1 if not a regular token
  void bpe(std::string_view piece, BpeScratch& scratch, std::vector<int>& out) const;

  std::vector<std::string> tokens_;  // regular tokens, index = id = rank
  RankMap ranks_;                    // bytes -> lowest id with those bytes
  SpecialTokens special_{};
  int n_vocab_ = 0;
  size_t max_token_bytes_ = 0;  // longest regular token: longer spans are never tokens
  bool lossy_ = false;  // byte tokens had been stored as U+FFFD (old converter)
};

}  // namespace ama
