// Silero VAD v5: probabilities against the oracle (../shared/oracle/vad),
// streaming in odd block sizes, silero's segment rules on crafted
// probability sequences, bad weight files, and the `amanuensis vad` command.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "audio/vad.h"
#include "audio/wav.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace ama {
namespace {

const std::string kWeights = test::shared("models/silero_vad_16k.safetensors");

struct OracleCase {
  std::string name;
  std::vector<float> audio;
  std::vector<float> probs;
};

OracleCase load_oracle(const std::string& name) {
  OracleCase c;
  c.name = name;
  auto wav = read_wav_file(test::shared("audio/" + name + ".wav"));
  EXPECT_TRUE(wav.ok()) << wav.message();
  if (!wav.ok()) return c;
  EXPECT_EQ(wav->sample_rate, 16000);
  c.audio = std::move(wav->samples);
  std::ifstream f(test::shared("oracle/vad/" + name + ".json"));
  const auto j = nlohmann::json::parse(f);
  c.probs = j.at("probs").get<std::vector<float>>();
  EXPECT_EQ(j.at("chunk").get<int>(), kVadChunk);
  EXPECT_EQ(j.at("context").get<int>(), kVadContext);
  EXPECT_EQ(j.at("samples").get<size_t>(), c.audio.size());
  return c;
}

const SileroVad& shared_vad() {
  static const SileroVad vad = [] {
    auto v = SileroVad::load(kWeights);
    if (!v.ok()) {
      ADD_FAILURE() << v.message();
      std::abort();
    }
    return std::move(v.value());
  }();
  return vad;
}

// The oracle's bar is 1e-4; what we reach is ~1e-6 (f32 products of length
// <= 387 against a float64 reference), so a regression shows long before it.
void check_against_oracle(const SileroVad& vad, const std::string& name) {
  const OracleCase c = load_oracle(name);
  ASSERT_FALSE(c.audio.empty());
  const std::vector<float> p = vad.probabilities(c.audio);
  ASSERT_EQ(p.size(), c.probs.size());
  ASSERT_EQ(p.size(), (c.audio.size() + 511) / 512);
  const test::Diff d = test::max_abs_diff(p, c.probs);
  std::printf("[ info ] %s (%s): %zu chunks, %s\n", name.c_str(), vad.stft_by_fft() ? "FFT STFT" : "GEMM STFT",
              p.size(), d.str("probability").c_str());
  EXPECT_LE(d.max_abs, 1e-4) << name << ": " << d.str("probability") << " (the worst element is the chunk index)";
}

TEST(VadOracle, MatchesJfk) { check_against_oracle(shared_vad(), "jfk"); }
TEST(VadOracle, MatchesSileroTest) { check_against_oracle(shared_vad(), "silero-test"); }

// The real file's STFT basis is the windowed DFT, so the FFT path runs; the
// GEMM path (used for any other basis) must meet the same bar.
TEST(VadOracle, GemmStftPathMatches) {
  EXPECT_TRUE(shared_vad().stft_by_fft());
  VadLoadOptions o;
  o.force_stft_gemm = true;
  auto vad = SileroVad::load(kWeights, o);
  ASSERT_TRUE(vad.ok()) << vad.message();
  EXPECT_FALSE(vad->stft_by_fft());
  check_against_oracle(*vad, "jfk");
  check_against_oracle(*vad, "silero-test");
}

std::vector<float> stream_in_blocks(const SileroVad& vad, const std::vector<float>& audio, size_t block) {
  VadStream s = vad.stream();
  std::vector<float> out;
  for (size_t pos = 0; pos < audio.size(); pos += block) {
    const size_t n = std::min(block, audio.size() - pos);
    s.push(audio.data() + pos, n, out);
    EXPECT_EQ(out.size(), (pos + n) / kVadChunk);
    EXPECT_EQ(s.pending(), (pos + n) % kVadChunk);
  }
  s.finish(out);
  EXPECT_EQ(s.pending(), 0u);
  EXPECT_EQ(s.chunks(), 0u);  // finish() resets
  return out;
}

// Batching must not change a result: every GEMM row is one FMA chain over k,
// whatever the batch, and the recurrent part runs chunk by chunk.
TEST(VadStream, OddBlockSizesAreBitIdentical) {
  const OracleCase c = load_oracle("jfk");
  ASSERT_FALSE(c.audio.empty());
  // Append 300 samples so that the end is a partial chunk.
  std::vector<float> audio = c.audio;
  audio.insert(audio.end(), c.audio.begin(), c.audio.begin() + 300);
  const std::vector<float> ref = shared_vad().probabilities(audio);
  ASSERT_EQ(ref.size(), (audio.size() + 511) / 512);
  for (size_t block : {size_t{1}, size_t{511}, size_t{512}, size_t{513}, size_t{4000}, size_t{100003}}) {
    const std::vector<float> p = stream_in_blocks(shared_vad(), audio, block);
    ASSERT_EQ(p.size(), ref.size()) << "block " << block;
    EXPECT_EQ(std::memcmp(p.data(), ref.data(), ref.size() * sizeof(float)), 0) << "block " << block;
  }
}

TEST(VadStream, ResetAndReuse) {
  const OracleCase c = load_oracle("jfk");
  ASSERT_FALSE(c.audio.empty());
  VadStream s = shared_vad().stream();
  std::vector<float> first, second;
  s.push(c.audio.data(), 10000, first);  // some state, then start over
  s.reset();
  first.clear();
  s.push(c.audio.data(), c.audio.size(), first);
  EXPECT_EQ(s.chunks(), c.audio.size() / 512);
  s.finish(first);
  s.push(c.audio.data(), c.audio.size(), second);  // finish() reset the stream
  s.finish(second);
  ASSERT_EQ(first.size(), c.probs.size());
  EXPECT_EQ(first, second);
  // Empty audio: no chunk at all.
  EXPECT_TRUE(shared_vad().probabilities(nullptr, 0).empty());
}

// One SileroVad shared by streams on several threads (they share its backend).
TEST(VadStream, StreamsShareOneModelAcrossThreads) {
  const OracleCase c = load_oracle("jfk");
  ASSERT_FALSE(c.audio.empty());
  const std::vector<float> ref = shared_vad().probabilities(c.audio);
  std::vector<std::vector<float>> out(3);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < out.size(); ++t)
    threads.emplace_back([&, t] { out[t] = stream_in_blocks(shared_vad(), c.audio, 700 + 1000 * t); });
  for (auto& th : threads) th.join();
  for (const auto& o : out) EXPECT_EQ(o, ref);
}

