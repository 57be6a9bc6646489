// The stage API and the batched pipeline: a window's tokens and
// log-probabilities must not depend on what it is batched with, nor on the
// thread count; chunks come back in time order; memory stays flat in file
// length; both long-form modes run through the CLI.
#include <gtest/gtest.h>

#include <cstring>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "audio/vad.h"
#include "audio/wav.h"
#include "backend/cpu/cpu_backend.h"
#include "decode/pipeline.h"
#include "engine/engine.h"
#include "model/test_model.h"
#include "test_util.h"

namespace ama {
namespace {

// A micro-shaped multilingual model (n_state 128, 2 heads, 2 + 2 layers)
// with the real vocabulary: fast, and every stage is exercised.
const std::string& small_model() {
  static const std::string path = [] {
    // Per process: ctest runs tests in parallel processes.
    const std::string p = ::testing::TempDir() + "/pipeline_small_" + std::to_string(getpid()) + ".bin";
    TestModelOptions mo;
    mo.hp = *standard_hparams("tiny");
    mo.hp.n_audio_state = mo.hp.n_text_state = 128;
    mo.hp.n_audio_head = mo.hp.n_text_head = 2;
    mo.hp.n_audio_layer = mo.hp.n_text_layer = 2;
    mo.seed = 11;
    mo.vocab_source = test::shared("models/whisper-vocab/for-tests-ggml-base.bin");
    mo.output = p;
    EXPECT_TRUE(write_test_model(mo).ok());
    return p;
  }();
  return path;
}

// silero-test.wav (60 s of speech with pauses) `copies` times: several chunks.
std::string long_speech(int copies) {
  const std::string p =
      ::testing::TempDir() + "/speech_x" + std::to_string(copies) + "_" + std::to_string(getpid()) + ".wav";
  if (FILE* f = std::fopen(p.c_str(), "rb")) {
    std::fclose(f);
    return p;
  }
  auto one = load_audio(test::shared("audio/silero-test.wav"));
  EXPECT_TRUE(one.ok());
  std::vector<float> all;
  all.reserve(one->size() * copies);
  for (int i = 0; i < copies; ++i) all.insert(all.end(), one->begin(), one->end());
  EXPECT_TRUE(write_wav_file(p, all, 1, 16000, WavSampleFormat::pcm16).ok());
  return p;
}

std::unique_ptr<Engine> engine(const std::string& compute, int threads) {
  auto e = Engine::load(small_model(), {threads, compute});
  EXPECT_TRUE(e.ok()) << e.message();
  return e ? std::move(*e) : nullptr;
}

const SileroVad& vad() {
  static const SileroVad v = *SileroVad::load(test::shared("models/silero_vad_16k.safetensors"));
  return v;
}

// --- The stage seam -------------------------------------------------------

// Normalized mel windows of three different stretches of speech.
std::vector<float> three_windows(const WhisperModel& m) {
  auto audio = load_audio(test::shared("audio/silero-test.wav"));
  EXPECT_TRUE(audio.ok());
  LogMel lm(m.mel_filters, m.hp.n_mels);
  const size_t window = static_cast<size_t>(m.hp.n_mels) * kNFramesPerWindow;
  std::vector<float> mels(3 * window);
  for (int w = 0; w < 3; ++w) {
    const size_t start = static_cast<size_t>(w) * 15 * 16000;
    std::vector<float> clip(audio->begin() + start, audio->begin() + start + 30 * 16000);
    float* out = mels.data() + w * window;
    lm.raw_frames(clip.data(), clip.size(), 0, kNFramesPerWindow, out, kNFramesPerWindow);
    LogMel::normalize(out, m.hp.n_mels, kNFramesPerWindow, kNFramesPerWindow, *std::max_element(out, out + window));
  }
  return mels;
}

class StageBatching : public ::testing::TestWithParam<std::string> {};

// Sequence A (window 0) decoded alone, then again beside sequences over
// other windows at other positions, with a multi-token prompt in the same
// step: A's logits must be the same bits.
TEST_P(StageBatching, LogitsDoNotDependOnTheBatch) {
  for (int threads : {1, 2}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    auto e = engine(GetParam(), threads);
    ASSERT_TRUE(e);
    const WhisperModel& m = e->model();
    const SpecialTokens& s = m.tokenizer.special();
    auto enc = e->new_encoder_stage();
    const std::vector<float> mels = three_windows(m);
    auto states = enc->encode(mels.data(), 3, static_cast<size_t>(m.hp.n_mels) * kNFramesPerWindow, kNFramesPerWindow);
    ASSERT_TRUE(states.ok()) << states.message();
    const std::vector<std::vector<int>> script = {{s.sot, s.language_begin, s.transcribe}, {440}, {1029}, {406}, {11}};

    std::vector<std::vector<float>> alone;
    {
      auto dec = e->new_decoder_stage();
      auto a = dec->add_sequence((*states)[0]);
      ASSERT_TRUE(a.ok());
      for (const auto& toks : script) {
        std::vector<float> logits;
        ASSERT_TRUE(dec->step({{*a, toks}}, logits).ok());
        ASSERT_EQ(logits.size(), static_cast<size_t>(m.hp.n_vocab));
        alone.push_back(logits);
      }
    }
    auto dec = e->new_decoder_stage();
    auto b = dec->add_sequence((*states)[1]);
    auto c = dec->add_sequence((*states)[2]);
    ASSERT_TRUE(b.ok() && c.ok());
    std::vector<float> logits;
    ASSERT_TRUE(dec->step({{*b, {s.sot, s.language_begin, s.transcribe, 50364, 300, 301}}}, logits).ok());
    auto a = dec->add_sequence((*states)[0]);
    ASSERT_TRUE(a.ok());
    auto d = dec->fork(*b);  // a fork shares b's window and prefix
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(dec->n_past(*d), 6);
    for (size_t i = 0; i < script.size(); ++i) {
      // A in the middle of the batch; c gets a prompt of several tokens at step 0.
      std::vector<DecoderStage::Input> in = {{*b, {500 + static_cast<int>(i)}}, {*a, script[i]}, {*d, {700}}};
      if (i == 0) in.push_back({*c, {s.sot, s.language_begin + 1, s.transcribe}});
      else in.push_back({*c, {900}});
      ASSERT_TRUE(dec->step(in, logits).ok());
      ASSERT_EQ(logits.size(), in.size() * m.hp.n_vocab);
      const float* row = logits.data() + m.hp.n_vocab;
      const auto& want = alone[i];
      EXPECT_EQ(std::memcmp(row, want.data(), want.size() * sizeof(float)), 0)
          << "step " << i << ": " << test::max_abs_diff(std::vector<float>(row, row + want.size()), want).str();
    }
  }
}

TEST_P(StageBatching, RejectsBadSteps) {
  auto e = engine(GetParam(), 1);
  ASSERT_TRUE(e);
  const WhisperModel& m = e->model();
  auto enc = e->new_encoder_stage();
  const std::vector<float> mels = three_windows(m);
  auto states = enc->encode(mels.data(), 1, 0, kNFramesPerWindow);
  ASSERT_TRUE(states.ok());
  auto dec = e->new_decoder_stage();
  auto a = dec->add_sequence(states->front());
  ASSERT_TRUE(a.ok());
  std::vector<float> logits;
  EXPECT_FALSE(dec->step({{*a + 100, {1}}}, logits).ok());                 // unknown sequence
  EXPECT_FALSE(dec->step({{*a, {1}}, {*a, {2}}}, logits).ok());            // twice in one step
  EXPECT_FALSE(dec->step({{*a, {m.hp.n_vocab}}}, logits).ok());            // token out of range
  EXPECT_FALSE(dec->step({{*a, {}}}, logits).ok());                        // no tokens
  EXPECT_FALSE(dec->step({{*a, std::vector<int>(m.hp.n_text_ctx + 1, 1)}}, logits).ok());  // context overflow
  EXPECT_EQ(dec->n_past(*a), 0) << "a refused step changed the sequence";
  EXPECT_FALSE(dec->add_sequence(nullptr).ok());
  EXPECT_FALSE(dec->fork(12345).ok());
  EXPECT_FALSE(enc->encode(mels.data(), 1, 0, 100).ok());  // a window needs 3000 frames
  dec->free(*a);
  EXPECT_EQ(dec->n_past(*a), -1);
  EXPECT_EQ(dec->size(), 0);
  // A state from another engine's model is refused, not misread.
  auto other = engine(GetParam(), 1);
  auto dec2 = other->new_decoder_stage();
  EXPECT_FALSE(dec2->add_sequence(states->front()).ok());
}

INSTANTIATE_TEST_SUITE_P(Compute, StageBatching, ::testing::Values("f32", "bf16", "int8"));

// --- The batched pipeline -------------------------------------------------

TEST(MergeChunks, LikeWhisperX) {
  const size_t max = 30 * 16000;
  EXPECT_TRUE(merge_speech_segments({}, max).empty());
  // Merged while the chunk stays within 30 s, then a new chunk.
  auto c = merge_speech_segments({{0, 160000}, {200000, 400000}, {450000, 500000}, {520000, 600000}}, max);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].start, 0u);
  EXPECT_EQ(c[0].end, 400000u);
  EXPECT_EQ(c[1].start, 450000u);
  EXPECT_EQ(c[1].end, 600000u);
  // A segment longer than a window is cut into windows.
  c = merge_speech_segments({{100, 100 + 2 * max + 5}}, max);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].end - c[0].start, max);
  EXPECT_EQ(c[2].end, 100 + 2 * max + 5);
  for (size_t i = 1; i < c.size(); ++i) EXPECT_EQ(c[i].start, c[i - 1].end);
}

