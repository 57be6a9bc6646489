// The scheduler: files decoded together share decoder steps, and each
// file's transcript is the same bytes as when it runs alone; jobs can be
// cancelled; languages are detected per file.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <unistd.h>

#include "audio/audio_source.h"
#include "audio/wav.h"
#include "decode/output_formats.h"
#include "decode/scheduler.h"
#include "engine/engine.h"
#include "test_util.h"

namespace ama {
namespace {

const Engine& micro_engine() {
  static auto e = Engine::load(test::shared("oracle/micro/model.bin"), {2, "f32"}).value();
  return *e;
}
const SileroVad& vad() {
  static SileroVad v = SileroVad::load(test::shared("models/silero_vad_16k.safetensors")).value();
  return v;
}

// Different audio for each job: stretches of the shared speech files.
std::vector<std::string> clips() {
  static std::vector<std::string> files = [] {
    std::vector<std::string> out;
    auto speech = load_audio(test::shared("audio/silero-test.wav")).value();
    auto jfk = load_audio(test::shared("audio/jfk.wav")).value();
    const size_t sr = 16000;
    struct Part {
      const std::vector<float>* src;
      size_t from, to;
    };
    const std::vector<Part> parts = {{&jfk, 0, jfk.size()},         {&speech, 0, 45 * sr},       {&speech, 10 * sr, 60 * sr},
                                     {&jfk, 3 * sr, jfk.size()},    {&speech, 20 * sr, 50 * sr}, {&speech, 0, speech.size()}};
    for (size_t i = 0; i < parts.size(); ++i) {
      const std::string p = ::testing::TempDir() + "/sched_" + std::to_string(getpid()) + "_" + std::to_string(i) + ".wav";
      std::vector<float> x(parts[i].src->begin() + parts[i].from,
                           parts[i].src->begin() + std::min(parts[i].to, parts[i].src->size()));
      EXPECT_TRUE(write_wav_file(p, x, 1, 16000, WavSampleFormat::pcm16).ok());
      out.push_back(p);
    }
    return out;
  }();
  return files;
}

// Greedy, or beams and fallback with sampling (a shorter schedule than
// openai's: random weights fall back at every window, and this runs twice
// over every file).
PipelineOptions options(bool beams) {
  PipelineOptions o;
  o.decoding = DecodingOptions::greedy();
  if (beams) {
    o.decoding = DecodingOptions{};
    o.decoding.temperatures = {0.0f, 0.5f, 1.0f};
    o.decoding.best_of = 3;
  }
  o.word_timestamps = true;
  return o;
}

std::string verbose(const Result<PipelineResult>& r) {
  EXPECT_TRUE(r.ok()) << r.message();
  if (!r.ok()) return "";
  return format_transcript(r->transcript, "verbose_json").value();
}

std::string alone(const std::string& file, const PipelineOptions& o) {
  auto s = Scheduler::create(micro_engine(), {8}).value();
  return verbose(s->run(prepare_audio(vad(), file, o.vad).value(), o));
}

void same_together_as_alone(bool beams) {
  const PipelineOptions o = options(beams);
  auto files = clips();
  // Under the sanitizers (10-20x slower) greedy takes four of the six
  // clips, 94 s of audio instead of 204: the test took 39 s there, the
  // longest of the sanitized run, which has to fit CI's 30 minutes.
  if (beams) files = {files[0], files[3], files[4]};
  else if (test::kSanitized) files = {files[0], files[1], files[3], files[4]};
  std::vector<std::string> want;
  for (const auto& f : files) want.push_back(alone(f, o));

  // All at once on one scheduler of 4 windows, from one thread each.
  auto s = Scheduler::create(micro_engine(), {4}).value();
  std::vector<std::string> got(files.size());
  std::atomic<int> max_jobs{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < files.size(); ++i)
    threads.emplace_back([&, i] {
      got[i] = verbose(s->run(prepare_audio(vad(), files[i], o.vad).value(), o));
      max_jobs = std::max(max_jobs.load(), s->stats().jobs);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < files.size(); ++i) EXPECT_EQ(got[i], want[i]) << "file " << i << " batched with the others";
  EXPECT_GT(s->stats().steps, 0);
}

TEST(Scheduler, SameTranscriptAloneOrAmongOthersGreedy) { same_together_as_alone(false); }
TEST(Scheduler, SameTranscriptAloneOrAmongOthersBeamAndFallback) { same_together_as_alone(true); }

TEST(Scheduler, StepsCarryWindowsOfSeveralFiles) {
  const PipelineOptions o = options(false);
  auto s = Scheduler::create(micro_engine(), {8}).value();
  std::atomic<bool> go{false};
  std::atomic<int> peak{0};
  std::thread watch([&] {
    while (!go) {
      peak = std::max(peak.load(), s->stats().windows);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  const auto files = clips();
  std::vector<std::thread> threads;
  std::vector<PreparedAudio> prepared;
  for (int i : {1, 2, 4}) prepared.push_back(prepare_audio(vad(), files[i], o.vad).value());
  for (auto& p : prepared) threads.emplace_back([&, &p = p] { EXPECT_TRUE(s->run(std::move(p), o).ok()); });
  for (auto& t : threads) t.join();
  go = true;
  watch.join();
  // Each of these files has at most 2 chunks: more than 2 windows in a step
  // means windows of different files shared it.
  EXPECT_GT(peak.load(), 2);
}

TEST(Scheduler, CancelledJobEndsWithAnErrorAndOthersFinish) {
  PipelineOptions o = options(false);
  // One window at a time: the job is cancelled after its first chunk, while
  // its others wait.
  auto s = Scheduler::create(micro_engine(), {1}).value();
  const auto files = clips();
  std::atomic<bool> cancel{false};
  Result<PipelineResult> cancelled = make_error("not run"), other = make_error("not run");
  std::thread a([&] {
    JobEvents ev;
    ev.on_progress = [&](double, double) { cancel = true; };  // cancel after the first chunk
    cancelled = s->run(prepare_audio(vad(), files[5], o.vad).value(), o, ev, &cancel);
  });
  std::thread b([&] { other = s->run(prepare_audio(vad(), files[0], o.vad).value(), o); });
  a.join();
  b.join();
  ASSERT_FALSE(cancelled.ok());
  EXPECT_NE(cancelled.message().find("cancelled"), std::string::npos) << cancelled.message();
  ASSERT_TRUE(other.ok()) << other.message();
  EXPECT_EQ(verbose(other), alone(files[0], o));
}

TEST(Scheduler, SegmentsStreamInTimeOrderAndEqualTheResult) {
  const PipelineOptions o = options(false);
  auto s = Scheduler::create(micro_engine(), {2}).value();
  std::vector<Segment> streamed;
  JobEvents ev;
  ev.on_segment = [&](const Segment& sg) { streamed.push_back(sg); };
  auto r = s->run(prepare_audio(vad(), clips()[5], o.vad).value(), o, ev);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(streamed.size(), r->transcript.segments.size());
  for (size_t i = 0; i < streamed.size(); ++i) {
    EXPECT_EQ(streamed[i].text, r->transcript.segments[i].text);
    if (i) {
      EXPECT_GE(streamed[i].start, streamed[i - 1].start);
    }
  }
}

TEST(Scheduler, DetectsTheLanguageOfEachFile) {
  PipelineOptions o = options(false);
  o.language = "auto";
  auto s = Scheduler::create(micro_engine(), {8}).value();
  auto r = s->run(prepare_audio(vad(), clips()[0], o.vad).value(), o);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->transcript.language_probs.size(), 5u);
  EXPECT_EQ(r->transcript.language, r->transcript.language_probs[0].code);
  double last = 1;
  for (const auto& l : r->transcript.language_probs) {
    EXPECT_LE(l.probability, last);
    last = l.probability;
  }
  o.language = "German";  // English names in any case
  auto g = s->run(prepare_audio(vad(), clips()[0], o.vad).value(), o);
  ASSERT_TRUE(g.ok()) << g.message();
  EXPECT_EQ(g->transcript.language, "de");
  EXPECT_TRUE(g->transcript.language_probs.empty());
  o.language = "klingon";
  EXPECT_FALSE(s->run(prepare_audio(vad(), clips()[0], o.vad).value(), o).ok());
}

}  // namespace
}  // namespace ama
