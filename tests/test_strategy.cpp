// The decoding strategies and guards at the stage seam, on a scripted
// DecoderStage whose logits the tests craft: greedy, beam search (ordering,
// patience, length penalty), sampling (seed, temperature), temperature
// fallback (loops, low log-probability), the repetition cut, the no-speech
// skip, the suppressions, and the prompt handling of the long-form loop.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "decode/fallback.h"
#include "decode/search.h"
#include "backend/cpu/cpu_backend.h"
#include "decode/transcriber.h"
#include "model/ggml_file.h"
#include "model/whisper_model.h"
#include "scripted_stage.h"
#include "test_util.h"

namespace ama {
namespace {

using test::ScriptedDecoderStage;

const Tokenizer& tok() {
  static const Tokenizer t = [] {
    auto r = GgmlReader::open(test::shared("models/whisper-vocab/for-tests-ggml-base.bin"));
    auto h = r->read_header();
    return std::move(Tokenizer::create(h->vocab, h->hp.n_vocab).value());
  }();
  return t;
}

constexpr float kLow = -30.0f;  // e^-30 x 51865 tokens: 5e-9 of probability in all

// Regular text tokens with distinct ids (ids of " a", " b", ...).
int T(char c) { return tok().encode(std::string(" ") + c).front(); }

// The tokens sampled so far: what was fed after the start sequence.
std::vector<int> sampled(const std::vector<int>& h) {
  const SpecialTokens& s = tok().special();
  size_t i = h.size();
  while (i > 0 && h[i - 1] != s.no_timestamps && h[i - 1] != s.transcribe && h[i - 1] != s.translate) --i;
  return std::vector<int>(h.begin() + i, h.end());
}
bool at_sot(const std::vector<int>& h) { return h.back() == tok().special().sot; }

// A row with the given log-probabilities (the rest ~0).
void set_probs(float* row, const std::map<int, double>& p) {
  std::fill(row, row + tok().n_vocab(), kLow);
  for (auto [t, q] : p) row[t] = static_cast<float>(std::log(q));
}

WindowRequest request(bool timestamps = false) {
  WindowRequest r;
  r.language_token = tok().language_token("en");
  r.timestamps = timestamps;
  r.sample_len = 224;
  return r;
}

struct Decoded {
  WindowOutcome outcome;
  int forks = 0, steps = 0;
};

Decoded decode(ScriptedDecoderStage::Script script, const DecodingOptions& o, const WindowRequest& req = request(),
           LogitRuleOptions ro = {}, uint64_t seed = 0) {
  ScriptedDecoderStage stage(tok().n_vocab(), 448, std::move(script));
  ro.timestamps = req.timestamps;
  auto rules = make_logit_rules(tok(), ro);
  EXPECT_TRUE(rules.ok()) << rules.message();
  auto w = WindowDecode::start(stage, std::make_shared<test::ScriptedEncoderState>(0), tok(), *rules, req, o, seed);
  EXPECT_TRUE(w.ok()) << w.message();
  std::vector<DecoderStage::Input> in;
  std::vector<float> logits;
  while (!(*w)->done()) {
    in.clear();
    (*w)->inputs(in);
    EXPECT_TRUE(stage.step(in, logits).ok());
    EXPECT_TRUE((*w)->on_logits(logits.data()).ok());
  }
  EXPECT_EQ(stage.size(), 0) << "every sequence is freed";
  return {(*w)->outcome(), stage.forks, stage.steps};
}

DecodingOptions greedy() { return DecodingOptions::greedy(); }
DecodingOptions beam(int n, float patience = 1, float length_penalty = -1) {
  DecodingOptions o = DecodingOptions::greedy();
  o.beam_size = n;
  o.patience = patience;
  o.length_penalty = length_penalty;
  return o;
}

TEST(Greedy, TakesTheArgmaxAndAveragesTheLogprobLikeOpenai) {
  const int a = T('a'), b = T('b'), eot = tok().special().eot;
  auto script = [&](const std::vector<int>& h, int, float* row) {
    auto s = sampled(h);
    if (s.empty()) set_probs(row, {{a, 0.7}, {b, 0.3}});
    else if (s.size() == 1) set_probs(row, {{b, 0.6}, {eot, 0.4}});
    else set_probs(row, {{eot, 0.9}, {a, 0.1}});
  };
  Decoded r = decode(script, greedy());
  EXPECT_EQ(r.outcome.result.tokens, (std::vector<int>{a, b}));
  const double sum = std::log(0.7) + std::log(0.6) + std::log(0.9);
  EXPECT_NEAR(r.outcome.result.sum_logprob, sum, 1e-6);
  EXPECT_NEAR(r.outcome.result.avg_logprob, sum / 3, 1e-6);  // tokens + 1 (the eot)
  EXPECT_EQ(r.outcome.attempts, 1);
  EXPECT_EQ(r.forks, 0);
}

// Greedy takes a (0.6) and then can only reach 0.6 x 0.4; b (0.4) leads to
// 0.4 x 0.95. Beam search keeps both and finds the second.
auto two_paths() {
  const int a = T('a'), b = T('b'), c = T('c'), d = T('d'), e = T('e'), eot = tok().special().eot;
  return [=](const std::vector<int>& h, int, float* row) {
    auto s = sampled(h);
    if (s.empty()) set_probs(row, {{a, 0.6}, {b, 0.4}});
    else if (s.size() == 1 && s[0] == a) set_probs(row, {{c, 0.3}, {d, 0.3}, {e, 0.4}});
    else if (s.size() == 1) set_probs(row, {{e, 0.95}, {c, 0.05}});
    else set_probs(row, {{eot, 1.0}});
  };
}

TEST(BeamSearch, FindsTheMoreProbablePathGreedyMisses) {
  const int a = T('a'), b = T('b'), e = T('e');
  EXPECT_EQ(decode(two_paths(), greedy()).outcome.result.tokens, (std::vector<int>{a, e}));
  Decoded r = decode(two_paths(), beam(2));
  EXPECT_EQ(r.outcome.result.tokens, (std::vector<int>{b, e}));
  EXPECT_NEAR(r.outcome.result.sum_logprob, std::log(0.4) + std::log(0.95), 1e-6);
  EXPECT_GE(r.forks, 1) << "the second beam is a fork of the prompt's sequence";
}

// After a or b the window may end at once (0.9) or go on with c (0.09) into
// a long, certain continuation. Two candidates finish at the second step;
// the long ones finish ten steps later.
auto early_and_late() {
  const int a = T('a'), b = T('b'), c = T('c'), eot = tok().special().eot;
  return [=](const std::vector<int>& h, int, float* row) {
    auto s = sampled(h);
    if (s.empty()) {
      set_probs(row, {{a, 0.5}, {b, 0.45}, {c, 0.05}});
    } else if (s.size() == 1) {
      set_probs(row, {{eot, 0.9}, {c, 0.09}, {T('d'), 0.01}});
    } else if (s.size() < 10) {
      set_probs(row, {{T(static_cast<char>('d' + s.size())), 1.0}});
    } else {
      set_probs(row, {{eot, 1.0}});
    }
  };
}

TEST(BeamSearch, PatienceWaitsForMoreCandidates) {
  const int a = T('a'), c = T('c');
  // patience 1: beam 2 stops with its first 2 finished candidates: [a] wins.
  Decoded quick = decode(early_and_late(), beam(2, 1.0f));
  EXPECT_EQ(quick.outcome.result.tokens, std::vector<int>{a});
  // patience 2: 4 candidates; [a c ...] (log 0.045 over 10 tokens) ranks
  // above [a] (log 0.45 over 1) by log-probability per token.
  Decoded patient = decode(early_and_late(), beam(2, 2.0f));
  ASSERT_EQ(patient.outcome.result.tokens.size(), 10u);
  EXPECT_EQ(patient.outcome.result.tokens[0], a);
  EXPECT_EQ(patient.outcome.result.tokens[1], c);
  EXPECT_NEAR(patient.outcome.result.sum_logprob, std::log(0.5 * 0.09), 1e-5);
  EXPECT_GT(patient.steps, quick.steps);
}

TEST(BeamSearch, LengthPenaltyChangesTheRanking) {
  const int a = T('a');
  // alpha 0: ((5 + len) / 6)^0 = 1, the raw sum ranks: [a] (log 0.45) wins.
  EXPECT_EQ(decode(early_and_late(), beam(2, 2.0f, 0.0f)).outcome.result.tokens, std::vector<int>{a});
  // alpha 1: log 0.45 / 1 = -0.80 vs log 0.045 / 2.5 = -1.24: [a] again;
  // openai's None (sum / length): the long one (see PatienceWaits...).
  EXPECT_EQ(decode(early_and_late(), beam(2, 2.0f, 1.0f)).outcome.result.tokens, std::vector<int>{a});
  EXPECT_EQ(decode(early_and_late(), beam(2, 2.0f)).outcome.result.tokens.size(), 10u);
  Hypothesis h{{1, 2, 3}, -3.0};
  EXPECT_DOUBLE_EQ(rank_score(h, -1), -1.0);
  EXPECT_DOUBLE_EQ(rank_score(h, 1.0f), -3.0 / (8.0 / 6.0));
  EXPECT_DOUBLE_EQ(rank_score(h, 0.0f), -3.0);
}

TEST(BeamSearch, RunsOutOfLengthWithLiveBeamsAsCandidates) {
  const int a = T('a'), b = T('b');
  auto never_ends = [=](const std::vector<int>& h, int, float* row) { set_probs(row, {{a, 0.7}, {b, 0.3}}); };
  WindowRequest req = request();
  req.sample_len = 6;
  Decoded r = decode(never_ends, beam(3), req);
  EXPECT_EQ(r.outcome.result.tokens, std::vector<int>(6, a));
  EXPECT_NEAR(r.outcome.result.sum_logprob, 6 * std::log(0.7), 1e-5);
}

// Sampling at temperature t draws from softmax(logits / t), with our own
// generator: the same seed repeats exactly.
TEST(Sampling, FollowsTheTemperatureAndRepeatsWithTheSeed) {
  const int a = T('a'), b = T('b'), c = T('c'), eot = tok().special().eot;
  auto script = [=](const std::vector<int>& h, int, float* row) {
    if (sampled(h).empty()) set_probs(row, {{a, 0.5}, {b, 0.3}, {c, 0.2}});
    else set_probs(row, {{eot, 1.0}});
  };
  for (float t : {1.0f, 0.5f}) {
    DecodingOptions o = greedy();
    o.temperatures = {t};
    o.best_of = 1;
    o.logprob_threshold.reset();
    std::map<int, int> count;
    const int n = 1500;
    for (int seed = 0; seed < n; ++seed) ++count[decode(script, o, request(), {}, seed).outcome.result.tokens.at(0)];
    const double z = std::pow(0.5, 1 / t) + std::pow(0.3, 1 / t) + std::pow(0.2, 1 / t);
    for (auto [tk, p] : std::map<int, double>{{a, 0.5}, {b, 0.3}, {c, 0.2}}) {
      const double want = std::pow(p, 1 / t) / z, got = static_cast<double>(count[tk]) / n;
      // 5 standard deviations of a binomial share of 1500 draws.
      EXPECT_NEAR(got, want, 5 * std::sqrt(want * (1 - want) / n)) << "temperature " << t;
    }
  }
  DecodingOptions o = greedy();
  o.temperatures = {1.0f};
  o.best_of = 3;
  auto long_script = [=](const std::vector<int>& h, int, float* row) {
    if (sampled(h).size() < 20) set_probs(row, {{a, 0.4}, {b, 0.3}, {c, 0.3}});
    else set_probs(row, {{eot, 1.0}});
  };
  Decoded x = decode(long_script, o, request(), {}, 7), y = decode(long_script, o, request(), {}, 7);
  Decoded z = decode(long_script, o, request(), {}, 8);
  EXPECT_EQ(x.outcome.result.tokens, y.outcome.result.tokens);
  EXPECT_NE(x.outcome.result.tokens, z.outcome.result.tokens);
  EXPECT_EQ(x.forks, 2) << "best-of 3: two forks of the prompt's sequence";
}

// A window that loops: at every temperature the loop is all but certain.
auto loop_script() {
  const int a = T('a'), b = T('b'), c = T('c');
  return [=](const std::vector<int>& h, int, float* row) {
    const int next[3] = {a, b, c};
    set_probs(row, {{next[sampled(h).size() % 3], 1.0}});
  };
}

TEST(Fallback, ALoopFallsBackThroughEveryTemperatureAndIsCut) {
  DecodingOptions o;  // openai's defaults: beam 5, best-of 5, 0.0 .. 1.0
  Decoded r = decode(loop_script(), o);
  EXPECT_EQ(r.outcome.attempts, 6);
  EXPECT_DOUBLE_EQ(r.outcome.temperature, 1.0);
  EXPECT_TRUE(r.outcome.repetition_cut);
  EXPECT_EQ(r.outcome.result.tokens, (std::vector<int>{T('a'), T('b'), T('c')}));
  EXPECT_FALSE(r.outcome.no_speech);
  // Without the ratio threshold the loop is kept at temperature 0.
  o.compression_ratio_threshold.reset();
  Decoded kept = decode(loop_script(), o);
  EXPECT_EQ(kept.outcome.attempts, 1);
  EXPECT_EQ(kept.outcome.result.tokens.size(), 224u);
  EXPECT_FALSE(kept.outcome.repetition_cut);
  EXPECT_GT(kept.outcome.compression_ratio, 2.4);
}

TEST(Fallback, LowLogprobFallsBackAndAConfidentWindowDoesNot) {
  const int a = T('a'), b = T('b'), c = T('c'), d = T('d'), eot = tok().special().eot;
  // Four equally likely tokens, 3 times: avg log-probability 3 log(1/4) / 4 = -1.04.
  auto unsure = [=](const std::vector<int>& h, int, float* row) {
    if (sampled(h).size() < 3) set_probs(row, {{a, 0.25}, {b, 0.25}, {c, 0.25}, {d, 0.25}});
    else set_probs(row, {{eot, 1.0}});
  };
  DecodingOptions o;
  Decoded r = decode(unsure, o);
  EXPECT_EQ(r.outcome.attempts, 6);
  EXPECT_LT(r.outcome.result.avg_logprob, -1.0);
  EXPECT_FALSE(r.outcome.repetition_cut);
  o.logprob_threshold = -1.1f;
  EXPECT_EQ(decode(unsure, o).outcome.attempts, 1);
  o.logprob_threshold.reset();
  EXPECT_EQ(decode(unsure, o).outcome.attempts, 1);
}

TEST(Fallback, CompressionRatioIsGzipsLikeOpenai) {
  EXPECT_EQ(compression_ratio(""), 0.0);
  // zlib.compress(b"hello") is 13 bytes: 5 / 13.
  EXPECT_NEAR(compression_ratio("hello"), 5.0 / 13.0, 1e-12);
  std::string loop;
  for (int i = 0; i < 50; ++i) loop += " I'm sorry.";
  EXPECT_GT(compression_ratio(loop), 2.4);
  EXPECT_LT(compression_ratio(" And so my fellow Americans, ask not what your country can do for you."), 2.4);
}

TEST(Fallback, RepetitionCutKeepsTheFirstPeriod) {
  const int a = T('a'), b = T('b'), c = T('c'), d = T('d');
  const int ts = tok().special().timestamp_begin;
  std::vector<int> x{d, a, b, a, b, ts + 5, a, b, a, b};
  ASSERT_TRUE(cut_repetition(tok(), x));
  EXPECT_EQ(x, (std::vector<int>{d, a, b}));
  std::vector<int> y{a, b, c, d};
  EXPECT_FALSE(cut_repetition(tok(), y));
  EXPECT_EQ(y.size(), 4u);
}

TEST(NoSpeech, ASilentWindowIsSkippedNotRetried) {
  const int a = T('a'), b = T('b'), c = T('c'), d = T('d'), eot = tok().special().eot;
  const int ns = tok().special().no_speech;
  auto silent = [=](bool confident) {
    return [=](const std::vector<int>& h, int, float* row) {
      if (at_sot(h)) return set_probs(row, {{ns, 0.9}, {a, 0.1}});
      if (confident) return set_probs(row, {{sampled(h).empty() ? a : eot, 1.0}});
      if (sampled(h).size() < 3) set_probs(row, {{a, 0.25}, {b, 0.25}, {c, 0.25}, {d, 0.25}});
      else set_probs(row, {{eot, 1.0}});
    };
  };
  DecodingOptions o;
  Decoded r = decode(silent(false), o);
  EXPECT_NEAR(r.outcome.result.no_speech_prob, 0.9, 1e-5);
  EXPECT_TRUE(r.outcome.no_speech);
  EXPECT_EQ(r.outcome.attempts, 1) << "silence is skipped, not decoded again";
  Decoded speech = decode(silent(true), o);  // probable text overrides P(no speech)
  EXPECT_FALSE(speech.outcome.no_speech);
  o.no_speech_threshold = 0.95f;
  EXPECT_FALSE(decode(silent(false), o).outcome.no_speech);
}

TEST(Suppression, TokensBlankAndInitialTimestamp) {
  const int a = T('a'), b = T('b'), c = T('c'), eot = tok().special().eot;
  auto script = [=](const std::vector<int>& h, int, float* row) {
    if (sampled(h).empty()) set_probs(row, {{a, 0.5}, {b, 0.3}, {c, 0.15}, {eot, 0.05}});
    else set_probs(row, {{eot, 1.0}});
  };
  LogitRuleOptions ro;
  ro.suppress_tokens = std::to_string(a) + ", " + std::to_string(b);
  EXPECT_EQ(decode(script, greedy(), request(), ro).outcome.result.tokens, std::vector<int>{c});
  ro.suppress_tokens = "-1";
  EXPECT_EQ(decode(script, greedy(), request(), ro).outcome.result.tokens, std::vector<int>{a});

  // A non-speech symbol is suppressed by -1 and allowed by "".
  const int sym = tok().non_speech_tokens().front();
  auto symbol = [=](const std::vector<int>& h, int, float* row) {
    if (sampled(h).empty()) set_probs(row, {{sym, 0.6}, {a, 0.4}});
    else set_probs(row, {{eot, 1.0}});
  };
  EXPECT_EQ(decode(symbol, greedy(), request(), ro).outcome.result.tokens, std::vector<int>{a});
  ro.suppress_tokens = "";
  EXPECT_EQ(decode(symbol, greedy(), request(), ro).outcome.result.tokens, std::vector<int>{sym});

  // Blank: a space or eot cannot open the text.
  const int space = tok().encode(" ").front();
  auto blank = [=](const std::vector<int>& h, int, float* row) {
    if (sampled(h).empty()) set_probs(row, {{space, 0.5}, {eot, 0.3}, {a, 0.2}});
    else set_probs(row, {{eot, 1.0}});
  };
  EXPECT_EQ(decode(blank, greedy()).outcome.result.tokens, std::vector<int>{a});

  // The first timestamp is at most --max-initial-timestamp.
  const int ts = tok().special().timestamp_begin;
  auto late = [=](const std::vector<int>& h, int, float* row) {
    auto s = sampled(h);
    if (s.empty()) set_probs(row, {{ts + 100, 0.6}, {ts + 60, 0.25}, {ts + 40, 0.15}});
    else if (s.size() == 1) set_probs(row, {{a, 1.0}});
    else set_probs(row, {{eot, 1.0}});
  };
  LogitRuleOptions tr;
  EXPECT_EQ(decode(late, greedy(), request(true), tr).outcome.result.tokens.at(0), ts + 40);  // 1.0 s: index 50
  tr.max_initial_timestamp = -1;
  EXPECT_EQ(decode(late, greedy(), request(true), tr).outcome.result.tokens.at(0), ts + 100);
  tr.max_initial_timestamp = 1.5f;  // index 75
  EXPECT_EQ(decode(late, greedy(), request(true), tr).outcome.result.tokens.at(0), ts + 60);

  for (const char* bad : {"x", "1,,2", "-2", "99999999", "3.5"}) {
    LogitRuleOptions e;
    e.suppress_tokens = bad;
    EXPECT_FALSE(make_logit_rules(tok(), e).ok()) << bad;
  }
}

TEST(Options, AbsurdValuesAreErrors) {
  auto bad = [](auto edit) {
    DecodingOptions o;
    edit(o);
    return !validate(o).ok();
  };
  EXPECT_FALSE(bad([](DecodingOptions&) {}));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.beam_size = 0; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.best_of = 1000; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.patience = 0; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.patience = 0.05f; }));  // round(5 x 0.05) = 0 candidates
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.temperatures = {}; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.temperatures = {0.4f, 0.2f}; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.temperatures = {-1.0f}; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.temperatures = {NAN}; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.no_speech_threshold = 2.0f; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.logprob_threshold = INFINITY; }));
  EXPECT_TRUE(bad([](DecodingOptions& o) { o.length_penalty = NAN; }));
}