// ---------------------------------------------------------------------------
// Segment rules. Probabilities by letter: 'S' 0.9 (speech), 'T' 0.5 (exactly
// the threshold: speech), 'm' 0.4 (between the thresholds 0.35 and 0.5),
// '.' 0.05 (silence). Expected segments are worked out by hand from
// silero-vad's get_speech_timestamps with 512-sample chunks: defaults
// min_speech 4000 samples (kept when longer), min_silence 1600, pad 480.
// ---------------------------------------------------------------------------

std::vector<float> pattern(const std::string& s) {
  std::vector<float> p;
  for (char c : s) p.push_back(c == 'S' ? 0.9f : c == 'T' ? 0.5f : c == 'm' ? 0.4f : 0.05f);
  return p;
}
std::string rep(char c, int n) { return std::string(n, c); }

using Segs = std::vector<std::pair<size_t, size_t>>;
Segs segments_of(const std::vector<float>& probs, size_t n, const VadOptions& o = {}) {
  auto r = speech_segments(probs, n, o);
  EXPECT_TRUE(r.ok()) << r.message();
  Segs s;
  if (r.ok())
    for (const auto& g : *r) s.emplace_back(g.start, g.end);
  return s;
}
Segs segments_of(const std::string& pat, const VadOptions& o = {}) {
  return segments_of(pattern(pat), pat.size() * 512, o);
}

