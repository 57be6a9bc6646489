// libFuzzer target: the tokenizer (src/text/tokenizer.h, tiktoken.h).
//
// The Tokenizer is built once, in LLVMFuzzerInitialize, from openai/whisper's
// multilingual.tiktoken: $AMA_FUZZ_TIKTOKEN, by default
// ../shared/whisper-assets/multilingual.tiktoken beside the repository (the
// path is compiled in). A missing or bad file stops the run with one line.
//
// Input: one mode byte, then the payload.
//   0 encode(text), 1 encode_piece(bytes), 2 decode(ids), 3 parse_tiktoken(text),
//   4 encode_piece(token_bytes(id)) for ids; ids are 16-bit little-endian
//   values minus 1000, so they cover negatives, regular tokens, specials,
//   timestamps and ids past n_vocab.
// Checks (the promises in tokenizer.h / tiktoken.h), beyond "no crash, no
// sanitizer report":
//   - encode and encode_piece are lossless: the ids are regular tokens and
//     their bytes concatenate back to the input, valid UTF-8 or not;
//   - encode equals a plain reference: split_gpt2, then tiktoken's quadratic
//     merge loop (rescan every adjacent pair, merge the lowest rank, leftmost
//     on ties) written here independently of the heap in tokenizer.cpp;
//   - split_gpt2's pieces cover the text exactly, in order;
//   - decode always returns valid UTF-8, and returns the bytes unchanged when
//     they are valid UTF-8; so decode(encode(s)) == s for valid UTF-8 s;
//   - a regular token's own bytes encode (as one piece) to that token;
//   - parse_tiktoken never returns a repeated token.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fuzz/fuzz_file.h"
#include "text/tiktoken.h"
#include "text/tokenizer.h"

#ifndef AMA_FUZZ_DEFAULT_TIKTOKEN
#error "AMA_FUZZ_DEFAULT_TIKTOKEN must name the default multilingual.tiktoken (set by CMakeLists.txt)"
#endif

using namespace ama;

namespace {

const Tokenizer* g_tok = nullptr;
std::unordered_map<std::string, int>* g_rank = nullptr;  // bytes -> id, the reference's own table

// Independent UTF-8 check (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned c = static_cast<unsigned char>(s[i]);
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) len = 1;
    else if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return false;
    }
    i += len;
  }
  return true;
}

// tiktoken's encode of one piece, the plain way: a piece that is a token is
// that token (tiktoken's shortcut), else byte_pair_merge in O(n^2).
void reference_bpe(std::string_view piece, std::vector<int>& out) {
  if (piece.empty()) return;
  if (auto it = g_rank->find(std::string(piece)); it != g_rank->end()) {
    out.push_back(it->second);
    return;
  }
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  for (;;) {
    int best_rank = -1;
    size_t best = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = g_rank->find(parts[i] + parts[i + 1]);
      if (it != g_rank->end() && (best_rank < 0 || it->second < best_rank)) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank < 0) break;
    parts[best] += parts[best + 1];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  for (const std::string& p : parts) out.push_back(g_rank->at(p));
}

std::string concat(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) {
    if (id < 0 || id >= g_tok->special().eot) fuzz::fail("encoder produced a non-regular token");
    s += g_tok->token_bytes(id);
  }
  return s;
}

std::vector<int> read_ids(std::string_view payload) {
  std::vector<int> ids;
  for (size_t i = 0; i + 2 <= payload.size(); i += 2)
    ids.push_back(static_cast<int>(static_cast<unsigned char>(payload[i]) |
                                   (static_cast<unsigned char>(payload[i + 1]) << 8)) -
                  1000);
  return ids;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("AMA_FUZZ_TIKTOKEN");
  const std::string path = env && *env ? env : AMA_FUZZ_DEFAULT_TIKTOKEN;
  auto tok = Tokenizer::load_tiktoken(path, 51865);
  if (!tok) {
    std::fprintf(stderr, "fuzz_tokenizer: cannot build the tokenizer (set AMA_FUZZ_TIKTOKEN): %s\n",
                 tok.message().c_str());
    std::exit(2);
  }
  g_tok = new Tokenizer(std::move(*tok));
  g_rank = new std::unordered_map<std::string, int>();
  for (int id = 0; id < g_tok->special().eot; ++id) g_rank->emplace(g_tok->token_bytes(id), id);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % 5;
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);

  switch (mode) {
    case 0: {
      const std::vector<int> ids = g_tok->encode(payload);
      if (concat(ids) != payload) fuzz::fail("encode is not lossless");
      std::vector<int> ref;
      size_t covered = 0;
      for (std::string_view piece : split_gpt2(payload)) {
        if (piece.empty() || piece.data() != payload.data() + covered) fuzz::fail("split_gpt2 pieces do not tile the text");
        covered += piece.size();
        reference_bpe(piece, ref);
      }
      if (covered != payload.size()) fuzz::fail("split_gpt2 pieces do not cover the text");
      if (ids != ref) fuzz::fail("encode differs from the reference merge loop");
      const std::string back = g_tok->decode(ids);
      if (!valid_utf8(back)) fuzz::fail("decode returned invalid UTF-8");
      if (valid_utf8(payload) && back != payload) fuzz::fail("decode(encode(s)) != s for valid UTF-8 s");
      break;
    }
    case 1: {
      const std::vector<int> ids = g_tok->encode_piece(payload);
      if (concat(ids) != payload) fuzz::fail("encode_piece is not lossless");
      std::vector<int> ref;
      reference_bpe(payload, ref);
      if (ids != ref) fuzz::fail("encode_piece differs from the reference merge loop");
      break;
    }
    case 2: {
      const std::vector<int> ids = read_ids(payload);
      const std::string text = g_tok->decode(ids);
      if (!valid_utf8(text)) fuzz::fail("decode returned invalid UTF-8");
      std::string bytes;
      for (int id : ids) {
        bytes += g_tok->token_bytes(id);
        (void)g_tok->token_text(id);
        (void)g_tok->is_timestamp(id);
        (void)g_tok->language_code(id);
      }
      if (valid_utf8(bytes) && text != bytes) fuzz::fail("decode changed valid UTF-8");
      break;
    }
    case 3: {
      auto tokens = parse_tiktoken(payload);
      if (!tokens) {
        if (tokens.message().empty()) fuzz::fail("parse_tiktoken error without a message");
        break;
      }
      std::set<std::string> seen;
      for (const std::string& t : *tokens)
        if (!seen.insert(t).second) fuzz::fail("parse_tiktoken returned a repeated token");
      (void)Tokenizer::from_tiktoken(payload, 51865);
      break;
    }
    case 4: {
      for (int id : read_ids(payload)) {
        // multilingual.tiktoken's rank 50256 is the empty token: no text encodes to it.
        if (id < 0 || id >= g_tok->special().eot || g_tok->token_bytes(id).empty()) continue;
        const std::vector<int> one = g_tok->encode_piece(g_tok->token_bytes(id));
        if (one.size() != 1 || one[0] != id) fuzz::fail("a token's own bytes do not encode to that token");
      }
      break;
    }
  }
  return 0;
}
