#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>

#ifndef AMA_SHARED_DIR
#define AMA_SHARED_DIR "/work/shared"
#endif

namespace ama {
namespace {

struct GgmlVocab {
  int n_vocab = 0;
  std::vector<std::string> tokens;
};

// Reads the hparams and vocab section of a whisper.cpp legacy ggml file.
std::optional<GgmlVocab> load_ggml_vocab(const std::string& name) {
  std::ifstream in(std::string(AMA_SHARED_DIR) + "/models/whisper-vocab/" + name,
                   std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  bool ok = true;
  const auto u32 = [&]() -> uint32_t {
    if (pos + 4 > data.size()) {
      ok = false;
      return 0;
    }
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(data[pos + i]);
    pos += 4;
    return v;
  };
  const auto i32 = [&]() { return static_cast<int32_t>(u32()); };

  if (u32() != 0x67676d6cu) return std::nullopt;
  GgmlVocab vocab;
  vocab.n_vocab = i32();
  for (int i = 0; i < 10; ++i) i32();  // remaining hparams
  const int64_t n_mel = i32(), n_fft = i32();
  if (!ok || n_mel < 0 || n_fft < 0) return std::nullopt;
  pos += static_cast<size_t>(n_mel * n_fft) * 4;  // mel filters
  const int32_t count = i32();
  if (!ok || count < 0) return std::nullopt;
  for (int32_t i = 0; i < count; ++i) {
    const uint32_t len = u32();
    if (!ok || pos + len > data.size()) return std::nullopt;
    vocab.tokens.push_back(data.substr(pos, len));
    pos += len;
  }
  return vocab;
}

const GgmlVocab* vocab(bool english) {
  static const auto multi = load_ggml_vocab("for-tests-ggml-base.bin");
  static const auto en = load_ggml_vocab("for-tests-ggml-base.en.bin");
  const auto& v = english ? en : multi;
  return v ? &*v : nullptr;
}

// Cached tokenizer for a test vocab; nullptr if the file or create() failed.
const Tokenizer* tokenizer(bool english, int n_vocab = 0) {
  static std::vector<std::pair<std::pair<bool, int>, std::unique_ptr<Tokenizer>>> cache;
  const GgmlVocab* v = vocab(english);
  if (!v) return nullptr;
  if (n_vocab == 0) n_vocab = v->n_vocab;
  for (auto& [key, tok] : cache) {
    if (key == std::make_pair(english, n_vocab)) return tok.get();
  }
  auto result = Tokenizer::create(v->tokens, n_vocab);
  if (!result.ok()) {
    ADD_FAILURE() << result.message();
    return nullptr;
  }
  cache.emplace_back(std::make_pair(english, n_vocab),
                     std::make_unique<Tokenizer>(std::move(result).value()));
  return cache.back().second.get();
}

const Tokenizer* multi() { return tokenizer(false); }
const Tokenizer* english() { return tokenizer(true); }

// Id of the token consisting of the single byte b.
int byte_token(const Tokenizer& tok, unsigned char b) {
  for (int id = 0; id < tok.special().eot; ++id) {
    if (tok.token_bytes(id) == std::string(1, static_cast<char>(b))) return id;
  }
  return -1;
}

TEST(TokenizerVocab, TestFilesLoad) {
  ASSERT_NE(vocab(false), nullptr);
  ASSERT_NE(vocab(true), nullptr);
  EXPECT_EQ(vocab(false)->n_vocab, 51865);
  EXPECT_EQ(vocab(true)->n_vocab, 51864);
  EXPECT_EQ(vocab(false)->tokens.size(), 50257u);
  EXPECT_EQ(vocab(true)->tokens.size(), 50257u);  // includes "<|endoftext|>"
}

TEST(TokenizerSpecial, MultilingualIds) {
  const Tokenizer* tok = multi();
  ASSERT_NE(tok, nullptr);
  const SpecialTokens& sp = tok->special();
  EXPECT_TRUE(tok->multilingual());
  EXPECT_EQ(tok->n_vocab(), 51865);
  EXPECT_EQ(sp.eot, 50257);
  EXPECT_EQ(sp.sot, 50258);
  EXPECT_EQ(sp.language_begin, 50259);
  EXPECT_EQ(sp.n_languages, 99);
  EXPECT_EQ(sp.translate, 50358);
  EXPECT_EQ(sp.transcribe, 50359);
  EXPECT_EQ(sp.sot_lm, 50360);
  EXPECT_EQ(sp.sot_prev, 50361);
  EXPECT_EQ(sp.no_speech, 50362);
  EXPECT_EQ(sp.no_timestamps, 50363);
  EXPECT_EQ(sp.timestamp_begin, 50364);
  EXPECT_FALSE(tok->is_special(50256));
  EXPECT_TRUE(tok->is_special(50257));
  EXPECT_FALSE(tok->is_timestamp(50363));
  EXPECT_TRUE(tok->is_timestamp(50364));
  EXPECT_TRUE(tok->is_timestamp(51864));
}

TEST(TokenizerSpecial, EnglishIds) {
  const Tokenizer* tok = english();
  ASSERT_NE(tok, nullptr);
  const SpecialTokens& sp = tok->special();
  EXPECT_FALSE(tok->multilingual());
  EXPECT_EQ(tok->n_vocab(), 51864);
  EXPECT_EQ(sp.eot, 50256);
  EXPECT_EQ(sp.sot, 50257);
  EXPECT_EQ(sp.language_begin, 50258);
  EXPECT_EQ(sp.n_languages, 0);
  EXPECT_EQ(sp.translate, 50357);
  EXPECT_EQ(sp.transcribe, 50358);
  EXPECT_EQ(sp.sot_lm, 50359);
  EXPECT_EQ(sp.sot_prev, 50360);
  EXPECT_EQ(sp.no_speech, 50361);
  EXPECT_EQ(sp.no_timestamps, 50362);
  EXPECT_EQ(sp.timestamp_begin, 50363);
  EXPECT_TRUE(tok->is_special(50256));
  EXPECT_FALSE(tok->is_special(50255));
  EXPECT_EQ(tok->token_bytes(50256), "");
}

TEST(TokenizerSpecial, LargeV3Ids) {
  const Tokenizer* tok = tokenizer(false, 51866);
  ASSERT_NE(tok, nullptr);
  const SpecialTokens& sp = tok->special();
  EXPECT_EQ(sp.n_languages, 100);
  EXPECT_EQ(sp.translate, 50359);
  EXPECT_EQ(sp.transcribe, 50360);
  EXPECT_EQ(sp.no_timestamps, 50364);
  EXPECT_EQ(sp.timestamp_begin, 50365);
  EXPECT_EQ(tok->token_text(50358), "<|yue|>");
  EXPECT_EQ(tok->language_token("yue"), 50358);
  EXPECT_EQ(tok->token_text(51865), "<|30.00|>");
}

TEST(TokenizerSpecial, CustomVocabHasExtraTokens) {
  const Tokenizer* tok = tokenizer(false, 51870);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->special().n_languages, 100);
  EXPECT_EQ(tok->special().timestamp_begin, 50365);
  EXPECT_EQ(tok->token_text(51865), "<|30.00|>");
  EXPECT_TRUE(tok->is_timestamp(51865));
  EXPECT_FALSE(tok->is_timestamp(51866));
  EXPECT_TRUE(tok->is_special(51866));
  EXPECT_EQ(tok->token_text(51866), "<|extra_51866|>");
  EXPECT_EQ(tok->token_text(51869), "<|extra_51869|>");
  EXPECT_EQ(tok->token_text(51870), "");
}

TEST(TokenizerText, SpecialAndTimestampNames) {
  const Tokenizer* tok = multi();
  ASSERT_NE(tok, nullptr);
  const SpecialTokens& sp = tok->special();
  EXPECT_EQ(tok->token_text(sp.eot), "<|endoftext|>");
  EXPECT_EQ(tok->token_text(sp.sot), "<|startoftranscript|>");
  EXPECT_EQ(tok->token_text(50259), "<|en|>");
  EXPECT_EQ(tok->token_text(50260), "<|zh|>");
  EXPECT_EQ(tok->token_text(50357), "<|su|>");
  EXPECT_EQ(tok->token_text(sp.translate), "<|translate|>");
  EXPECT_EQ(tok->token_text(sp.transcribe), "<|transcribe|>");
  EXPECT_EQ(tok->token_text(sp.sot_lm), "<|startoflm|>");
  EXPECT_EQ(tok->token_text(sp.sot_prev), "<|startofprev|>");
  EXPECT_EQ(tok->token_text(sp.no_speech), "<|nospeech|>");
  EXPECT_EQ(tok->token_text(sp.no_timestamps), "<|notimestamps|>");
  EXPECT_EQ(tok->token_text(sp.timestamp_begin), "<|0.00|>");
  EXPECT_EQ(tok->token_text(sp.timestamp_begin + 1), "<|0.02|>");
  EXPECT_EQ(tok->token_text(sp.timestamp_begin + 50), "<|1.00|>");
  EXPECT_EQ(tok->token_text(sp.timestamp_begin + 761), "<|15.22|>");
  EXPECT_EQ(tok->token_text(sp.timestamp_begin + 1500), "<|30.00|>");
  EXPECT_EQ(tok->token_text(-1), "");
  EXPECT_EQ(tok->token_text(tok->n_vocab()), "");
  EXPECT_EQ(tok->token_text(220), " ");
  EXPECT_EQ(tok->token_bytes(220), " ");
  EXPECT_EQ(tok->token_bytes(sp.sot), "");
  EXPECT_EQ(tok->token_bytes(-5), "");

  const Tokenizer* en = english();
  ASSERT_NE(en, nullptr);
  EXPECT_EQ(en->token_text(50256), "<|endoftext|>");
  EXPECT_EQ(en->token_text(50362), "<|notimestamps|>");
  EXPECT_EQ(en->token_text(50363), "<|0.00|>");
  EXPECT_EQ(en->token_text(51863), "<|30.00|>");
}

TEST(TokenizerEncode, KnownIds) {
  const Tokenizer* tok = multi();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->encode(" And so my fellow Americans, ask not"),
            (std::vector<int>{400, 370, 452, 7177, 6280, 11, 1029, 406}));
  EXPECT_EQ(tok->encode(""), std::vector<int>{});
  EXPECT_EQ(tok->encode(" "), std::vector<int>{220});
}

TEST(TokenizerEncode, RoundTrips) {
  const std::vector<std::string> texts = {
      "Hello world",
      "   leading spaces and trailing  ",
      "I'm sure they'll say it's what we'd've done, can't we? THEY'RE 'quoted'",
      "In 1969, 3.14159 and 42nd -7 +1e10",
      "Punctuation!?... (parens) [brackets] {braces} <angle> \"quotes\" -- ~ @#$%^&*",
      "line one\nline two\n\n  indented\ttab\r\nend\n",
      "\xC3\x87" "a va? \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD"
      "\xE3\x82\xB9\xE3\x83\x88. \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8"
      "\xD1\x80! \xF0\x9F\x8E\x89",
      "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87 "
      "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xE2\x99\xAA\xE2\x99\xAA \xC2\xA0nbsp\xE3\x80\x80x",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
  for (bool en : {false, true}) {
    const Tokenizer* tok = en ? english() : multi();
    ASSERT_NE(tok, nullptr);
    for (const std::string& text : texts) {
      const std::vector<int> ids = tok->encode(text);
      EXPECT_FALSE(ids.empty()) << text;
      for (int id : ids) EXPECT_FALSE(tok->is_special(id)) << text;
      EXPECT_EQ(tok->decode(ids), text);
    }
  }
}

TEST(TokenizerEncode, PreSplitKeepsPiecesApart) {
  const Tokenizer* tok = multi();
  ASSERT_NE(tok, nullptr);
  // Concatenating per-piece encodings must equal encoding the whole text.
  const auto concat = [&](std::initializer_list<const char*> pieces) {
    std::vector<int> ids;
    for (const char* p : pieces) {
      const auto part = tok->encode(p);
      ids.insert(ids.end(), part.begin(), part.end());
    }
    return ids;
  };
  EXPECT_EQ(tok->encode("Hello   world"), concat({"Hello", "  ", " world"}));
  EXPECT_EQ(tok->encode("it's 42!"), concat({"it", "'s", " 42", "!"}));
  EXPECT_EQ(tok->encode("end \n"), concat({"end", " \n"}));
  EXPECT_EQ(tok->encode("a\nb"), concat({"a", "\n", "b"}));
  EXPECT_EQ(tok->encode("a \t\n  b"), concat({"a", " \t\n ", " b"}));
  EXPECT_EQ(tok->encode("x'  'll"), concat({"x", "'", " ", " '", "ll"}));
  // Non-ASCII classes: marks are not letters, other-script digits are numbers.
  EXPECT_EQ(tok->encode("\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87"),
            concat({"\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8", "\xE0\xA5\x8D", "\xE0\xA4\xA4",
                    "\xE0\xA5\x87"}));  // नमस्ते
  EXPECT_EQ(tok->encode("\xE4\xBA\x8C\xE3\x80\x87\xE4\xBA\x8C\xE4\xB8\x89"),
            concat({"\xE4\xBA\x8C", "\xE3\x80\x87", "\xE4\xBA\x8C\xE4\xB8\x89"}));  // 二〇二三
  EXPECT_EQ(tok->encode("a\xC2\xA0" "b"), concat({"a", "\xC2\xA0", "b"}));  // no-break space
}

TEST(TokenizerDecode, SplitCharacterAndPartialBytes) {
  const Tokenizer* tok = multi();
  ASSERT_NE(tok, nullptr);
  // "日" is E6 97 A5.
  const int e6 = byte_token(*tok, 0xE6), x97 = byte_token(*tok, 0x97), xa5 = byte_token(*tok, 0xA5);
  ASSERT_GE(e6, 0);
  ASSERT_GE(x97, 0);
  ASSERT_GE(xa5, 0);
  EXPECT_EQ(tok->decode({e6, x97, xa5}), "\xE6\x97\xA5");
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(tok->decode({e6}), fffd);
  EXPECT_EQ(tok->decode({e6, x97}), fffd);  // truncated sequence: one U+FFFD
  EXPECT_EQ(tok->decode({xa5}), fffd);
  EXPECT_EQ(tok->decode({x97, xa5}), fffd + fffd);
  const int a = byte_token(*tok, 'a');
  EXPECT_EQ(tok->decode({a, e6, a}), "a" + fffd + "a");
  // Specials are skipped.
  const SpecialTokens& sp = tok->special();
  EXPECT_EQ(tok->decode({sp.sot, 50259, sp.transcribe, a, sp.timestamp_begin + 3, sp.eot}), "a");

  // A character whose bytes are split across two multi-byte tokens.
  const std::string text = "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E";  // 日本語
  const std::vector<int> ids = tok->encode(text);
  bool found_split = false;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    const std::string& b = tok->token_bytes(ids[i]);
    if (tok->decode({ids[i]}) != b) {
      found_split = true;
      EXPECT_NE(tok->decode({ids[i]}).find(fffd), std::string::npos);
    }
  }
  EXPECT_TRUE(found_split);
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(TokenizerDecode, InvalidSequencesFollowPythonReplace) {
  const Tokenizer* tok = multi();
  ASSERT_NE(tok, nullptr);
  const auto bytes = [&](std::initializer_list<unsigned char> bs) {
    std::vector<int> ids;
    for (unsigned char b : bs) ids.push_back(byte_token(*tok, b));
    return tok->decode(ids);
  };
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(bytes({0xFF}), r);
  EXPECT_EQ(bytes({0xC0, 0x80}), r + r);              // overlong
  EXPECT_EQ(bytes({0xED, 0xA0, 0x80}), r + r + r);    // surrogate
  EXPECT_EQ(bytes({0xF0, 0x9F, 0x8E}), r);            // truncated 4-byte
  EXPECT_EQ(bytes({0xF0, 0x9F, 0x8E, 0x89}), "\xF0\x9F\x8E\x89");
  EXPECT_EQ(bytes({0xF4, 0x90, 0x80, 0x80}), r + r + r + r);  // > U+10FFFF
}

TEST(TokenizerLanguage, TokensAndCodes) {
  const auto& codes = Tokenizer::language_codes();
  ASSERT_EQ(codes.size(), 100u);
  EXPECT_EQ(codes.front(), "en");
  EXPECT_EQ(codes[98], "su");
  EXPECT_EQ(codes.back(), "yue");

  const Tokenizer* tok = multi();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->language_token("en"), 50259);
  EXPECT_EQ(tok->language_token("zh"), 50260);
  EXPECT_EQ(tok->language_token("su"), 50357);
  EXPECT_EQ(tok->language_token("yue"), -1);  // only in large-v3
  EXPECT_EQ(tok->language_token("xx"), -1);
  EXPECT_EQ(tok->language_code(50259), "en");
  EXPECT_EQ(tok->language_code(50357), "su");
  EXPECT_EQ(tok->language_code(50358), "");
  EXPECT_EQ(tok->language_code(220), "");

  const Tokenizer* en = english();
  ASSERT_NE(en, nullptr);
  EXPECT_EQ(en->language_token("en"), -1);
  EXPECT_EQ(en->language_code(50258), "");
}

TEST(TokenizerSuppress, NonSpeechTokensMatchOpenAI) {
  // openai/whisper Tokenizer.non_speech_tokens for the two vocabularies,
  // minus the partial-character tokens for "\xE2\x99" / " \xE2\x99" (the
  // lead bytes of the musical symbols): the test files come from an old
  // converter that stored every token that is not valid UTF-8 as U+FFFD, so
  // those two tokens cannot be recognised (multilingual 873 and 3268,
  // English 17992 and 20724).
  const std::vector<int> expected_multi = {
      1,     2,     7,     8,     9,     10,    14,    25,    26,    27,    28,    29,
      31,    58,    59,    60,    61,    62,    63,    90,    91,    92,    93,    359,
      503,   522,   542,   /*873,*/ 893, 902, 918,  922,   931,   1350,  1853,  1982,
      2460,  2627,  3246,  3253,  /*3268,*/ 3536, 3846, 3961, 4183, 4667, 6585, 6647,
      7273,  9061,  9383,  10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157, 14635,
      15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130, 26161, 26435,
      28279, 29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254};
  const std::vector<int> expected_en = {
      1,     2,     7,     8,     9,     10,    14,    25,    26,    27,    28,    29,
      31,    58,    59,    60,    61,    62,    63,    90,    91,    92,    93,    357,
      366,   438,   532,   685,   705,   796,   930,   1058,  1220,  1267,  1279,  1303,
      1343,  1377,  1391,  1635,  1782,  1875,  2162,  2361,  2488,  3467,  4008,  4211,
      4600,  4808,  5299,  5855,  6329,  7203,  9609,  9959,  10563, 10786, 11420, 11709,
      11907, 13163, 13697, 13700, 14808, 15306, 16410, 16791, /*17992,*/ 19203, 19510,
      /*20724,*/ 22305, 22935, 27007, 30109, 30420, 33409, 34949, 40283, 40493, 40549,
      47282, 49146};
  const std::string fffd = "\xEF\xBF\xBD";
  for (bool en : {false, true}) {
    const Tokenizer* tok = en ? english() : multi();
    ASSERT_NE(tok, nullptr);
    const std::vector<int> ids = tok->non_speech_tokens();
    ASSERT_FALSE(ids.empty());
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
    EXPECT_TRUE(std::binary_search(ids.begin(), ids.end(), tok->encode(" -")[0]));
    EXPECT_FALSE(std::binary_search(ids.begin(), ids.end(), 220));  // plain space stays
    EXPECT_EQ(ids, en ? expected_en : expected_multi);
    for (int lost : en ? std::vector<int>{17992, 20724} : std::vector<int>{873, 3268}) {
      EXPECT_NE(tok->token_bytes(lost).find(fffd), std::string::npos) << lost;
    }
  }
}

TEST(TokenizerVocab, RestoresByteTokensStoredAsReplacementChar) {
  for (bool en : {false, true}) {
    const GgmlVocab* v = vocab(en);
    const Tokenizer* tok = en ? english() : multi();
    ASSERT_NE(v, nullptr);
    ASSERT_NE(tok, nullptr);
    // GPT-2 byte order: ids 94..105 are bytes 161..172, 222..254 are 128..160.
    EXPECT_EQ(v->tokens[94], "\xEF\xBF\xBD");
    EXPECT_EQ(tok->token_bytes(94), "\xA1");
    EXPECT_EQ(tok->token_bytes(187), "\xFF");
    EXPECT_EQ(tok->token_bytes(222), "\x80");
    EXPECT_EQ(tok->token_bytes(255), "\xAD");
    EXPECT_EQ(tok->token_bytes(0), "!");
    EXPECT_EQ(tok->token_bytes(188), std::string(1, '\0'));
    for (int b = 0; b < 256; ++b) EXPECT_GE(byte_token(*tok, static_cast<unsigned char>(b)), 0);
  }
}

TEST(TokenizerCreate, Errors) {
  const GgmlVocab* v = vocab(false);
  ASSERT_NE(v, nullptr);
  std::vector<std::string> fewer(v->tokens.begin(), v->tokens.end() - 10);
  auto too_few = Tokenizer::create(fewer, 51865);
  EXPECT_FALSE(too_few.ok());
  EXPECT_NE(too_few.message().find("regular tokens"), std::string::npos);

  auto small = Tokenizer::create(v->tokens, 51000);
  EXPECT_FALSE(small.ok());
  EXPECT_NE(small.message().find("too small"), std::string::npos);

  // The multilingual vocab does not fit an English-only n_vocab.
  EXPECT_FALSE(Tokenizer::create(v->tokens, 51864).ok());
  EXPECT_FALSE(Tokenizer::create({}, 51865).ok());

  std::vector<std::string> no_byte = v->tokens;
  no_byte[0] = "not a byte";  // id 0 is "!"
  EXPECT_FALSE(Tokenizer::create(no_byte, 51865).ok());

  // The English vocab (ending in "<|endoftext|>") with a multilingual n_vocab.
  const GgmlVocab* en = vocab(true);
  ASSERT_NE(en, nullptr);
  EXPECT_FALSE(Tokenizer::create(en->tokens, 51865).ok());
  std::vector<std::string> en_short(en->tokens.begin(), en->tokens.end() - 1);
  EXPECT_TRUE(Tokenizer::create(en_short, 51864).ok());

  EXPECT_TRUE(Tokenizer::create(v->tokens, 51865).ok());
}

}  // namespace
}  // namespace ama
