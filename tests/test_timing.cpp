// Word timestamps (decode/timing.h), the model-free parts, against
// openai/whisper timing.py's behaviour: DTW on openai's planted-path
// matrices, on brute force and on crafted ties; the median filter against a
// naive reflect-pad-and-sort; punctuation merging; the alignment heads of
// every standard shape; the segment rules of add_word_timestamps.
// test_timing_model.cpp has the parts that need a tokenizer or a model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "decode/timing.h"
#include "model/hparams.h"

namespace ama {
namespace {

// ------------------------------------------------------------------ DTW

// openai tests/test_timing.py test_dtw: a random [0, 1) matrix with a
// planted monotone path (steps shuffled, a down and a right in a row taken
// as one diagonal) lowered by 1; DTW must find exactly that path.
class DtwPlanted : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(DtwPlanted, FindsThePlantedPath) {
  const auto [N, M] = GetParam();
  std::mt19937 rng(42);
  std::vector<int> steps(N - 1, 0);
  steps.insert(steps.end(), M - 1, 1);
  std::shuffle(steps.begin(), steps.end(), rng);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(N) * M);
  for (float& v : x) v = u(rng);
  std::vector<int> ti, tj;
  for (size_t i = 0, j = 0, k = 0;;) {
    x[i * M + j] -= 1.0f;
    ti.push_back(static_cast<int>(i));
    tj.push_back(static_cast<int>(j));
    if (k == steps.size()) break;
    if (k + 1 < steps.size() && steps[k] != steps[k + 1]) {
      ++i, ++j, k += 2;
      continue;
    }
    (steps[k] == 0 ? i : j) += 1;
    ++k;
  }
  const DtwPath p = dtw(x.data(), N, M);
  EXPECT_EQ(p.text_indices, ti);
  EXPECT_EQ(p.time_indices, tj);
}

INSTANTIATE_TEST_SUITE_P(OpenaiSizes, DtwPlanted,
                         ::testing::Values(std::pair{10, 20}, std::pair{32, 16}, std::pair{123, 1500},
                                           std::pair{234, 189}));

// All monotone paths of a small matrix, the cheapest kept.
void brute_force(const std::vector<float>& x, int n, int m, int i, int j, double cost, std::vector<std::pair<int, int>>& path,
                 double& best, std::vector<std::pair<int, int>>& best_path, int& n_best) {
  cost += x[static_cast<size_t>(i) * m + j];
  path.emplace_back(i, j);
  if (i == n - 1 && j == m - 1) {
    if (cost < best - 1e-9) {
      best = cost, best_path = path, n_best = 1;
    } else if (std::fabs(cost - best) <= 1e-9) {
      ++n_best;
    }
  } else {
    if (i + 1 < n && j + 1 < m) brute_force(x, n, m, i + 1, j + 1, cost, path, best, best_path, n_best);
    if (i + 1 < n) brute_force(x, n, m, i + 1, j, cost, path, best, best_path, n_best);
    if (j + 1 < m) brute_force(x, n, m, i, j + 1, cost, path, best, best_path, n_best);
  }
  path.pop_back();
}

TEST(Dtw, MatchesBruteForceOnSmallRandomMatrices) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  int compared = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + trial % 5, m = 1 + (trial / 5) % 6;
    std::vector<float> x(static_cast<size_t>(n) * m);
    for (float& v : x) v = g(rng);
    std::vector<std::pair<int, int>> path, best_path;
    double best = INFINITY;
    int n_best = 0;
    brute_force(x, n, m, 0, 0, 0.0, path, best, best_path, n_best);
    const DtwPath p = dtw(x.data(), n, m);
    ASSERT_EQ(p.text_indices.size(), p.time_indices.size());
    std::vector<std::pair<int, int>> ours;
    double cost = 0;
    for (size_t k = 0; k < p.text_indices.size(); ++k) {
      ours.emplace_back(p.text_indices[k], p.time_indices[k]);
      cost += x[static_cast<size_t>(p.text_indices[k]) * m + p.time_indices[k]];
    }
    EXPECT_NEAR(cost, best, 1e-4) << n << "x" << m << " trial " << trial;
    if (n_best == 1) {
      EXPECT_EQ(ours, best_path) << n << "x" << m << " trial " << trial;
      ++compared;
    }
  }
  EXPECT_GT(compared, 150);
}

