// Decoding rules on crafted logits, window splitting and seeking on crafted
// token sequences, and long-form transcription over several windows.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "audio/resample.h"
#include "backend/cpu/cpu_backend.h"
#include "decode/logit_filters.h"
#include "decode/output_formats.h"
#include "decode/transcriber.h"
#include "model/ggml_file.h"
#include "model/test_model.h"
#include "model/whisper_model.h"
#include "test_util.h"

namespace ama {
namespace {

const Tokenizer& multilingual() {
  static const Tokenizer tok = [] {
    auto r = GgmlReader::open(test::shared("models/whisper-vocab/for-tests-ggml-base.bin"));
    auto h = r->read_header();
    return std::move(Tokenizer::create(h->vocab, h->hp.n_vocab).value());
  }();
  return tok;
}

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

class Rules : public ::testing::Test {
 protected:
  const Tokenizer& tok = multilingual();
  const SpecialTokens& s = tok.special();
  LogitRules rules = default_logit_rules(tok, true);
  std::vector<float> flat(float v = 0.0f) { return std::vector<float>(tok.n_vocab(), v); }
  // Text at logit 0 and timestamps at -20: the timestamps' total
  // probability stays below text, so the forcing rule does not fire.
  std::vector<float> text_favoured() {
    auto l = flat();
    for (int t = s.timestamp_begin; t < tok.n_vocab(); ++t) l[t] = -20.0f;
    return l;
  }
  int ts(double seconds) { return s.timestamp_begin + static_cast<int>(std::lround(seconds / 0.02)); }
};

TEST_F(Rules, FirstTokenIsAnEarlyTimestamp) {
  auto l = flat();
  apply_logit_rules(rules, tok, {}, l.data());
  for (int i = 0; i < s.timestamp_begin; ++i) ASSERT_EQ(l[i], kNegInf) << "text token " << i << " allowed first";
  EXPECT_EQ(l[ts(0.0)], 0.0f);
  EXPECT_EQ(l[ts(1.0)], 0.0f);  // max_initial_timestamp 1.0 s
  EXPECT_EQ(l[ts(1.02)], kNegInf);
  EXPECT_EQ(l[s.no_timestamps], kNegInf);
}

TEST_F(Rules, SuppressesBlankAtStartAndNonSpeechAlways) {
  LogitRules r = rules;
  r.max_initial_timestamp_index = -1;
  auto l = flat();
  apply_logit_rules(r, tok, {}, l.data());
  EXPECT_EQ(l[s.eot], kNegInf);
  EXPECT_EQ(l[tok.encode(" ")[0]], kNegInf);
  // Later: blank is allowed again, non-speech tokens and task tokens never are.
  auto l2 = text_favoured();
  apply_logit_rules(r, tok, {ts(0.0), 400}, l2.data());
  EXPECT_EQ(l2[tok.encode(" ")[0]], 0.0f);
  EXPECT_EQ(l2[s.eot], 0.0f);
  EXPECT_EQ(l2[tok.encode(" -")[0]], kNegInf);
  for (int t : {s.transcribe, s.translate, s.sot, s.sot_prev, s.sot_lm, s.no_speech}) EXPECT_EQ(l2[t], kNegInf) << t;
}

TEST_F(Rules, TimestampsComeInPairsAndNeverDecrease) {
  // After <|1.00|> text: any timestamp from 1.00 on (closing), text too.
  auto l = text_favoured();
  apply_logit_rules(rules, tok, {ts(1.0), 400}, l.data());
  EXPECT_EQ(l[ts(0.98)], kNegInf);
  EXPECT_EQ(l[ts(1.0)], kNegInf) << "a segment must have nonzero length";
  EXPECT_EQ(l[ts(1.02)], -20.0f);
  EXPECT_EQ(l[400], 0.0f);
  // After text <|2.00|> (a closing timestamp): another timestamp may open at 2.00, not text.
  auto l2 = text_favoured();
  apply_logit_rules(rules, tok, {ts(1.0), 400, ts(2.0)}, l2.data());
  EXPECT_EQ(l2[400], kNegInf);
  EXPECT_EQ(l2[s.eot], 0.0f);
  EXPECT_EQ(l2[ts(2.0)], -20.0f);
  EXPECT_EQ(l2[ts(1.98)], kNegInf);
  // After a pair <|2.00|><|2.00|>: text must follow.
  auto l3 = text_favoured();
  apply_logit_rules(rules, tok, {ts(1.0), 400, ts(2.0), ts(2.0)}, l3.data());
  for (int t = s.timestamp_begin; t < tok.n_vocab(); ++t) ASSERT_EQ(l3[t], kNegInf);
  EXPECT_EQ(l3[400], 0.0f);
}

TEST_F(Rules, TimestampForcedWhenTheirTotalProbabilityWins) {
  // Text token 400 has the single highest logit, but 1501 timestamps at
  // logit 0 together outweigh it: log(1501) = 7.3 > 5.
  auto l = flat(-30.0f);
  l[400] = 5.0f;
  for (int t = s.timestamp_begin; t < tok.n_vocab(); ++t) l[t] = 0.0f;
  apply_logit_rules(rules, tok, {ts(0.0), 401}, l.data());
  EXPECT_EQ(l[400], kNegInf);
  // At logit 8 the text token wins and stays.
  auto l2 = flat(-30.0f);
  l2[400] = 8.0f;
  for (int t = s.timestamp_begin; t < tok.n_vocab(); ++t) l2[t] = 0.0f;
  apply_logit_rules(rules, tok, {ts(0.0), 401}, l2.data());
  EXPECT_EQ(l2[400], 8.0f);
}

TEST_F(Rules, WithoutTimestampsNoTimestampTokens) {
  LogitRules r = default_logit_rules(tok, false);
  auto l = flat();
  apply_logit_rules(r, tok, {}, l.data());
  for (int t = s.timestamp_begin; t < tok.n_vocab(); ++t) ASSERT_EQ(l[t], kNegInf);
  EXPECT_EQ(l[400], 0.0f);
}

TEST_F(Rules, SplitWindowAtTimestampPairs) {
  // <|0.00|> A <|1.00|><|1.00|> B <|2.50|> -> two segments, seek to the window end.
  std::vector<int> t = {ts(0), 400, ts(1.0), ts(1.0), 370, ts(2.5)};
  WindowSegments w = split_window(tok, t, 1000, 3000, true);
  ASSERT_EQ(w.segments.size(), 2u);
  EXPECT_DOUBLE_EQ(w.segments[0].start, 10.0);
  EXPECT_DOUBLE_EQ(w.segments[0].end, 11.0);
  EXPECT_EQ(w.segments[0].text, " And");
  EXPECT_DOUBLE_EQ(w.segments[1].start, 11.0);
  EXPECT_DOUBLE_EQ(w.segments[1].end, 12.5);
  EXPECT_EQ(w.next_seek, 4000);
  // Unfinished last segment: seek to the end of the last complete one.
  std::vector<int> u = {ts(0), 400, ts(1.0), ts(1.0), 370, 452};
  WindowSegments w2 = split_window(tok, u, 0, 3000, true);
  ASSERT_EQ(w2.segments.size(), 1u);
  EXPECT_EQ(w2.next_seek, 100);  // 1.00 s = 50 positions = 100 frames
  // No timestamp pairs: one segment for the window, to its last timestamp.
  std::vector<int> v = {ts(0), 400, 370, ts(4.0)};
  WindowSegments w3 = split_window(tok, v, 0, 3000, true);
  ASSERT_EQ(w3.segments.size(), 1u);
  EXPECT_DOUBLE_EQ(w3.segments[0].end, 4.0);
  EXPECT_EQ(w3.next_seek, 3000);
}

TEST(OutputFormats, SrtVttJsonAreWellFormed) {
  Transcript t;
  t.language = "en";
  t.segments.resize(2);
  t.segments[0].start = 0.0;
  t.segments[0].end = 1.5;
  t.segments[0].text = " Hello --> world";
  t.segments[0].avg_logprob = -0.1;
  t.segments[0].no_speech_prob = 0.01;
  t.segments[1].start = 3661.25;
  t.segments[1].end = 3662.0;
  t.segments[1].text = " Ünïcödé";
  t.segments[1].avg_logprob = -0.2;
  EXPECT_EQ(*format_transcript(t, "srt"),
            "1\n00:00:00,000 --> 00:00:01,500\nHello -> world\n\n2\n01:01:01,250 --> 01:01:02,000\nÜnïcödé\n\n");
  EXPECT_EQ(*format_transcript(t, "vtt"),
            "WEBVTT\n\n00:00.000 --> 00:01.500\nHello -> world\n\n01:01:01.250 --> 01:01:02.000\nÜnïcödé\n\n");
  EXPECT_EQ(*format_transcript(t, "txt"), "Hello --> world\nÜnïcödé\n");
  auto j = nlohmann::json::parse(*format_transcript(t, "json"));
  EXPECT_EQ(j["segments"].size(), 2u);
  EXPECT_EQ(j["text"], " Hello --> world Ünïcödé");
  EXPECT_FALSE(format_transcript(t, "docx").ok());
}

// Long-form: 3.5 windows of real speech on a random tiny-shaped model.
// Random weights give nonsense text, but the seeking must still walk the
// whole file in order, with segments inside the audio and progress reaching the end.
TEST(LongForm, SeeksThroughSeveralWindows) {
  const std::string path = ::testing::TempDir() + "/longform_tiny.bin";
  TestModelOptions mo;
  mo.hp = *standard_hparams("tiny");
  mo.seed = 3;
  mo.vocab_source = test::shared("models/whisper-vocab/for-tests-ggml-base.bin");
  mo.output = path;
  ASSERT_TRUE(write_test_model(mo).ok());
  auto be = make_cpu_backend({});
  auto model = load_model(path, **be);
  ASSERT_TRUE(model.ok()) << model.message();
  auto jfk = load_audio(test::shared("audio/jfk.wav"));
  std::vector<float> audio;
  while (audio.size() < 105u * 16000) {
    audio.insert(audio.end(), jfk->begin(), jfk->end());
    audio.insert(audio.end(), 16000 * 2, 0.0f);
  }
  Transcriber t(*model, **be);
  TranscribeOptions o;
  o.decoding = DecodingOptions::greedy();
  o.language = "en";
  std::vector<double> progress;
  o.on_progress = [&](double done, double total) { progress.push_back(done / total); };
  auto r = t.transcribe(audio, o);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_GE(progress.size(), 4u) << "a 105 s file needs at least 4 windows";
  for (size_t i = 1; i < progress.size(); ++i) EXPECT_GT(progress[i], progress[i - 1]);
  EXPECT_DOUBLE_EQ(progress.back(), 1.0);
  double last_seek = -1;
  for (const Segment& s : r->segments) {
    EXPECT_LE(s.start, s.end);
    EXPECT_LE(s.end, r->duration + 1e-9);
    EXPECT_GE(s.seek, last_seek);
    last_seek = s.seek;
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace ama

namespace ama {
namespace {

// Language detection runs, as openai's, on the first 30 s of the padded
// spectrogram (the mel of the appended silence past a short clip), not on
// the zero-padded decoding window.
TEST(LanguageDetection, UsesThePaddedSpectrogramLikeOpenai) {
  auto be = make_cpu_backend({});
  auto model = load_model(test::shared("oracle/micro/model.bin"), **be);
  ASSERT_TRUE(model.ok()) << model.message();
  auto audio = load_audio(test::shared("audio/jfk.wav"));
  ASSERT_TRUE(audio.ok());
  Transcriber t(*model, **be);
  LogMel lm((*model)->mel_filters, (*model)->hp.n_mels);
  for (int tenths : {3, 7, 10, 20, 35, 50, 80, 110}) {
    SCOPED_TRACE("clip of " + std::to_string(tenths / 10.0) + " s");
    std::vector<float> clip(audio->begin(), audio->begin() + tenths * 1600);
    auto mel = lm.compute(clip.data(), clip.size());
    ASSERT_TRUE(t.encode_window(mel.data(), LogMel::total_frames(clip.size())).ok());
    auto detected = t.detect_language();
    ASSERT_TRUE(detected.ok()) << detected.message();
    const std::string expected = detected->front().code;
    TranscribeOptions o;
    o.decoding = DecodingOptions::greedy();
    o.language = "auto";
    auto r = t.transcribe(clip, o);
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r->language, expected);
    EXPECT_FALSE(expected.empty());
  }
}

}  // namespace
}  // namespace ama