Result<PipelineResult> run_pipeline(const std::string& compute, int threads, int batch, int forced,
                                    const std::string& file) {
  auto e = engine(compute, threads);
  if (!e) return make_error("no engine");
  PipelineOptions o;
  o.language = "en";
  o.batch_size = batch;
  o.forced_tokens_per_30s = forced;
  o.decoding = DecodingOptions::greedy();
  return transcribe_file_batched(*e, vad(), file, o);
}

void expect_same(const Transcript& a, const Transcript& b) {
  ASSERT_EQ(a.segments.size(), b.segments.size());
  for (size_t i = 0; i < a.segments.size(); ++i) {
    const Segment &x = a.segments[i], &y = b.segments[i];
    EXPECT_EQ(x.tokens, y.tokens) << "segment " << i;
    EXPECT_EQ(x.avg_logprob, y.avg_logprob) << "segment " << i;  // bit for bit
    EXPECT_EQ(x.no_speech_prob, y.no_speech_prob) << "segment " << i;
    EXPECT_EQ(x.start, y.start);
    EXPECT_EQ(x.end, y.end);
    EXPECT_EQ(x.text, y.text);
  }
}

// ★ The same transcript whatever the batch (1, 3, 16) and thread count.
// The forced token count is proportional to each chunk's length, so
// sequences end at different steps and slots are refilled mid-batch.
TEST(Pipeline, SameTranscriptWhateverTheBatch) {
  const std::string file = long_speech(3);
  for (const std::string compute : {"int8", "f32"}) {
    SCOPED_TRACE(compute);
    auto ref = run_pipeline(compute, 2, 1, 24, file);
    ASSERT_TRUE(ref.ok()) << ref.message();
    ASSERT_GE(ref->windows, 4) << "the test needs several chunks";
    ASSERT_FALSE(ref->transcript.segments.empty());
    for (auto [batch, threads] : std::vector<std::pair<int, int>>{{3, 2}, {16, 2}, {3, 1}}) {
      SCOPED_TRACE("batch " + std::to_string(batch) + ", threads " + std::to_string(threads));
      auto r = run_pipeline(compute, threads, batch, 24, file);
      ASSERT_TRUE(r.ok()) << r.message();
      EXPECT_EQ(r->windows, ref->windows);
      EXPECT_EQ(r->decoded_tokens, ref->decoded_tokens);
      expect_same(r->transcript, ref->transcript);
    }
  }
}