// The long-form loop on scripted stages: the prompt of each window.
class PromptHandling : public ::testing::Test {
 protected:
  static std::shared_ptr<const WhisperModel> model() {
    static auto m = [] {
      auto be = make_cpu_backend({});
      return load_model(test::shared("oracle/micro/model.bin"), **be).value();
    }();
    return m;
  }
  // Transcribes 65 s (three windows without timestamps); window 0's text is
  // unsure (needs fallback to temperature 1.0) when `unsure0`.
  std::vector<std::vector<int>> prompts(bool unsure0, TranscribeOptions o,
                                        std::vector<std::vector<int>>* feeds = nullptr) {
    const int a = T('a'), b = T('b'), c = T('c'), d = T('d'), eot = tok().special().eot;
    auto script = [=](const std::vector<int>& h, int window, float* row) {
      auto s = sampled(h);
      if (window == 0 && unsure0) {
        if (s.size() < 3) set_probs(row, {{a, 0.25}, {b, 0.25}, {c, 0.25}, {d, 0.25}});
        else set_probs(row, {{eot, 1.0}});
        return;
      }
      set_probs(row, {{s.size() < 2 ? T(static_cast<char>('e' + window)) : eot, 1.0}});
    };
    auto dec = std::make_unique<ScriptedDecoderStage>(tok().n_vocab(), 448, script);
    ScriptedDecoderStage* stage = dec.get();
    Transcriber t(model(), std::make_unique<test::ScriptedEncoderStage>(), std::move(dec));
    o.language = "en";
    o.timestamps = false;
    auto r = t.transcribe(std::vector<float>(65 * 16000, 0.0f), o);
    EXPECT_TRUE(r.ok()) << r.message();
    if (feeds) *feeds = stage->feeds;
    return stage->prompts;  // the first feed of every attempt's sequence
  }
};