TEST(VadSegments, OneSegmentPadded) {
  // Speech at chunks 4-13 (the first exactly at the threshold); silence from
  // chunk 14 (sample 7168) ends it at the fifth silent chunk (4 * 512 >= 1600).
  EXPECT_EQ(segments_of("....T" + rep('S', 9) + rep('.', 10)), (Segs{{2048 - 480, 7168 + 480}}));
  EXPECT_EQ(segments_of(rep('.', 20)), Segs{});
}

TEST(VadSegments, ShortSpeechIsDropped) {
  // 7 chunks = 3584 samples <= 4000: dropped; 8 chunks = 4096: kept.
  EXPECT_EQ(segments_of("...." + rep('S', 7) + rep('.', 8)), Segs{});
  EXPECT_EQ(segments_of("...." + rep('S', 8) + rep('.', 8)), (Segs{{1568, 6144 + 480}}));
  // silero keeps a segment only when strictly longer than min_speech: 4096 is not > 4096.
  VadOptions o;
  o.min_speech_ms = 256;
  EXPECT_EQ(segments_of("...." + rep('S', 8) + rep('.', 8), o), Segs{});
}

TEST(VadSegments, ShortSilenceMerges) {
  // 4 silent chunks (2048 samples) between speech: the segment would end at
  // the 5th, so speech resumes first and the two parts merge.
  EXPECT_EQ(segments_of(".." + rep('S', 10) + rep('.', 4) + rep('S', 10) + rep('.', 6)), (Segs{{544, 13312 + 480}}));
  // 5 silent chunks: two segments, ending at 6144 and 13824.
  EXPECT_EQ(segments_of(".." + rep('S', 10) + rep('.', 5) + rep('S', 10) + rep('.', 6)),
            (Segs{{544, 6144 + 480}, {8704 - 480, 13824 + 480}}));
}

TEST(VadSegments, HysteresisBetweenThresholds) {
  // 'm' (0.4) neither starts speech nor counts as silence...
  EXPECT_EQ(segments_of(".." + rep('S', 10) + rep('m', 8) + rep('S', 10) + rep('.', 6)),
            (Segs{{544, 15360 + 480}}));
  EXPECT_EQ(segments_of(rep('m', 20)), Segs{});
  // ...but silence that began before them keeps running: the '.' after five
  // 'm' finds the silence 3072 samples old and ends the segment at its start.
  EXPECT_EQ(segments_of(".." + rep('S', 10) + "." + rep('m', 5) + "." + rep('S', 10) + rep('.', 6)),
            (Segs{{544, 6144 + 480}, {9728 - 480, 14848 + 480}}));
}

TEST(VadSegments, PaddingSplitsShortGaps) {
  // Segments [1024, 6144] and [8704, 13824]: a gap of 2560 < 2 * 1600 is
  // shared half and half; the first start is clipped at 0.
  VadOptions o;
  o.speech_pad_ms = 100;
  EXPECT_EQ(segments_of(".." + rep('S', 10) + rep('.', 5) + rep('S', 10) + rep('.', 6), o),
            (Segs{{0, 7424}, {7424, 13824 + 1600}}));
}