// Unforced (each window stops at end of text or 224 tokens): the same.
TEST(Pipeline, SameTranscriptUnforced) {
  const std::string file = long_speech(2);
  auto a = run_pipeline("int8", 2, 1, 0, file);
  auto b = run_pipeline("int8", 2, 8, 0, file);
  ASSERT_TRUE(a.ok() && b.ok());
  expect_same(a->transcript, b->transcript);
}

TEST(Pipeline, SegmentsInTimeOrderInsideSpeech) {
  const std::string file = long_speech(3);
  auto r = run_pipeline("int8", 2, 4, 24, file);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_NEAR(r->transcript.duration, 180.0, 0.01);
  double last = 0;
  for (const Segment& s : r->transcript.segments) {
    EXPECT_LE(s.start, s.end);
    EXPECT_GE(s.start, last - 1e-9) << "segments out of order";
    EXPECT_LE(s.end, r->transcript.duration);
    last = s.start;
  }
  // Chunks are speech: each stays inside the VAD's view of the file.
  EXPECT_GT(r->times.vad, 0);
  EXPECT_GT(r->times.encode, 0);
}

TEST(Pipeline, SilenceGivesNoSegments) {
  const std::string p = ::testing::TempDir() + "/silence_" + std::to_string(getpid()) + ".wav";
  ASSERT_TRUE(write_wav_file(p, std::vector<float>(16000 * 20, 0.0f), 1, 16000, WavSampleFormat::pcm16).ok());
  auto r = run_pipeline("int8", 2, 4, 0, p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->windows, 0);
  EXPECT_TRUE(r->transcript.segments.empty());
  EXPECT_NEAR(r->transcript.duration, 20.0, 1e-9);
}