TEST(Dtw, CraftedPathsAndTies) {
  // All ties: openai's `else` branch (c2, from the left) wins, so the
  // backtrace walks left first and the path goes down the first column.
  std::vector<float> zeros(9, 0.0f);
  DtwPath p = dtw(zeros.data(), 3, 3);
  EXPECT_EQ(p.text_indices, (std::vector<int>{0, 1, 2, 2, 2}));
  EXPECT_EQ(p.time_indices, (std::vector<int>{0, 0, 0, 1, 2}));
  // A cheap diagonal is followed (zeros beside it would tie: length is free).
  std::vector<float> diag = {-1, 1, 1, 1, -1, 1, 1, 1, -1};
  p = dtw(diag.data(), 3, 3);
  EXPECT_EQ(p.text_indices, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(p.time_indices, (std::vector<int>{0, 1, 2}));
  // One row or one column.
  std::vector<float> row = {3, 1, 2, 5};
  p = dtw(row.data(), 1, 4);
  EXPECT_EQ(p.text_indices, (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(p.time_indices, (std::vector<int>{0, 1, 2, 3}));
  p = dtw(row.data(), 4, 1);
  EXPECT_EQ(p.text_indices, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(p.time_indices, (std::vector<int>{0, 0, 0, 0}));
  // A tie between down (c1) and diagonal (c0) at (1, 1) of a 2x2: c2 wins
  // over neither strict minimum... here c0 = 0 is the strict minimum.
  std::vector<float> two = {0, 5, 5, 0};
  p = dtw(two.data(), 2, 2);
  EXPECT_EQ(p.text_indices, (std::vector<int>{0, 1}));
  EXPECT_EQ(p.time_indices, (std::vector<int>{0, 1}));
}

// ------------------------------------------------------------------ median filter

// np.pad(mode="reflect") then a sorted window's middle, per row.
std::vector<float> naive_median(const std::vector<float>& x, int rows, int cols, int width) {
  const int pad = width / 2;
  if (cols <= pad) return x;
  std::vector<float> out;
  for (int r = 0; r < rows; ++r) {
    std::vector<float> padded;
    for (int k = pad; k >= 1; --k) padded.push_back(x[static_cast<size_t>(r) * cols + k]);
    for (int c = 0; c < cols; ++c) padded.push_back(x[static_cast<size_t>(r) * cols + c]);
    for (int k = 1; k <= pad; ++k) padded.push_back(x[static_cast<size_t>(r) * cols + cols - 1 - k]);
    for (int c = 0; c < cols; ++c) {
      std::vector<float> w(padded.begin() + c, padded.begin() + c + width);
      std::sort(w.begin(), w.end());
      out.push_back(w[pad]);
    }
  }
  return out;
}

TEST(MedianFilter, MatchesNaiveReferenceOnOpenaiShapes) {
  // openai's shapes, as rows x last axis: (10,), (1, 15), (4, 5, 345), (6, 12, 240, 512).
  const std::vector<std::pair<int, int>> shapes = {{1, 10}, {1, 15}, {20, 345}, {6 * 12 * 240, 512}};
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (auto [rows, cols] : shapes) {
    std::vector<float> x(static_cast<size_t>(rows) * cols);
    for (float& v : x) v = g(rng);
    for (int width : {3, 5, 7, 13}) {
      if (rows > 100 && width != 7) continue;  // the big shape once
      const std::vector<float> ours = median_filter(x, rows, cols, width);
      const std::vector<float> ref = naive_median(x, rows, cols, width);
      EXPECT_EQ(ours, ref) << rows << "x" << cols << " width " << width;
      EXPECT_NE(ours, x) << "the filter changed nothing";
    }
  }
}

TEST(MedianFilter, ShortRowsAndCraftedValues) {
  // cols <= width / 2: returned unchanged (openai skips F.pad).
  const std::vector<float> three = {5, 1, 9, 2, 8, 3};
  EXPECT_EQ(median_filter(three, 2, 3, 7), three);
  // cols = 4, width 7: reflect-padded 4 3 2 [1 2 3 4] 3 2 1.
  EXPECT_EQ(median_filter({1, 2, 3, 4}, 1, 4, 7), (std::vector<float>{3, 3, 2, 2}));
  // A spike is removed, a plateau kept.
  std::vector<float> x(20, 0.0f);
  x[5] = 1;
  for (int i = 10; i < 16; ++i) x[i] = 1;
  const std::vector<float> y = median_filter(x, 1, 20, 7);
  EXPECT_EQ(y[5], 0.0f);
  EXPECT_EQ(y[10], 1.0f);  // 4 of 7 ones at the plateau's edge
  EXPECT_EQ(y[9], 0.0f);   // 3 of 7
}

// ------------------------------------------------------------------ punctuation

std::vector<WordTiming> timings(const std::vector<std::string>& words) {
  std::vector<WordTiming> a;
  for (size_t i = 0; i < words.size(); ++i) a.push_back(WordTiming{words[i], {static_cast<int>(i)}, 0, 0, 0});
  return a;
}

std::vector<std::string> words_of(const std::vector<WordTiming>& a) {
  std::vector<std::string> w;
  for (const WordTiming& t : a) w.push_back(t.word);
  return w;
}

TEST(MergePunctuations, LikeOpenai) {
  auto a = timings({" Hello", ",", " world", "."});
  merge_punctuations(a);
  EXPECT_EQ(words_of(a), (std::vector<std::string>{" Hello,", "", " world.", ""}));
  EXPECT_EQ(a[0].tokens, (std::vector<int>{0, 1}));
  EXPECT_EQ(a[2].tokens, (std::vector<int>{2, 3}));
  EXPECT_TRUE(a[1].tokens.empty());

  a = timings({" \"", "Hello", "\"", " world"});
  merge_punctuations(a);
  EXPECT_EQ(words_of(a), (std::vector<std::string>{"", " \"Hello\"", "", " world"}));
  EXPECT_EQ(a[1].tokens, (std::vector<int>{0, 1, 2}));

  // Opening brackets chain onto the next word; a word ending in a space takes nothing.
  a = timings({" (", " [", "x", "Hello ", "."});
  merge_punctuations(a);
  EXPECT_EQ(words_of(a), (std::vector<std::string>{"", "", " ( [x", "Hello ", "."}));

  // Full-width marks; custom sets.
  a = timings({" \u4f60\u597d", "\u3002"});
  merge_punctuations(a);
  EXPECT_EQ(words_of(a), (std::vector<std::string>{" \u4f60\u597d\u3002", ""}));
  a = timings({" a", ",", " b"});
  merge_punctuations(a, "", ";");
  EXPECT_EQ(words_of(a), (std::vector<std::string>{" a", ",", " b"}));
}

// ------------------------------------------------------------------ alignment heads

TEST(AlignmentHeads, StandardShapesAndFallback) {
  struct Expect {
    const char* arch;
    size_t n;
    AttentionHead first, last;
  };
  const Expect expect[] = {
      {"tiny.en", 8, {1, 0}, {3, 4}},    {"tiny", 6, {2, 2}, {3, 5}},       {"base.en", 5, {3, 3}, {5, 7}},
      {"base", 8, {3, 1}, {5, 6}},       {"small.en", 19, {6, 6}, {11, 4}}, {"small", 10, {5, 3}, {10, 5}},
      {"medium.en", 18, {11, 4}, {21, 12}}, {"medium", 6, {13, 15}, {23, 4}}, {"large-v1", 23, {10, 12}, {27, 15}},
      {"large-v2", 23, {10, 12}, {27, 15}}, {"large-v3", 10, {7, 0}, {25, 6}}, {"large-v3-turbo", 6, {2, 4}, {3, 14}},
  };
  for (const Expect& e : expect) {
    auto hp = standard_hparams(e.arch);
    ASSERT_TRUE(hp.ok()) << e.arch;
    const auto h = alignment_heads(*hp);
    ASSERT_EQ(h.size(), e.n) << e.arch;
    EXPECT_EQ(h.front().layer, e.first.layer) << e.arch;
    EXPECT_EQ(h.front().head, e.first.head) << e.arch;
    EXPECT_EQ(h.back().layer, e.last.layer) << e.arch;
    EXPECT_EQ(h.back().head, e.last.head) << e.arch;
    for (size_t i = 0; i < h.size(); ++i) {
      EXPECT_TRUE(h[i].layer >= 0 && h[i].layer < hp->n_text_layer && h[i].head >= 0 && h[i].head < hp->n_text_head);
      if (i > 0) {
        EXPECT_LT(std::pair(h[i - 1].layer, h[i - 1].head), std::pair(h[i].layer, h[i].head)) << e.arch;
      }
    }
  }
  // Any other shape: every head of the last half of the layers.
  HParams hp = *standard_hparams("tiny");
  hp.n_text_layer = 5;
  auto h = alignment_heads(hp);
  ASSERT_EQ(h.size(), 18u);
  EXPECT_EQ(h.front().layer, 2);
  EXPECT_EQ(h.front().head, 0);
  EXPECT_EQ(h.back().layer, 4);
  EXPECT_EQ(h.back().head, 5);
  hp = *standard_hparams("base");
  hp.n_mels = 128;
  EXPECT_EQ(alignment_heads(hp).size(), 24u);  // layers 3..5 x 8 heads
}

// ------------------------------------------------------------------ the segment rules

Segment segment(double start, double end, std::vector<int> tokens, int seek = 0) {
  Segment s;
  s.start = start, s.end = end, s.tokens = std::move(tokens), s.seek = seek;
  return s;
}

TEST(DistributeWords, SegmentsOffsetsAndClamps) {
  const int eot = 100, ts = 200;  // any id >= eot is stripped
  // Two segments; words handed out by token counts; offset 12.34 s.
  std::vector<WordTiming> a = {{" A", {1}, 0.10, 0.30, 0.5}, {",", {2}, 0.30, 0.32, 0.6},
                               {" B", {3}, 0.40, 0.60, 0.7}, {" C", {4}, 1.00, 1.20, 0.8}};
  std::vector<Segment> segs = {segment(12.34, 13.0, {ts, 1, 2, 3, ts}, 1234), segment(13.0, 13.6, {ts, 4, ts}, 1234)};
  double last = 0;
  distribute_words(a, eot, segs, last);
  ASSERT_EQ(segs[0].words.size(), 2u);
  ASSERT_EQ(segs[1].words.size(), 1u);
  EXPECT_EQ(segs[0].words[0].word, " A,");
  EXPECT_DOUBLE_EQ(segs[0].words[0].start, 12.44);
  EXPECT_DOUBLE_EQ(segs[0].words[0].end, 12.64);
  EXPECT_DOUBLE_EQ(segs[0].words[0].probability, 0.5);
  EXPECT_EQ(segs[1].words[0].word, " C");
  EXPECT_DOUBLE_EQ(segs[0].start, 12.44);  // the words' bounds replace the segment's
  EXPECT_DOUBLE_EQ(segs[0].end, 12.94);
  EXPECT_DOUBLE_EQ(segs[1].start, 13.34);
  EXPECT_DOUBLE_EQ(segs[1].end, 13.54);
  EXPECT_DOUBLE_EQ(last, 13.54);

  // After a sentence end, a long word starts at most 2 x median before its end.
  a = {{" Hi", {1}, 0.0, 0.2, 1}, {".", {2}, 0.2, 0.4, 1}, {" Then", {3}, 0.4, 3.0, 1}, {" go", {4}, 3.0, 3.2, 1}};
  segs = {segment(0.0, 3.2, {1, 2, 3, 4})};
  last = 0;
  distribute_words(a, eot, segs, last);
  ASSERT_EQ(segs[0].words.size(), 3u);
  EXPECT_EQ(segs[0].words[0].word, " Hi.");
  EXPECT_NEAR(segs[0].words[1].start, 2.6, 1e-9);

  // A long first word after a pause: cut to 2 x median before its end.
  a = {{" So", {1}, 5.0, 8.0, 1}, {" yes", {2}, 8.0, 8.2, 1}, {" ok", {3}, 8.2, 8.4, 1}};
  segs = {segment(5.0, 8.4, {1, 2, 3})};
  last = 0;
  distribute_words(a, eot, segs, last);
  EXPECT_NEAR(segs[0].words[0].start, 7.6, 1e-9);
  EXPECT_NEAR(segs[0].start, 7.6, 1e-9);

  // The segment's start and end win over a too-long first and last word.
  a = {{" A", {1}, 1.0, 3.2, 1}, {" B", {2}, 3.2, 3.4, 1}, {" C", {3}, 3.4, 3.6, 1}, {" D", {4}, 3.6, 7.0, 1}};
  segs = {segment(3.0, 5.0, {1, 2, 3, 4})};
  last = 3.0;
  distribute_words(a, eot, segs, last);
  // The median, (0.2 + 2.2) / 2, is capped at 0.7.
  EXPECT_NEAR(segs[0].words[0].start, 2.5, 1e-9);  // max(0, min(3.2 - 0.7, 3.0))
  EXPECT_NEAR(segs[0].words[3].end, 5.0, 1e-9);    // max(3.6 + 0.7, 5.0)
  EXPECT_NEAR(segs[0].start, 3.0, 1e-9);
  EXPECT_NEAR(segs[0].end, 5.0, 1e-9);
}

}  // namespace
}  // namespace ama