TEST(VadSegments, MaxSpeechSplitsAtTheLongestSilence) {
  // min_silence 1 s, so that the inner silences (6 and 4 chunks) do not end
  // the segment; max_speech_s 2: a split once a segment exceeds
  // 32000 - 512 - 960 = 30528 samples.
  VadOptions o;
  o.min_silence_ms = 1000;
  o.max_speech_s = 2.0f;
  const std::string pat = ".." + rep('S', 20) + rep('.', 6) + rep('S', 20) + rep('.', 4) + rep('S', 30) + rep('.', 40);
  // At chunk 62 the segment from 1024 is too long: it ends at the longer
  // silence (6 chunks from 11264), and the next starts where speech resumed
  // (14336). At chunk 88 that one is too long: it ends at the remaining
  // silence (24576) and the next starts at 26624. That one has no silence
  // left to split at when it reaches the limit at chunk 112: cut there.
  EXPECT_EQ(segments_of(pat, o), (Segs{{544, 11264 + 480}, {14336 - 480, 24576 + 480}, {26624 - 480, 57344 + 480}}));
  // The last silence instead (last in time, shorter), when it is the longer one.
  const std::string pat2 = ".." + rep('S', 20) + rep('.', 4) + rep('S', 20) + rep('.', 6) + rep('S', 30) + rep('.', 40);
  EXPECT_EQ(segments_of(pat2, o).front(), (std::pair<size_t, size_t>{544, 23552 + 480}));
  // Two equally long silences: the first, as Python's max() returns the first maximum.
  const std::string pat3 = ".." + rep('S', 20) + rep('.', 4) + rep('S', 20) + rep('.', 4) + rep('S', 30) + rep('.', 40);
  EXPECT_EQ(segments_of(pat3, o).front(), (std::pair<size_t, size_t>{544, 11264 + 480}));
}

TEST(VadSegments, MaxSpeechCutsWithoutSilence) {
  // 100 speech chunks from 1024, max 1 s (14528 samples): cut at chunks 31,
  // 61, 91 (the cut chunk itself is consumed), then a normal end at 52224.
  // The 512-sample gaps are shared by the padding: 256 each side.
  VadOptions o;
  o.max_speech_s = 1.0f;
  EXPECT_EQ(segments_of(".." + rep('S', 100) + rep('.', 10), o),
            (Segs{{544, 16128}, {16128, 31488}, {31488, 46848}, {46848, 52224 + 480}}));
}

TEST(VadSegments, SpeechRunningToTheEnd) {
  // An open segment ends at the last sample (n = 5732, not a whole chunk),
  // and the padding stops there.
  EXPECT_EQ(segments_of(pattern(".." + rep('S', 10)), 11 * 512 + 100), (Segs{{544, 5732}}));
  // Too short to keep: 5732 - 1024 <= 4000 with min_speech 300 ms (4800).
  VadOptions o;
  o.min_speech_ms = 300;
  EXPECT_EQ(segments_of(pattern(".." + rep('S', 10)), 11 * 512 + 100, o), Segs{});
}

TEST(VadSegments, ExplicitNegThreshold) {
  // With neg_threshold 0.45, 'm' (0.4) is silence.
  VadOptions o;
  o.neg_threshold = 0.45f;
  EXPECT_EQ(segments_of(".." + rep('S', 10) + rep('m', 8) + rep('S', 10) + rep('.', 6), o),
            (Segs{{544, 6144 + 480}, {20 * 512 - 480, 15360 + 480}}));
}

TEST(VadSegments, RejectsAbsurdOptionsAndInput) {
  const std::vector<float> p = pattern(rep('S', 10));
  auto expect_error = [&](const VadOptions& o, const char* part) {
    auto r = speech_segments(p, p.size() * 512, o);
    ASSERT_FALSE(r.ok()) << part;
    EXPECT_NE(r.message().find(part), std::string::npos) << r.message();
  };
  VadOptions o;
  o.threshold = NAN;
  expect_error(o, "threshold");
  o = {};
  o.threshold = 1.5f;
  expect_error(o, "threshold");
  o = {};
  o.threshold = -0.1f;
  expect_error(o, "threshold");
  o = {};
  o.neg_threshold = 0.7f;
  expect_error(o, "neg_threshold");
  o = {};
  o.neg_threshold = NAN;
  expect_error(o, "neg_threshold");
  o = {};
  o.min_speech_ms = -1;
  expect_error(o, "min_speech_ms");
  o = {};
  o.min_silence_ms = 4'000'000;
  expect_error(o, "min_silence_ms");
  o = {};
  o.speech_pad_ms = -30;
  expect_error(o, "speech_pad_ms");
  o = {};
  o.max_speech_s = 0.0f;
  expect_error(o, "max_speech_s");
  o = {};
  o.max_speech_s = NAN;
  expect_error(o, "max_speech_s");
  o = {};
  o.max_speech_s = 0.09f;  // 1440 - 512 - 960 < 512 samples
  expect_error(o, "too short");
  o = {};
  o.max_speech_s = 0.1f;  // 1600 - 1472 = 128 < 512
  expect_error(o, "too short");
  o = {};
  o.max_speech_s = 0.125f;  // 2000 - 1472 = 528 >= 512: allowed
  EXPECT_TRUE(speech_segments(p, p.size() * 512, o).ok());

  auto r = speech_segments(p, p.size() * 512 + 1, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("expected 11"), std::string::npos) << r.message();
  std::vector<float> bad = p;
  bad[3] = NAN;
  r = speech_segments(bad, bad.size() * 512, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("probability 3"), std::string::npos) << r.message();
  bad[3] = 1.5f;
  EXPECT_FALSE(speech_segments(bad, bad.size() * 512, {}).ok());
  EXPECT_TRUE(speech_segments({}, 0, {}).ok());
}