TEST(Pipeline, RejectsAbsurdOptions) {
  auto e = engine("int8", 1);
  PipelineOptions o;
  o.batch_size = -1;
  EXPECT_FALSE(transcribe_file_batched(*e, vad(), test::shared("audio/jfk.wav"), o).ok());
  o.batch_size = 100000;
  EXPECT_FALSE(transcribe_file_batched(*e, vad(), test::shared("audio/jfk.wav"), o).ok());
  o.batch_size = 0;
  o.forced_tokens_per_30s = 5000;
  EXPECT_FALSE(transcribe_file_batched(*e, vad(), test::shared("audio/jfk.wav"), o).ok());
  o.forced_tokens_per_30s = 0;
  o.language = "klingon";
  EXPECT_FALSE(transcribe_file_batched(*e, vad(), test::shared("audio/jfk.wav"), o).ok());
  o.language = "en";
  auto missing = transcribe_file_batched(*e, vad(), "/nonexistent/x.wav", o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("/nonexistent/x.wav"), std::string::npos) << missing.message();
}

// --- Through the CLI ------------------------------------------------------

std::string cli() { return AMA_CLI_PATH; }

TEST(PipelineCli, BothModesWriteTranscripts) {
  const std::string out = ::testing::TempDir() + "/modes_" + std::to_string(getpid());
  for (const std::string mode : {"batched", "sequential"}) {
    SCOPED_TRACE(mode);
    auto r = test::run_command(cli() + " transcribe -m " + test::shared("oracle/micro/model.bin") + " " +
                               test::shared("audio/jfk.wav") + " --mode " + mode + " -l en -f json,srt -o " + out + "_" +
                               mode);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream f(out + "_" + mode + ".json");
    nlohmann::json j = nlohmann::json::parse(f);
    EXPECT_EQ(j["language"], "en");
    EXPECT_NEAR(j["duration"].get<double>(), 11.0, 0.01);
  }
  auto bad = test::run_command(cli() + " transcribe -m " + test::shared("oracle/micro/model.bin") + " " +
                               test::shared("audio/jfk.wav") + " --mode parallel");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--mode"), std::string::npos) << bad.err;
}

TEST(PipelineCli, ReadsStandardInput) {
  const std::string model = test::shared("oracle/micro/model.bin");
  auto file = test::run_command(cli() + " transcribe -m " + model + " -l en " + test::shared("audio/jfk.wav"));
  auto piped = test::run_command("cat " + test::shared("audio/jfk.wav") + " | " + cli() + " transcribe -m " + model +
                                 " -l en -");
  ASSERT_EQ(file.exit_code, 0) << file.err;
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, file.out);
  EXPECT_FALSE(file.out.empty());
}

// bench --e2e prints the contract's fields; peak RSS for 60 minutes of
// speech stays within 10% of 10 minutes (the audio is streamed, not held).
TEST(PipelineCli, E2eBenchAndFlatMemory) {
  auto one = load_audio(test::shared("audio/silero-test.wav"));
  ASSERT_TRUE(one.ok());
  std::map<int, double> rss;
  for (int minutes : {10, 60}) {
    const std::string p =
        ::testing::TempDir() + "/speech_" + std::to_string(minutes) + "min_" + std::to_string(getpid()) + ".wav";
    std::vector<float> all;
    for (int i = 0; i < minutes; ++i) all.insert(all.end(), one->begin(), one->end());
    ASSERT_TRUE(write_wav_file(p, all, 1, 16000, WavSampleFormat::pcm16).ok());
    all = {};
    auto r = test::run_command(cli() + " bench -m " + small_model() + " -t 2 --e2e " + p +
                               " --tokens-per-window 3 --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out);
    for (const char* k : {"audio_s", "wall_s", "rtf_x", "peak_rss_mb", "windows"}) EXPECT_TRUE(j.contains(k)) << k;
    for (const char* k : {"decode_audio", "vad", "mel", "encode", "decode", "write"})
      EXPECT_TRUE(j["stages_s"].contains(k)) << k;
    EXPECT_NEAR(j["audio_s"].get<double>(), 60.0 * minutes, 0.1);
    EXPECT_GE(j["windows"].get<int>(), minutes);
    rss[minutes] = j["peak_rss_mb"].get<double>();
    std::remove(p.c_str());
  }
  EXPECT_LE(rss[60], rss[10] * 1.10) << "peak RSS " << rss[10] << " MB for 10 min, " << rss[60] << " MB for 60 min";
}

}  // namespace
}  // namespace ama