TEST_F(PromptHandling, PreviousTextIsThePromptUnlessResetOrDisabled) {
  const SpecialTokens& s = tok().special();
  const int e = T('e'), f = T('f');
  auto ps = prompts(false, TranscribeOptions{});
  ASSERT_EQ(ps.size(), 3u);  // confident windows: one attempt each
  EXPECT_EQ(ps[0], std::vector<int>{s.sot});
  EXPECT_EQ(ps[1], (std::vector<int>{s.sot_prev, e, e, s.sot}));
  EXPECT_EQ(ps[2], (std::vector<int>{s.sot_prev, e, e, f, f, s.sot}));

  TranscribeOptions no_condition;
  no_condition.condition_on_previous_text = false;
  for (const auto& p : prompts(false, no_condition)) EXPECT_EQ(p, std::vector<int>{s.sot});

  // Window 0 needed temperature 1.0 (> 0.5): its text is not a prompt.
  auto reset = prompts(true, TranscribeOptions{});
  ASSERT_EQ(reset.size(), 6u + 2u);  // six attempts, then one per window
  EXPECT_EQ(reset[6], std::vector<int>{s.sot});
  EXPECT_EQ(reset[7], (std::vector<int>{s.sot_prev, f, f, s.sot}));
}

TEST_F(PromptHandling, InitialPromptAndPrefix) {
  const SpecialTokens& s = tok().special();
  TranscribeOptions o;
  o.initial_prompt = "  hello ";
  o.prefix = "so";
  std::vector<std::vector<int>> feeds;
  auto ps = prompts(false, o, &feeds);
  ASSERT_EQ(ps.size(), 3u);
  // The rest of window 0's start: language, task, no timestamps, the prefix.
  std::vector<int> start{tok().language_token("en"), s.transcribe, s.no_timestamps};
  for (int t : tok().encode(" so")) start.push_back(t);
  EXPECT_EQ(std::count(feeds.begin(), feeds.end(), start), 1);
  std::vector<int> first{s.sot_prev};
  for (int t : tok().encode(" hello")) first.push_back(t);
  first.push_back(s.sot);
  EXPECT_EQ(ps[0], first);
  // The prefix is fed after the start sequence of the first window only, and
  // is not part of its text: window 1's prompt has only window 0's tokens.
  EXPECT_EQ(ps[1].front(), s.sot_prev);
  const std::vector<int> so = tok().encode(" so");
  EXPECT_EQ(std::search(ps[1].begin(), ps[1].end(), so.begin(), so.end()), ps[1].end());
}

}  // namespace
}  // namespace ama