// On real audio our probabilities (1e-6 from the oracle's) give the same
// segments as the oracle's, with the defaults and with splitting.
TEST(VadSegments, RealAudioMatchesOracleSegments) {
  for (const char* name : {"jfk", "silero-test"}) {
    const OracleCase c = load_oracle(name);
    ASSERT_FALSE(c.audio.empty());
    const std::vector<float> p = shared_vad().probabilities(c.audio);
    for (float max_s : {INFINITY, 5.0f}) {
      VadOptions o;
      o.max_speech_s = max_s;
      const Segs ours = segments_of(p, c.audio.size(), o);
      const Segs ref = segments_of(c.probs, c.audio.size(), o);
      EXPECT_EQ(ours, ref) << name << " max_speech_s " << max_s;
      ASSERT_FALSE(ours.empty()) << name;
      for (size_t i = 0; i < ours.size(); ++i) {
        EXPECT_LT(ours[i].first, ours[i].second);
        EXPECT_LE(ours[i].second, c.audio.size());
        if (i > 0) {
          EXPECT_LE(ours[i - 1].second, ours[i].first);
        }
        if (std::isfinite(max_s)) {
          EXPECT_LE(ours[i].second - ours[i].first, 5 * 16000u) << name;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Bad weight files
// ---------------------------------------------------------------------------

struct WeightsCopy {
  std::vector<std::string> names;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, std::vector<float>> data;
  WeightsCopy() {
    auto f = SafetensorsFile::open(kWeights);
    EXPECT_TRUE(f.ok()) << f.message();
    if (!f.ok()) return;
    for (const StTensorInfo& t : f->tensors()) {
      names.push_back(t.name);
      shapes[t.name] = t.shape;
      data[t.name] = f->read_f32(t.name).value();
    }
  }
  std::string write(const std::string& tag) const {
    const std::string path = ::testing::TempDir() + "/vad_" + std::to_string(getpid()) + "_" + tag + ".safetensors";
    std::vector<StWriteTensor> ts;
    for (const std::string& n : names) ts.push_back({n, shapes.at(n), data.at(n).data(), StDtype::f32});
    Status s = write_safetensors(path, ts);
    EXPECT_TRUE(s.ok()) << s.message();
    return path;
  }
};

void expect_load_error(const std::string& path, const std::string& part) {
  auto v = SileroVad::load(path);
  ASSERT_FALSE(v.ok()) << path;
  EXPECT_NE(v.message().find(part), std::string::npos) << v.message();
}

TEST(VadWeights, MissingTensor) {
  WeightsCopy w;
  std::erase(w.names, "conv2.bias");
  expect_load_error(w.write("missing"), "tensor 'conv2.bias' is missing");
}

TEST(VadWeights, WrongShape) {
  WeightsCopy w;
  w.shapes["conv1.weight"] = {128, 3, 129};  // same element count, transposed
  expect_load_error(w.write("shape"), "'conv1.weight' has shape [128, 3, 129], expected [128, 129, 3]");
  WeightsCopy w2;
  w2.shapes["lstm_cell.bias_hh"] = {1, 512};
  expect_load_error(w2.write("shape2"), "'lstm_cell.bias_hh' has shape [1, 512]");
}

TEST(VadWeights, UnexpectedTensorAndBadValues) {
  WeightsCopy w;
  w.names.push_back("extra");
  w.shapes["extra"] = {1};
  w.data["extra"] = {0.0f};
  expect_load_error(w.write("extra"), "unexpected tensor 'extra'");
  WeightsCopy w2;
  w2.data["conv3.weight"][7] = NAN;
  expect_load_error(w2.write("nan"), "'conv3.weight' holds a non-finite value");
  expect_load_error(::testing::TempDir() + "/no_such_vad.safetensors", "cannot open");
  expect_load_error(test::shared("audio/jfk.wav"), "header length");
}

// A basis that is not the windowed DFT runs through the GEMM, and gives the
// GEMM's result: here the real basis with one entry changed by 1e-3.
TEST(VadWeights, NonDftBasisUsesTheGemm) {
  WeightsCopy w;
  w.data["stft_conv.weight"][5 * 256 + 17] += 1e-3f;
  const std::string path = w.write("basis");
  auto vad = SileroVad::load(path);
  ASSERT_TRUE(vad.ok()) << vad.message();
  EXPECT_FALSE(vad->stft_by_fft());
  VadLoadOptions o;
  o.force_stft_gemm = true;
  auto ref = SileroVad::load(path, o);
  ASSERT_TRUE(ref.ok());
  const OracleCase c = load_oracle("jfk");
  EXPECT_EQ(vad->probabilities(c.audio), ref->probabilities(c.audio));
}

// ---------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------

std::string cli() { return std::string(AMA_CLI_PATH) + " vad "; }

TEST(VadCli, JsonMatchesTheOracle) {
  const OracleCase c = load_oracle("jfk");
  const auto r = test::run_command(cli() + test::shared("audio/jfk.wav") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j.at("chunk").get<int>(), 512);
  const auto probs = j.at("probs").get<std::vector<float>>();
  ASSERT_EQ(probs.size(), c.probs.size());
  EXPECT_LE(test::max_abs_diff(probs, c.probs).max_abs, 1e-4);
  // Segments in seconds: those of speech_segments on the oracle's probabilities.
  const Segs ref = segments_of(c.probs, c.audio.size());
  const auto& segs = j.at("segments");
  ASSERT_EQ(segs.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_DOUBLE_EQ(segs[i].at("start").get<double>(), ref[i].first / 16000.0);
    EXPECT_DOUBLE_EQ(segs[i].at("end").get<double>(), ref[i].second / 16000.0);
  }
}

TEST(VadCli, PlainLinesAndOptions) {
  const OracleCase c = load_oracle("silero-test");
  VadOptions o;
  o.threshold = 0.6f;
  o.min_silence_ms = 300;
  o.speech_pad_ms = 50;
  o.max_speech_s = 8.0f;
  const Segs ref = segments_of(c.probs, c.audio.size(), o);
  const auto r = test::run_command(cli() + test::shared("audio/silero-test.wav") +
                                   " --threshold 0.6 --min-silence-ms 300 --speech-pad-ms 50 --max-speech-s 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string expected;
  char line[64];
  for (const auto& s : ref) {
    std::snprintf(line, sizeof line, "%.3f %.3f\n", s.first / 16000.0, s.second / 16000.0);
    expected += line;
  }
  EXPECT_EQ(r.out, expected);
}

TEST(VadCli, ErrorsAreOneLine) {
  for (const std::string& args : {test::shared("audio/jfk.wav") + " --threshold 2",
                                  test::shared("audio/jfk.wav") + " --max-speech-s 0.01",
                                  test::shared("audio/jfk.wav") + " --weights " + test::shared("audio/jfk.wav"),
                                  std::string("/no/such/file.wav")}) {
    const auto r = test::run_command(cli() + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_EQ(r.err.rfind("amanuensis: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << args;
  }
}

}  // namespace
}  // namespace ama
