#include "decode/timing.h"

#include "model/whisper_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace ama {

namespace {

// ---------------------------------------------------------------- alignment heads

struct KnownHeads {
  int n_text_layer, n_text_state, n_text_head, n_vocab, n_mels;
  std::vector<AttentionHead> heads;
};

// whisper.cpp's g_aheads tables (openai _ALIGNMENT_HEADS), by model shape.
const std::vector<KnownHeads>& known_heads() {
  static const std::vector<KnownHeads> table = {
      // tiny.en
      {4, 384, 6, 51864, 80, {{1, 0}, {2, 0}, {2, 5}, {3, 0}, {3, 1}, {3, 2}, {3, 3}, {3, 4}}},
      // tiny
      {4, 384, 6, 51865, 80, {{2, 2}, {3, 0}, {3, 2}, {3, 3}, {3, 4}, {3, 5}}},
      // base.en
      {6, 512, 8, 51864, 80, {{3, 3}, {4, 7}, {5, 1}, {5, 5}, {5, 7}}},
      // base
      {6, 512, 8, 51865, 80, {{3, 1}, {4, 2}, {4, 3}, {4, 7}, {5, 1}, {5, 2}, {5, 4}, {5, 6}}},
      // small.en
      {12, 768, 12, 51864, 80, {{6, 6}, {7, 0}, {7, 3}, {7, 8}, {8, 2}, {8, 5}, {8, 7}, {9, 0}, {9, 4}, {9, 8},
                                {9, 10}, {10, 0}, {10, 1}, {10, 2}, {10, 3}, {10, 6}, {10, 11}, {11, 2}, {11, 4}}},
      // small
      {12, 768, 12, 51865, 80, {{5, 3}, {5, 9}, {8, 0}, {8, 4}, {8, 7}, {8, 8}, {9, 0}, {9, 7}, {9, 9}, {10, 5}}},
      // medium.en
      {24, 1024, 16, 51864, 80, {{11, 4}, {14, 1}, {14, 12}, {14, 14}, {15, 4}, {16, 0}, {16, 4}, {16, 9}, {17, 12},
                                 {17, 14}, {18, 7}, {18, 10}, {18, 15}, {20, 0}, {20, 3}, {20, 9}, {20, 14}, {21, 12}}},
      // medium
      {24, 1024, 16, 51865, 80, {{13, 15}, {15, 4}, {15, 15}, {16, 1}, {20, 0}, {23, 4}}},
      // large-v2 (large-v1 has the same shape; v2 is the one in use)
      {32, 1280, 20, 51865, 80, {{10, 12}, {13, 17}, {16, 11}, {16, 12}, {16, 13}, {17, 15}, {17, 16}, {18, 4},
                                 {18, 11}, {18, 19}, {19, 11}, {21, 2}, {21, 3}, {22, 3}, {22, 9}, {22, 12},
                                 {23, 5}, {23, 7}, {23, 13}, {25, 5}, {26, 1}, {26, 12}, {27, 15}}},
      // large-v3
      {32, 1280, 20, 51866, 128, {{7, 0}, {10, 17}, {12, 18}, {13, 12}, {16, 1}, {17, 14}, {19, 11}, {21, 4},
                                  {24, 1}, {25, 6}}},
      // large-v3-turbo
      {4, 1280, 20, 51866, 128, {{2, 4}, {2, 11}, {3, 3}, {3, 6}, {3, 11}, {3, 14}}},
  };
  return table;
}

// ---------------------------------------------------------------- UTF-8 and Python string helpers

constexpr char32_t kReplacement = 0xFFFD;

// Code points of valid UTF-8 (Tokenizer::decode's output); a stray byte
// counts as one U+FFFD, which never happens for decoded text.
std::u32string code_points(const std::string& s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(kReplacement);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string utf8(const std::u32string& cps) {
  std::string out;
  for (char32_t c : cps) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

// Python's str.isspace.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.strip().
std::string strip(const std::string& s) {
  const std::u32string cps = code_points(s);
  size_t b = 0, e = cps.size();
  while (b < e && is_space(cps[b])) ++b;
  while (e > b && is_space(cps[e - 1])) --e;
  return utf8(cps.substr(b, e - b));
}

// Python's `needle in haystack` for strings (a substring test; "" is in everything).
// On UTF-8 a byte substring test is the same as a code-point one.
bool py_in(const std::string& needle, const std::string& haystack) {
  return haystack.find(needle) != std::string::npos;
}

bool starts_with(const std::string& s, char c) { return !s.empty() && s.front() == c; }
bool ends_with(const std::string& s, char c) { return !s.empty() && s.back() == c; }

// openai decode_with_timestamps: regular tokens' bytes decoded with U+FFFD
// for invalid sequences, special tokens as their names. Decoding each run of
// regular tokens on its own is the same as decoding the whole byte string:
// the names are ASCII, and an ASCII byte always ends an invalid sequence.
std::string decode_with_specials(const Tokenizer& tok, const std::vector<int>& tokens) {
  std::string out;
  std::vector<int> run;
  for (int t : tokens) {
    if (tok.is_special(t)) {
      out += tok.decode(run);
      run.clear();
      out += tok.token_text(t);
    } else {
      run.push_back(t);
    }
  }
  return out + tok.decode(run);
}

WordTokens split_tokens_on_unicode(const Tokenizer& tok, const std::vector<int>& tokens) {
  const std::u32string full = code_points(decode_with_specials(tok, tokens));
  WordTokens r;
  std::vector<int> current;
  size_t offset = 0;  // in code points of `full`
  for (int t : tokens) {
    current.push_back(t);
    const std::string decoded = decode_with_specials(tok, current);
    const std::u32string cps = code_points(decoded);
    const size_t bad = cps.find(kReplacement);
    // Split unless the piece ends in an incomplete character, that is unless
    // its U+FFFD is not one the whole text has at that place too.
    if (bad == std::u32string::npos || (offset + bad < full.size() && full[offset + bad] == kReplacement)) {
      r.words.push_back(decoded);
      r.tokens.push_back(current);
      current.clear();
      offset += cps.size();
    }
  }
  return r;
}

WordTokens split_tokens_on_spaces(const Tokenizer& tok, const std::vector<int>& tokens) {
  static const std::string kPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";  // Python string.punctuation
  const WordTokens sub = split_tokens_on_unicode(tok, tokens);
  WordTokens r;
  for (size_t i = 0; i < sub.words.size(); ++i) {
    const std::string& w = sub.words[i];
    const bool special = sub.tokens[i].front() >= tok.special().eot;
    const bool with_space = starts_with(w, ' ');
    const bool punctuation = py_in(strip(w), kPunctuation);
    if (special || with_space || punctuation || r.words.empty()) {
      r.words.push_back(w);
      r.tokens.push_back(sub.tokens[i]);
    } else {
      r.words.back() += w;
      r.tokens.back().insert(r.tokens.back().end(), sub.tokens[i].begin(), sub.tokens[i].end());
    }
  }
  return r;
}

// numpy.median.
double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

// Python's round(x, 2): correctly rounded to two decimals, as printf does.
double round2(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", x);
  return std::strtod(buf, nullptr);
}

constexpr double kTokensPerSecond = 50.0;  // audio positions per second (openai TOKENS_PER_SECOND)

}  // namespace

std::vector<AttentionHead> alignment_heads(const HParams& hp) {
  for (const KnownHeads& k : known_heads())
    if (k.n_text_layer == hp.n_text_layer && k.n_text_state == hp.n_text_state && k.n_text_head == hp.n_text_head &&
        k.n_vocab == hp.n_vocab && k.n_mels == hp.n_mels)
      return k.heads;
  std::vector<AttentionHead> heads;
  for (int l = hp.n_text_layer / 2; l < hp.n_text_layer; ++l)
    for (int h = 0; h < hp.n_text_head; ++h) heads.push_back({l, h});
  return heads;
}

std::vector<AttentionHead> alignment_heads(const WhisperModel& model) {
  if (model.alignment_heads.empty()) return alignment_heads(model.hp);
  std::vector<AttentionHead> heads;
  for (const auto& [layer, head] : model.alignment_heads) heads.push_back({layer, head});
  return heads;
}

std::vector<float> median_filter(const std::vector<float>& x, int rows, int cols, int width) {
  const int pad = width / 2;
  if (cols <= pad || width <= 1 || rows <= 0) return x;
  std::vector<float> out(static_cast<size_t>(rows) * cols);
  std::vector<float> window(width);
  for (int r = 0; r < rows; ++r) {
    const float* in = x.data() + static_cast<size_t>(r) * cols;
    for (int c = 0; c < cols; ++c) {
      for (int k = 0; k < width; ++k) {
        int j = c - pad + k;
        if (j < 0) j = -j;                           // reflect: x[-1] = x[1]
        if (j >= cols) j = 2 * (cols - 1) - j;       // x[cols] = x[cols - 2]
        window[k] = in[j];
      }
      std::nth_element(window.begin(), window.begin() + pad, window.end());
      out[static_cast<size_t>(r) * cols + c] = window[pad];
    }
  }
  return out;
}

DtwPath dtw(const float* x, int n, int m) {
  DtwPath path;
  if (n <= 0 || m <= 0) return path;
  const size_t w = static_cast<size_t>(m) + 1;
  std::vector<float> cost((static_cast<size_t>(n) + 1) * w, INFINITY);
  std::vector<signed char> trace((static_cast<size_t>(n) + 1) * w, -1);
  cost[0] = 0.0f;
  for (int j = 1; j <= m; ++j)
    for (int i = 1; i <= n; ++i) {
      const float c0 = cost[(i - 1) * w + j - 1], c1 = cost[(i - 1) * w + j], c2 = cost[i * w + j - 1];
      float c;
      signed char t;
      if (c0 < c1 && c0 < c2) {
        c = c0, t = 0;
      } else if (c1 < c0 && c1 < c2) {
        c = c1, t = 1;
      } else {
        c = c2, t = 2;
      }
      // openai adds in float64 (x.double()) and stores into a float32 array.
      cost[i * w + j] = static_cast<float>(static_cast<double>(x[static_cast<size_t>(i - 1) * m + j - 1]) + c);
      trace[i * w + j] = t;
    }
  for (int j = 0; j <= m; ++j) trace[j] = 2;
  for (int i = 0; i <= n; ++i) trace[i * w] = 1;
  int i = n, j = m;
  while (i > 0 || j > 0) {
    path.text_indices.push_back(i - 1);
    path.time_indices.push_back(j - 1);
    const signed char t = trace[i * w + j];
    if (t == 0) {
      --i, --j;
    } else if (t == 1) {
      --i;
    } else {
      --j;
    }
  }
  std::reverse(path.text_indices.begin(), path.text_indices.end());
  std::reverse(path.time_indices.begin(), path.time_indices.end());
  return path;
}

WordTokens split_to_word_tokens(const Tokenizer& tok, const std::vector<int>& tokens, const std::string& language) {
  static const char* const kNoSpaces[] = {"zh", "ja", "th", "lo", "my", "yue"};
  for (const char* l : kNoSpaces)
    if (language == l) return split_tokens_on_unicode(tok, tokens);
  return split_tokens_on_spaces(tok, tokens);
}

void merge_punctuations(std::vector<WordTiming>& a, const std::string& prepended, const std::string& appended) {
  const int n = static_cast<int>(a.size());
  // Prepended punctuation joins the following word (scanning backwards).
  for (int i = n - 2, j = n - 1; i >= 0; --i) {
    WordTiming& prev = a[i];
    WordTiming& next = a[j];
    if (starts_with(prev.word, ' ') && py_in(strip(prev.word), prepended)) {
      next.word = prev.word + next.word;
      next.tokens.insert(next.tokens.begin(), prev.tokens.begin(), prev.tokens.end());
      prev.word.clear();
      prev.tokens.clear();
    } else {
      j = i;
    }
  }
  // Appended punctuation joins the previous word.
  for (int i = 0, j = 1; j < n; ++j) {
    WordTiming& prev = a[i];
    WordTiming& next = a[j];
    if (!ends_with(prev.word, ' ') && py_in(next.word, appended)) {
      prev.word += next.word;
      prev.tokens.insert(prev.tokens.end(), next.tokens.begin(), next.tokens.end());
      next.word.clear();
      next.tokens.clear();
    } else {
      i = j;
    }
  }
}

Result<std::vector<WordTiming>> find_alignment(const Tokenizer& tok, const std::string& language, int n_sot,
                                               const std::vector<int>& text_tokens, const AlignmentInput& in,
                                               int num_frames, int medfilt_width) {
  if (text_tokens.empty()) return std::vector<WordTiming>{};
  const int n_text = static_cast<int>(text_tokens.size());
  const int eot = tok.special().eot;
  if (n_sot < 0 || in.n_tokens != n_sot + n_text + 2)
    return make_error("find_alignment: " + std::to_string(in.n_tokens) + " weight rows for " +
                      std::to_string(n_sot) + " start tokens, no_timestamps, " + std::to_string(n_text) +
                      " text tokens and eot");
  if (!in.weights || !in.logits || in.n_heads <= 0 || in.n_ctx <= 0)
    return make_error("find_alignment: no attention weights or logits");
  if (in.n_vocab < eot) return make_error("find_alignment: logits have fewer columns than eot");
  for (int t : text_tokens)
    if (t < 0 || t >= eot) return make_error("find_alignment: text token " + std::to_string(t) + " is not below eot");
  const int T = in.n_tokens, H = in.n_heads;
  const int F = std::min(num_frames / 2, in.n_ctx);
  if (F <= 0) return std::vector<WordTiming>{};

  // Probability of each text token, softmax over the text vocabulary (< eot)
  // of the row before it (the no_timestamps row predicts the first).
  std::vector<double> probs(n_text);
  for (int i = 0; i < n_text; ++i) {
    const float* row = in.logits + static_cast<size_t>(n_sot + i) * in.n_vocab;
    const float mx = *std::max_element(row, row + eot);
    double sum = 0.0;
    for (int v = 0; v < eot; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
    probs[i] = std::exp(static_cast<double>(row[text_tokens[i]]) - mx) / sum;
  }

  // openai cuts the scores to the audio's positions before the softmax; with
  // the softmax already taken over all positions, renormalising the kept
  // part gives the same weights.
  std::vector<float> w(static_cast<size_t>(H) * T * F);
  for (int h = 0; h < H; ++h)
    for (int t = 0; t < T; ++t) {
      const float* src = in.weights + (static_cast<size_t>(h) * T + t) * in.n_ctx;
      float* dst = w.data() + (static_cast<size_t>(h) * T + t) * F;
      double sum = 0.0;
      for (int f = 0; f < F; ++f) sum += src[f];
      const double inv = sum > 0 ? 1.0 / sum : 0.0;
      for (int f = 0; f < F; ++f) dst[f] = static_cast<float>(src[f] * inv);
    }
  // Standardise each (head, frame) column over the tokens (population std).
  for (int h = 0; h < H; ++h)
    for (int f = 0; f < F; ++f) {
      float* col = w.data() + static_cast<size_t>(h) * T * F + f;
      double mean = 0.0, var = 0.0;
      for (int t = 0; t < T; ++t) mean += col[static_cast<size_t>(t) * F];
      mean /= T;
      for (int t = 0; t < T; ++t) {
        const double d = col[static_cast<size_t>(t) * F] - mean;
        var += d * d;
      }
      const double sd = std::sqrt(var / T);
      // A constant column (0 / 0 in openai) becomes zeros instead of NaNs.
      for (int t = 0; t < T; ++t)
        col[static_cast<size_t>(t) * F] = sd > 0 ? static_cast<float>((col[static_cast<size_t>(t) * F] - mean) / sd) : 0.0f;
    }
  w = median_filter(w, H * T, F, medfilt_width);

  // Mean over the heads of the rows no_timestamps .. last text token, negated.
  const int N = n_text + 1;
  std::vector<float> cost(static_cast<size_t>(N) * F);
  for (int r = 0; r < N; ++r)
    for (int f = 0; f < F; ++f) {
      double s = 0.0;
      for (int h = 0; h < H; ++h) s += w[(static_cast<size_t>(h) * T + n_sot + r) * F + f];
      cost[static_cast<size_t>(r) * F + f] = -static_cast<float>(s / H);
    }
  const DtwPath path = dtw(cost.data(), N, F);

  std::vector<int> with_eot = text_tokens;
  with_eot.push_back(eot);
  const WordTokens wt = split_to_word_tokens(tok, with_eot, language);
  if (wt.tokens.size() <= 1) return std::vector<WordTiming>{};
  std::vector<size_t> bounds{0};
  for (size_t k = 0; k + 1 < wt.tokens.size(); ++k) bounds.push_back(bounds.back() + wt.tokens[k].size());

  // The path's first step onto each text row: the time of that token.
  std::vector<double> jump_times;
  for (size_t k = 0; k < path.text_indices.size(); ++k)
    if (k == 0 || path.text_indices[k] != path.text_indices[k - 1])
      jump_times.push_back(path.time_indices[k] / kTokensPerSecond);

  std::vector<WordTiming> out;
  for (size_t k = 0; k + 1 < bounds.size(); ++k) {
    const size_t b = bounds[k], e = bounds[k + 1];
    if (e >= jump_times.size() || e > probs.size()) return make_error("find_alignment: the path is shorter than the text");
    WordTiming t;
    t.word = wt.words[k];
    t.tokens = wt.tokens[k];
    t.start = jump_times[b];
    t.end = jump_times[e];
    double s = 0.0;
    for (size_t i = b; i < e; ++i) s += probs[i];
    t.probability = e > b ? s / static_cast<double>(e - b) : std::numeric_limits<double>::quiet_NaN();
    out.push_back(std::move(t));
  }
  return out;
}

void distribute_words(std::vector<WordTiming> alignment, int eot, std::vector<Segment>& segments,
                      double& last_speech_timestamp, const WordTimestampOptions& options) {
  if (segments.empty()) return;
  std::vector<double> durations;
  for (const WordTiming& t : alignment)
    if (t.end - t.start != 0.0) durations.push_back(t.end - t.start);
  const double median_duration = durations.empty() ? 0.0 : std::min(0.7, median(durations));
  const double max_duration = median_duration * 2;

  // Words at sentence boundaries no longer than twice the median.
  if (!durations.empty()) {
    static const std::string kSentenceEnd = ".\u3002!\uff01?\uff1f";
    for (size_t i = 1; i < alignment.size(); ++i)
      if (alignment[i].end - alignment[i].start > max_duration) {
        if (py_in(alignment[i].word, kSentenceEnd))
          alignment[i].end = alignment[i].start + max_duration;
        else if (py_in(alignment[i - 1].word, kSentenceEnd))
          alignment[i].start = alignment[i].end - max_duration;
      }
  }
  merge_punctuations(alignment, options.prepend_punctuations, options.append_punctuations);

  const double time_offset = segments[0].seek * static_cast<double>(kHopLength) / kSampleRate;
  double last_speech = last_speech_timestamp;
  size_t word_index = 0;
  for (Segment& seg : segments) {
    size_t n_text = 0;
    for (int t : seg.tokens)
      if (t < eot) ++n_text;
    size_t saved = 0;
    std::vector<Word> words;
    while (word_index < alignment.size() && saved < n_text) {
      const WordTiming& t = alignment[word_index];
      if (!t.word.empty())
        words.push_back(Word{t.word, round2(time_offset + t.start), round2(time_offset + t.end), t.probability});
      saved += t.tokens.size();
      ++word_index;
    }
    if (!words.empty()) {
      // The first and second words after a pause no longer than twice the median.
      if (words[0].end - last_speech > median_duration * 4 &&
          (words[0].end - words[0].start > max_duration ||
           (words.size() > 1 && words[1].end - words[0].start > max_duration * 2))) {
        if (words.size() > 1 && words[1].end - words[1].start > max_duration) {
          const double boundary = std::max(words[1].end / 2, words[1].end - max_duration);
          words[0].end = words[1].start = boundary;
        }
        words[0].start = std::max(0.0, words[0].end - max_duration);
      }
      // The segment's own start when the first word is too long, else the word's.
      if (seg.start < words[0].end && seg.start - 0.5 > words[0].start)
        words[0].start = std::max(0.0, std::min(words[0].end - median_duration, seg.start));
      else
        seg.start = words[0].start;
      // Likewise at the end.
      if (seg.end > words.back().start && seg.end + 0.5 < words.back().end)
        words.back().end = std::max(words.back().start + median_duration, seg.end);
      else
        seg.end = words.back().end;
      last_speech = seg.end;
    }
    seg.words = std::move(words);
  }
  // openai's transcribe: last_speech_timestamp = get_end(segments).
  last_speech_timestamp = segments.back().end;
  for (auto s = segments.rbegin(); s != segments.rend(); ++s)
    if (!s->words.empty()) {
      last_speech_timestamp = s->words.back().end;
      break;
    }
}

Status add_word_timestamps(DecoderStage& stage, std::shared_ptr<const EncoderState> encoder, const Tokenizer& tok,
                           const std::vector<int>& sot_sequence, const std::string& language,
                           const std::vector<AttentionHead>& heads, int num_frames, std::vector<Segment>& segments,
                           double& last_speech_timestamp, const WordTimestampOptions& options) {
  if (segments.empty()) return Status::Ok();
  const SpecialTokens& sp = tok.special();
  std::vector<int> text;
  for (const Segment& s : segments)
    for (int t : s.tokens)
      if (t < sp.eot) text.push_back(t);
  std::vector<WordTiming> alignment;
  if (!text.empty()) {
    std::vector<int> tokens = sot_sequence;
    tokens.push_back(sp.no_timestamps);
    tokens.insert(tokens.end(), text.begin(), text.end());
    tokens.push_back(sp.eot);
    std::vector<float> weights, logits;
    AMA_TRY(stage.align(std::move(encoder), tokens, heads, weights, logits));
    AlignmentInput in;
    in.n_heads = static_cast<int>(heads.size());
    in.n_tokens = static_cast<int>(tokens.size());
    in.n_vocab = stage.n_vocab();
    in.n_ctx = static_cast<int>(weights.size() / (static_cast<size_t>(in.n_heads) * in.n_tokens));
    in.weights = weights.data();
    in.logits = logits.data();
    if (logits.size() != static_cast<size_t>(in.n_tokens) * in.n_vocab || in.n_ctx <= 0)
      return make_error("add_word_timestamps: the stage returned weights or logits of the wrong size");
    auto a = find_alignment(tok, language, static_cast<int>(sot_sequence.size()), text, in, num_frames,
                            options.medfilt_width);
    if (!a) return a.error();
    alignment = std::move(*a);
  }
  distribute_words(std::move(alignment), sp.eot, segments, last_speech_timestamp, options);
  return Status::Ok();
}

}  // namespace ama
