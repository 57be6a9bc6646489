// Tests for AudioSource / load_audio (audio/audio_source.h): every container
// and codec we promise, checked for length AND content against known signals;
// the resampler's quality against our own resample(); stdin through the CLI;
// one-line errors for bad input; bounded memory on a 20-minute stream.
//
// Inputs come from ../shared/audio and from the ffmpeg CLI, which makes them
// in ::testing::TempDir() from a stereo signal whose channels differ
// (L = jfk.wav, R = jfk.wav reversed at half level), so a decoder that drops
// a channel or scrambles the interleaving no longer matches (L + R) / 2.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <numbers>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "audio/audio_source.h"
#include "audio/ffmpeg_lib.h"
#include "audio/resample.h"
#include "audio/wav.h"
#include "test_util.h"

#ifndef AMA_CLI_PATH
#define AMA_CLI_PATH "amanuensis"
#endif

namespace ama {
namespace {

constexpr double kPi = std::numbers::pi;
constexpr size_t kJfkSamples = 176000;  // jfk.wav: 11.0 s at 16 kHz

// Temporary files, named per process (ctest may run these tests in parallel)
// and removed when the test program ends.
std::set<std::string>& temp_files() {
  static std::set<std::string> files;
  return files;
}

std::string tmp(const std::string& name) {
  const std::string path = ::testing::TempDir() + "ama_audio_source_" + std::to_string(getpid()) + "_" + name;
  temp_files().insert(path);
  return path;
}

class RemoveTempFiles : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const std::string& f : temp_files()) std::remove(f.c_str());
  }
};
[[maybe_unused]] ::testing::Environment* const remove_temp_files =
    ::testing::AddGlobalTestEnvironment(new RemoveTempFiles);

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Runs the ffmpeg CLI once per test process for each output (later calls
// with the same output reuse it).
::testing::AssertionResult ffmpeg(const std::string& args, const std::string& out) {
  static std::set<std::string> made;
  if (made.count(out)) return ::testing::AssertionSuccess();
  auto r = test::run_command("ffmpeg -nostdin -loglevel error -y " + args + " " + quote(out));
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "ffmpeg " << args << " failed: " << r.err;
  made.insert(out);
  return ::testing::AssertionSuccess();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const uint8_t* data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
}

// Reads a whole stream through AudioSource::read in blocks of `block`.
std::vector<float> read_all(const std::string& path, size_t block = 4000) {
  auto src = AudioSource::open(path);
  EXPECT_TRUE(src.ok()) << src.message();
  if (!src.ok()) return {};
  std::vector<float> all, buf(block);
  bool short_read = false;
  for (;;) {
    auto n = (*src)->read(buf.data(), block);
    EXPECT_TRUE(n.ok()) << n.message();
    if (!n.ok() || *n == 0) break;
    EXPECT_FALSE(short_read) << "read() returned fewer than asked before the end";
    short_read = *n < block;
    all.insert(all.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n));
  }
  return all;
}

struct Match {
  int lag = 0;         // got[i + lag] lines up with ref[i]
  double corr = 0;     // normalised correlation over the overlap
  double snr_db = 0;   // 10 log10(|ref|^2 / |got - ref|^2) over the overlap
  std::string str() const {
    char b[128];
    std::snprintf(b, sizeof b, "lag %d, correlation %.6f, SNR %.1f dB", lag, corr, snr_db);
    return b;
  }
};

Match match(const std::vector<float>& got, const std::vector<float>& ref, int max_lag) {
  Match best;
  best.corr = -2;
  for (int lag = -max_lag; lag <= max_lag; ++lag) {
    double gr = 0, gg = 0, rr = 0, ee = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const int64_t j = static_cast<int64_t>(i) + lag;
      if (j < 0 || j >= static_cast<int64_t>(got.size())) continue;
      const double g = got[static_cast<size_t>(j)], r = ref[i];
      gr += g * r;
      gg += g * g;
      rr += r * r;
      ee += (g - r) * (g - r);
    }
    const double c = gr / std::sqrt(gg * rr + 1e-300);
    if (c > best.corr) best = {lag, c, 10 * std::log10(rr / (ee + 1e-300))};
  }
  return best;
}

// The stereo test signal at 16 kHz and its mono mix.
struct Reference {
  std::vector<float> left, right, mono;
  std::string stereo_wav;  // float32, 16 kHz, 2 channels
};

const Reference& reference() {
  static const Reference ref = [] {
    Reference r;
    auto jfk = read_wav_file(test::shared("audio/jfk.wav"));
    EXPECT_TRUE(jfk.ok()) << jfk.message();
    if (!jfk.ok()) return r;
    r.left = jfk->samples;
    r.right.assign(r.left.rbegin(), r.left.rend());
    for (float& x : r.right) x *= 0.5f;
    std::vector<float> interleaved;
    for (size_t i = 0; i < r.left.size(); ++i) {
      interleaved.push_back(r.left[i]);
      interleaved.push_back(r.right[i]);
      r.mono.push_back(0.5f * (r.left[i] + r.right[i]));
    }
    r.stereo_wav = tmp("stereo16k.wav");
    EXPECT_TRUE(write_wav_file(r.stereo_wav, interleaved, 2, 16000, WavSampleFormat::float32).ok());
    return r;
  }();
  return ref;
}

// ---------------------------------------------------------------------------
// Formats: length and content

TEST(AudioSourceFormats, Wav16kMonoIsBitExact) {
  const std::string path = test::shared("audio/jfk.wav");
  auto wav = read_wav_file(path);
  ASSERT_TRUE(wav.ok()) << wav.message();
  auto a = load_audio(path);
  ASSERT_TRUE(a.ok()) << a.message();
  EXPECT_EQ(*a, wav->samples);  // s16 / 32768 in both, no resampling at 16 kHz

  auto src = AudioSource::open(path);
  ASSERT_TRUE(src.ok()) << src.message();
  EXPECT_NEAR((*src)->duration_hint(), 11.0, 1e-3);
  EXPECT_EQ((*src)->name(), path);
}

TEST(AudioSourceFormats, StereoIsAveraged) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.mono.empty());
  const std::vector<float> got = read_all(ref.stereo_wav);
  ASSERT_EQ(got.size(), ref.mono.size());
  const test::Diff d = test::max_abs_diff(got, ref.mono);
  EXPECT_LT(d.max_abs, 1e-6) << d.str();
}

// A WAV with 3 channels and no channel mask has no channel positions, so swr
// cannot build its downmix matrix; we average, as the WAV reader does.
TEST(AudioSourceFormats, ChannelsWithoutPositionsAreAveraged) {
  const size_t frames = 8000;
  std::vector<uint8_t> b;
  auto put16 = [&](uint32_t v) { b.push_back(static_cast<uint8_t>(v)); b.push_back(static_cast<uint8_t>(v >> 8)); };
  auto put32 = [&](uint32_t v) { put16(v & 0xFFFF); put16(v >> 16); };
  auto id = [&](const char* s) {
    for (int k = 0; k < 4; ++k) b.push_back(static_cast<uint8_t>(s[k]));
  };
  const uint32_t data_bytes = static_cast<uint32_t>(frames * 3 * 2);
  id("RIFF"); put32(36 + data_bytes); id("WAVE");
  id("fmt "); put32(16); put16(1); put16(3); put32(16000); put32(16000 * 6); put16(6); put16(16);
  id("data"); put32(data_bytes);
  std::vector<float> expect(frames);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> dist(-20000, 20000);
  for (size_t i = 0; i < frames; ++i) {
    double sum = 0;
    for (int c = 0; c < 3; ++c) {
      const int v = c == 0 ? static_cast<int>(10000 * std::sin(0.01 * static_cast<double>(i))) : dist(rng) / (c + 1);
      put16(static_cast<uint16_t>(static_cast<int16_t>(v)));
      sum += v / 32768.0;
    }
    expect[i] = static_cast<float>(sum / 3);
  }
  const std::string path = tmp("3ch_nomask.wav");
  write_bytes(path, b.data(), b.size());
  const std::vector<float> got = read_all(path);
  ASSERT_EQ(got.size(), frames);
  const test::Diff d = test::max_abs_diff(got, expect);
  EXPECT_LT(d.max_abs, 1e-6) << d.str();
}

// jfk.flac (44.1 kHz stereo 24-bit) is the recording jfk.wav (16 kHz mono
// 16-bit) was made from, by another resampler and 16-bit rounding: measured
// SNR 70.3 dB, correlation 1.000000, largest difference 2.8e-3 on a peak of
// 0.68. A wrong rate, a lost channel or a delay would drop the SNR below 20 dB.
TEST(AudioSourceFormats, FlacMatchesTheWav) {
  auto wav = read_wav_file(test::shared("audio/jfk.wav"));
  ASSERT_TRUE(wav.ok()) << wav.message();
  const std::vector<float> got = read_all(test::shared("whisper-assets/jfk.flac"));
  EXPECT_NEAR(static_cast<double>(got.size()), static_cast<double>(kJfkSamples), 2);
  const Match m = match(got, wav->samples, 32);
  EXPECT_EQ(m.lag, 0) << m.str();
  EXPECT_GT(m.corr, 0.9999) << m.str();
  EXPECT_GT(m.snr_db, 60) << m.str();
  const test::Diff d = test::max_abs_diff(got, wav->samples);
  EXPECT_LT(d.max_abs, 5e-3) << d.str() << " " << m.str();
}

// The reference stereo signal through each container and codec at other
// rates, then back to 16 kHz mono: same length (to within two codec frames),
// no delay, same content.
TEST(AudioSourceFormats, EveryContainerAndCodecGivesTheSameSignal) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.mono.empty());
  const std::string in = quote(ref.stereo_wav);
  const std::string video = "-f lavfi -i testsrc=size=64x48:rate=5:duration=11 ";
  struct Case {
    std::string name, args;
    double frame_16k;   // codec frame at 16 kHz, the length tolerance unit
    double min_corr, min_snr_db;
  };
  const Case cases[] = {
      {"s44.wav", "-i " + in + " -ar 44100 -c:a pcm_s16le", 1, 0.99999, 40},
      {"s22.flac", "-i " + in + " -ar 22050 -c:a flac", 1, 0.99999, 40},
      // LAME's output is 0.44 dB quieter than its input (ffmpeg's volumedetect
      // sees it too), which caps this SNR at 26 dB though the correlation is 0.9999.
      {"s44.mp3", "-i " + in + " -ar 44100 -c:a libmp3lame -b:a 128k", 1152 * 16.0 / 44.1, 0.99, 20},
      {"s44.m4a", "-i " + in + " -ar 44100 -c:a aac -b:a 128k", 1024 * 16.0 / 44.1, 0.99, 20},
      {"s48.webm", "-i " + in + " -c:a libopus -b:a 96k", 960 / 3.0, 0.99, 20},
      {"s44.ogg", "-i " + in + " -ar 44100 -c:a libvorbis", 2048 * 16.0 / 44.1, 0.99, 18},
      // Video first, audio second: the audio stream must be found.
      {"v.mp4", video + "-i " + in + " -map 0:v -map 1:a -c:v mpeg4 -c:a aac -ar 44100", 1024 * 16.0 / 44.1, 0.99, 20},
      {"v.mkv", video + "-i " + in + " -map 0:v -map 1:a -c:v mpeg4 -c:a flac -ar 48000", 1, 0.99999, 40},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = tmp(c.name);
    ASSERT_TRUE(ffmpeg(c.args, path));
    const std::vector<float> got = read_all(path);
    EXPECT_NEAR(static_cast<double>(got.size()), static_cast<double>(ref.mono.size()), 2 * c.frame_16k + 2);
    const Match m = match(got, ref.mono, 64);
    std::printf("  %-9s %zu samples (expected %zu), %s\n", c.name.c_str(), got.size(), ref.mono.size(), m.str().c_str());
    EXPECT_LE(std::abs(m.lag), 1) << m.str();
    EXPECT_GT(m.corr, c.min_corr) << m.str();
    EXPECT_GT(m.snr_db, c.min_snr_db) << m.str();
    // Taking one channel only would match L or R better than the mix.
    EXPECT_GT(m.corr, match(got, ref.left, 0).corr + 0.05) << m.str();
    auto src = AudioSource::open(path);
    ASSERT_TRUE(src.ok()) << src.message();
    EXPECT_NEAR((*src)->duration_hint(), 11.0, 0.1);
  }
}

// Our pipeline against the ffmpeg CLI's own decode with the same mix and
// resampler settings: the shared MP3 (44.1 kHz stereo, with a cover picture
// as a second, video stream) and Ogg Opus (48 kHz mono).
TEST(AudioSourceFormats, SharedFilesMatchTheFfmpegCli) {
  struct Case {
    std::string file, mix;
    double seconds, frame_16k;
  };
  // The MP3's container says 2.56 s from a start of 0.025 s: that start is the
  // decoder delay, which is skipped, so 2.535 s of samples come out.
  const Case cases[] = {{"audio/silero-test.mp3", "pan=mono|c0=0.5*c0+0.5*c1,", 2.535, 1152 * 16.0 / 44.1},
                        {"audio/silero-test.opus", "", 8.07, 960 / 3.0}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string out = tmp(c.file.substr(6) + ".f32");
    ASSERT_TRUE(ffmpeg("-i " + quote(test::shared(c.file)) + " -af '" + c.mix +
                           "aresample=16000:resampler=soxr:cutoff=0.97:precision=28' -f f32le",
                       out));
    const std::vector<float> cli = test::read_f32(out);
    const std::vector<float> got = read_all(test::shared(c.file));
    EXPECT_NEAR(static_cast<double>(got.size()), c.seconds * 16000, c.frame_16k);
    ASSERT_EQ(got.size(), cli.size());
    const test::Diff d = test::max_abs_diff(got, cli);
    EXPECT_LT(d.max_abs, 1e-5) << d.str();
    float peak = 0;
    for (float x : got) peak = std::max(peak, std::abs(x));
    EXPECT_GT(peak, 0.05f);
  }
}

// 8 kHz speech up to 16 kHz: twice the samples, and the same signal as our
// own windowed-sinc resampler gives.
TEST(AudioSourceFormats, Upsamples8kLikeOurResampler) {
  const std::string path = test::shared("audio/aepyx-8k.wav");
  auto wav = read_wav_file(path);
  ASSERT_TRUE(wav.ok()) << wav.message();
  auto got = load_audio(path);
  ASSERT_TRUE(got.ok()) << got.message();
  ASSERT_EQ(got->size(), 2 * wav->samples.size());
  const std::vector<float> ours = resample(wav->samples, 8000, 16000);
  const Match m = match(*got, ours, 4);
  EXPECT_EQ(m.lag, 0) << m.str();
  EXPECT_GT(m.snr_db, 60) << m.str();
  const test::Diff d = test::max_abs_diff(*got, ours);
  EXPECT_LT(d.max_abs, 3e-4) << d.str();
}

// A stream whose sample rate changes midway (two raw MP3s, 44.1 and 22.05
// kHz, back to back) gets a new converter at the change, with nothing lost.
TEST(AudioSourceFormats, SampleRateChangeMidStream) {
  auto wav = read_wav_file(test::shared("audio/jfk.wav"));
  ASSERT_TRUE(wav.ok()) << wav.message();
  const std::string jfk = quote(test::shared("audio/jfk.wav"));
  const std::string raw = " -write_xing 0 -id3v2_version 0 -c:a libmp3lame -b:a 128k";
  const std::string a = tmp("part44.mp3"), b = tmp("part22.mp3");
  ASSERT_TRUE(ffmpeg("-i " + jfk + " -ar 44100" + raw, a));
  ASSERT_TRUE(ffmpeg("-i " + jfk + " -ar 22050" + raw, b));
  std::vector<uint8_t> both = read_bytes(a);
  const std::vector<uint8_t> second = read_bytes(b);
  both.insert(both.end(), second.begin(), second.end());
  const std::string path = tmp("rate_change.mp3");
  write_bytes(path, both.data(), both.size());

  const std::vector<float> got = read_all(path);
  // Without a Xing header the encoder delay and padding stay in: at most
  // 2 x (576 + 1152 + 529) input samples per part, 820 + 1640 at 16 kHz.
  ASSERT_GE(got.size(), 2 * kJfkSamples);
  ASSERT_LE(got.size(), 2 * kJfkSamples + 2500);
  const std::vector<float> first(got.begin(), got.begin() + kJfkSamples + 1000);
  const std::vector<float> rest(got.end() - static_cast<ptrdiff_t>(kJfkSamples + 1000), got.end());
  const Match m1 = match(first, wav->samples, 1000);
  const Match m2 = match(rest, wav->samples, 1000);
  EXPECT_GT(m1.corr, 0.99) << m1.str();
  EXPECT_GT(m2.corr, 0.99) << m2.str();
}

// ---------------------------------------------------------------------------
// Resampling quality, against our own resample() (src/audio/resample.h:
// flat to 0.95 fN, >= 80 dB stopband from 1.05 fN). Tones at amplitude 0.5
// as float32 WAV at 44.1, 48 and 22.05 kHz; gain of the tone at 16 kHz by a
// least-squares fit at the exact frequency (a wrong rate or frequency would
// leave the energy in the residual).

struct Tone {
  double gain_db, residual_db;  // fitted amplitude vs 0.5, and what the fit leaves
  double delay;                 // in output samples, from the fitted phase (input phase is 0 at sample 0)
};

Tone measure_tone(const std::vector<float>& y, double freq) {
  const size_t a = 2000, b = y.size() - 2000;  // away from the ends
  double ss = 0, cc = 0, sc = 0, ys = 0, yc = 0;
  for (size_t i = a; i < b; ++i) {
    const double s = std::sin(2 * kPi * freq * static_cast<double>(i) / 16000);
    const double c = std::cos(2 * kPi * freq * static_cast<double>(i) / 16000);
    ss += s * s; cc += c * c; sc += s * c; ys += y[i] * s; yc += y[i] * c;
  }
  const double det = ss * cc - sc * sc;
  const double A = (ys * cc - yc * sc) / det, B = (yc * ss - ys * sc) / det;
  double res = 0;
  for (size_t i = a; i < b; ++i) {
    const double m = A * std::sin(2 * kPi * freq * static_cast<double>(i) / 16000) +
                     B * std::cos(2 * kPi * freq * static_cast<double>(i) / 16000);
    res += (y[i] - m) * (y[i] - m);
  }
  return {20 * std::log10(std::hypot(A, B) / 0.5 + 1e-30),
          20 * std::log10(std::sqrt(res / static_cast<double>(b - a)) / 0.5 + 1e-30),
          -std::atan2(B, A) / (2 * kPi * freq / 16000)};
}

// Level of whatever comes out (for stopband tones, which alias to other frequencies).
double level_db(const std::vector<float>& y) {
  double e = 0;
  for (size_t i = 2000; i + 2000 < y.size(); ++i) e += static_cast<double>(y[i]) * y[i];
  const double rms = std::sqrt(e / static_cast<double>(y.size() - 4000));
  return 20 * std::log10(rms * std::sqrt(2.0) / 0.5 + 1e-30);
}

TEST(AudioSourceResampler, QualityAgainstOurResampler) {
  std::printf("  rate   tone     ours dB     swr/soxr dB\n");
  for (int rate : {44100, 48000, 22050}) {
    for (double freq : {1000.0, 7600.0, 7800.0, 8200.0, 8400.0, 10000.0}) {
      if (freq >= rate / 2.0) continue;
      SCOPED_TRACE(std::to_string(rate) + " Hz input, " + std::to_string(freq) + " Hz tone");
      std::vector<float> x(static_cast<size_t>(rate) * 2);
      for (size_t i = 0; i < x.size(); ++i)
        x[i] = static_cast<float>(0.5 * std::sin(2 * kPi * freq * static_cast<double>(i) / rate));
      const std::string path = tmp("tone.wav");
      ASSERT_TRUE(write_wav_file(path, x, 1, rate, WavSampleFormat::float32).ok());
      auto got = load_audio(path);
      ASSERT_TRUE(got.ok()) << got.message();
      EXPECT_EQ(got->size(), 32000u);
      const std::vector<float> ours = resample(x, rate, 16000);
      if (freq < 8000) {
        const Tone t = measure_tone(*got, freq), o = measure_tone(ours, freq);
        std::printf("  %5d %6.0f  %+10.5f  %+10.5f   (residual %.0f / %.0f dB, delay %.4f / %.4f samples)\n", rate,
                    freq, o.gain_db, t.gain_db, o.residual_db, t.residual_db, o.delay, t.delay);
        // The spec: exact amplitude (< 0.01 dB) and frequency up to 7.6 kHz
        // (0.95 fN, our passband edge); soxr's passband reaches 0.97 fN.
        EXPECT_LT(std::abs(t.gain_db), freq <= 7600 ? 0.01 : 0.02);  // 7.8 kHz: -0.0102 measured
        EXPECT_LT(t.residual_db, -100);
        EXPECT_LT(std::abs(t.delay), 0.01);  // output 0 is input time 0
      } else {
        const double l = level_db(*got), lo = level_db(ours);
        std::printf("  %5d %6.0f  %+10.1f  %+10.1f\n", rate, freq, lo, l);
        // The spec asks >= 60 dB at 10 kHz; soxr gives >= 154 dB from 8.2 kHz,
        // where ours (transition 7.6..8.4 kHz) lets 8.2 kHz through at -24 dB.
        EXPECT_LT(l, -140);
        EXPECT_LT(l, lo);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Streaming

TEST(AudioSourceStreaming, BlockSizeDoesNotChangeTheSamples) {
  const std::string path = test::shared("audio/silero-test.opus");
  const std::vector<float> whole = read_all(path, 1 << 20);
  ASSERT_GT(whole.size(), 100000u);
  for (size_t block : {1, 7, 4096}) {
    SCOPED_TRACE(block);
    EXPECT_EQ(read_all(path, block), whole);
  }
  auto src = AudioSource::open(path);
  ASSERT_TRUE(src.ok()) << src.message();
  std::vector<float> buf(whole.size() + 10);
  auto n = (*src)->read(buf.data(), buf.size());
  ASSERT_TRUE(n.ok()) << n.message();
  EXPECT_EQ(*n, whole.size());  // short only at the end
  for (int i = 0; i < 3; ++i) {  // and 0 from then on
    auto again = (*src)->read(buf.data(), buf.size());
    ASSERT_TRUE(again.ok()) << again.message();
    EXPECT_EQ(*again, 0u);
  }
  auto zero = (*src)->read(buf.data(), 0);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(*zero, 0u);
}

long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// 20 minutes of 8 kHz speech (19 MB as WAV; 77 MB as 16 kHz floats) streamed
// in 1 s blocks: the process grows by less than 20 MB.
TEST(AudioSourceStreaming, MemoryStaysBoundedOnALongFile) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer keeps freed memory in quarantine (256 MB), so RSS says nothing here";
#endif
  const std::string path = tmp("long20min.wav");
  ASSERT_TRUE(ffmpeg("-stream_loop 7 -i " + quote(test::shared("audio/aepyx-8k.wav")) + " -t 1200 -c:a pcm_s16le", path));
  // FFmpeg's libraries are opened on the first file (ffmpeg_lib.h): 21 MB
  // of RSS that do not depend on the file's length (11.8 -> 33.0 MB here,
  // Zen 5 VM; the stream itself then added 7.8). Load them first.
  ASSERT_TRUE(ama::ffmpeg().ok());
  const long before = rss_kb();
  ASSERT_GT(before, 0);
  long peak = before;
  uint64_t total = 0;
  {
    auto src = AudioSource::open(path);
    ASSERT_TRUE(src.ok()) << src.message();
    EXPECT_NEAR((*src)->duration_hint(), 1200.0, 0.01);
    std::vector<float> buf(16000);
    double energy = 0;
    for (int i = 0;; ++i) {
      auto n = (*src)->read(buf.data(), buf.size());
      ASSERT_TRUE(n.ok()) << n.message();
      if (*n == 0) break;
      total += *n;
      for (size_t k = 0; k < *n; ++k) energy += static_cast<double>(buf[k]) * buf[k];
      if (i % 30 == 0) peak = std::max(peak, rss_kb());
    }
    peak = std::max(peak, rss_kb());
    EXPECT_GT(energy, 1.0);
  }
  EXPECT_EQ(total, uint64_t{1200} * 16000);
  std::printf("  RSS %ld kB before, %ld kB at most while streaming 20 min\n", before, peak);
  EXPECT_LT(peak - before, 20 * 1024) << "RSS grew from " << before << " kB to " << peak << " kB";
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// Standard input, through the CLI: `mel --audio -` equals `mel --audio FILE`.

TEST(AudioSourceStdin, CliMelFromStdinEqualsFromFile) {
  for (const char* file : {"audio/jfk.wav", "audio/silero-test.mp3", "audio/silero-test.opus"}) {
    SCOPED_TRACE(file);
    const std::string path = test::shared(file);
    const std::string from_file = tmp("mel_file.f32"), from_stdin = tmp("mel_stdin.f32");
    std::remove(from_stdin.c_str());
    auto a = test::run_command(std::string(AMA_CLI_PATH) + " mel --audio " + quote(path) + " --out " + from_file);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    auto b = test::run_command(std::string(AMA_CLI_PATH) + " mel --audio - --out " + from_stdin + " < " + quote(path));
    ASSERT_EQ(b.exit_code, 0) << b.err;
    const std::vector<uint8_t> x = read_bytes(from_file), y = read_bytes(from_stdin);
    EXPECT_GT(x.size(), 80u * 3000 * 4);  // audio plus 30 s of padding
    EXPECT_TRUE(x == y) << "sizes " << x.size() << " and " << y.size();
  }
}

TEST(AudioSourceStdin, CliErrorNamesStdin) {
  const std::string text = tmp("stdin_text.txt");
  std::ofstream(text) << "this is not audio\n";
  auto r = test::run_command(std::string(AMA_CLI_PATH) + " mel --audio - --out " + tmp("x.f32") + " < " + text);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("amanuensis: error: stdin: ", 0), 0u) << r.err;
}

// ---------------------------------------------------------------------------
// FFmpeg is opened with dlopen on the first audio file (src/audio/ffmpeg_lib.h).

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(FfmpegLib, EveryFunctionIsFound) {
  auto api = load_ffmpeg(default_ffmpeg_libraries());
  ASSERT_TRUE(api.ok()) << api.message();
#define AMA_EXPECT_FOUND(lib, name) EXPECT_NE((*api)->name, nullptr) << #name;
  AMA_FFMPEG_FUNCTIONS(AMA_EXPECT_FOUND)
#undef AMA_EXPECT_FOUND
  EXPECT_EQ(default_ffmpeg_libraries().avcodec, "libavcodec.so." + std::to_string(LIBAVCODEC_VERSION_MAJOR));
}

TEST(FfmpegLib, MissingLibraryOrFunctionIsAClearError) {
  FfmpegLibraries libs = default_ffmpeg_libraries();
  libs.avcodec = "libavcodec.so.1";
  auto missing = load_ffmpeg(libs);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.message(), "cannot load libavcodec.so.1 (")) << missing.message();
  EXPECT_TRUE(contains(missing.message(), "decoding audio (FFmpeg) needs it (Debian: apt-get install libavcodec1)")) << missing.message();

  libs = default_ffmpeg_libraries();
  libs.avformat = "libz.so.1";  // a library, but not the one with avformat_*
  auto wrong = load_ffmpeg(libs);
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(contains(wrong.message(), "libz.so.1 has no function avformat_alloc_context")) << wrong.message();
}

// The CLI loads FFmpeg when it reads audio, and only then (libcurl likewise:
// ModelsCli.* download through it). glibc's loader names every library it
// opens under LD_DEBUG=files.
TEST(FfmpegLib, CliLoadsItOnlyToReadAudio) {
  const std::string model = tmp("ffmpeg_lazy.bin");
  auto make = test::run_command("LD_DEBUG=files " + std::string(AMA_CLI_PATH) +
                                " make-test-model --dims 64,2,1,1 --seed 3 -o " + model);
  ASSERT_EQ(make.exit_code, 0) << make.err;
  EXPECT_TRUE(contains(make.err, "file=libc.so.6")) << "LD_DEBUG=files printed no library names";
  EXPECT_FALSE(contains(make.err, "file=libavcodec.so")) << "make-test-model loaded FFmpeg";
  EXPECT_FALSE(contains(make.err, "file=libcurl.so")) << "make-test-model loaded libcurl";
  auto mel = test::run_command("LD_DEBUG=files " + std::string(AMA_CLI_PATH) + " mel --audio " +
                               quote(test::shared("audio/jfk.wav")) + " --out " + tmp("ffmpeg_lazy.f32"));
  ASSERT_EQ(mel.exit_code, 0) << mel.err;
  EXPECT_TRUE(contains(mel.err, "file=libavcodec.so." + std::to_string(LIBAVCODEC_VERSION_MAJOR))) << mel.err;
  std::remove(model.c_str());
}

// ---------------------------------------------------------------------------
// Errors: one line naming the file, through the API and the CLI.

struct BadInput {
  std::string path;
  std::string cause;  // expected in the message
  bool open_fails;    // false: open() succeeds, the failure comes later
};

std::vector<BadInput> make_bad_inputs() {
  std::vector<BadInput> v;
  v.push_back({tmp("does_not_exist.wav"), "no such file", true});
  v.push_back({::testing::TempDir(), "is a directory", true});

  const std::string empty = tmp("empty.mp3");
  std::ofstream(empty, std::ios::trunc).flush();
  v.push_back({empty, "empty file", true});

  std::vector<uint8_t> noise(64 * 1024);
  std::mt19937 rng(12345);
  for (auto& x : noise) x = static_cast<uint8_t>(rng());
  const std::string random = tmp("random.wav");
  write_bytes(random, noise.data(), noise.size());
  v.push_back({random, "", true});  // FFmpeg's verdict on noise varies; any one-line error

  const std::string text = tmp("notes.txt");
  std::ofstream(text, std::ios::trunc) << "Meeting notes\nThis is a text file, not audio.\n";
  v.push_back({text, "not an audio or video file", true});

  const std::string png = tmp("picture.png");
  EXPECT_TRUE(ffmpeg("-f lavfi -i testsrc=size=32x32 -frames:v 1", png));
  v.push_back({png, "no audio stream", true});

  const std::string silent_video = tmp("video_only.mp4");
  EXPECT_TRUE(ffmpeg("-f lavfi -i testsrc=size=64x48:rate=5:duration=2 -c:v mpeg4", silent_video));
  v.push_back({silent_video, "no audio stream (it has 1 video stream)", true});

  // A valid WAV with no samples, and the same from ffmpeg as FLAC.
  const std::string zero_wav = tmp("zero.wav");
  EXPECT_TRUE(write_wav_file(zero_wav, {}, 1, 44100, WavSampleFormat::pcm16).ok());
  v.push_back({zero_wav, "no audio samples", false});
  const std::string zero_flac = tmp("zero.flac");
  EXPECT_TRUE(ffmpeg("-f lavfi -i anullsrc=r=44100:cl=stereo -frames:a 0 -c:a flac", zero_flac));
  v.push_back({zero_flac, "no audio samples", false});

  // Truncated so that nothing decodes: a 16-bit WAV cut 1 byte into its data.
  const std::string cut = tmp("cut_in_first_sample.wav");
  EXPECT_TRUE(write_wav_file(cut, std::vector<float>(1000, 0.25f), 1, 16000, WavSampleFormat::pcm16).ok());
  std::vector<uint8_t> bytes = read_bytes(cut);
  EXPECT_EQ(bytes.size(), 44u + 2000u);
  write_bytes(cut, bytes.data(), 45);
  v.push_back({cut, "no audio could be decoded", true});
  return v;
}

TEST(AudioSourceErrors, BadInputsGiveOneLineNamingTheFile) {
  for (const BadInput& bad : make_bad_inputs()) {
    SCOPED_TRACE(bad.path);
    auto src = AudioSource::open(bad.path);
    EXPECT_EQ(!src.ok(), bad.open_fails) << (src.ok() ? "opened" : src.message());
    if (src.ok()) {  // zero-length audio: an empty stream
      std::vector<float> buf(100);
      auto n = (*src)->read(buf.data(), buf.size());
      ASSERT_TRUE(n.ok()) << n.message();
      EXPECT_EQ(*n, 0u);
    }
    auto a = load_audio(bad.path);
    ASSERT_FALSE(a.ok());
    const std::string& msg = a.message();
    EXPECT_EQ(msg.rfind(bad.path + ": ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find(bad.cause), std::string::npos) << msg;

    auto r = test::run_command(std::string(AMA_CLI_PATH) + " mel --audio " + quote(bad.path) + " --out " + tmp("err.f32"));
    EXPECT_EQ(r.exit_code, 1);  // -1 would be a signal
    EXPECT_EQ(r.err, "amanuensis: error: " + msg + "\n");
  }
}

// Files cut at half their bytes: every complete frame before the cut comes
// back, equal to the full decode, then the stream ends without an error.
TEST(AudioSourceErrors, TruncatedFileReturnsWhatDecodes) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.mono.empty());
  const std::string in = quote(ref.stereo_wav);
  struct Case {
    std::string name, args;
  };
  const Case cases[] = {
      {"s44.mp3", "-i " + in + " -ar 44100 -c:a libmp3lame -b:a 128k"},
      {"s22.flac", "-i " + in + " -ar 22050 -c:a flac"},
      {"s44.ogg", "-i " + in + " -ar 44100 -c:a libvorbis"},
      {"s48.webm", "-i " + in + " -c:a libopus -b:a 96k"},
      {"s44.wav", "-i " + in + " -ar 44100 -c:a pcm_s16le"},
      // Index first (faststart), so the cut loses samples, not the index;
      // an M4A with its index at the end, cut, is "not an audio or video file".
      {"faststart.m4a", "-i " + in + " -ar 44100 -c:a aac -b:a 128k -movflags +faststart"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string full = tmp(c.name);
    ASSERT_TRUE(ffmpeg(c.args, full));
    const std::vector<float> whole = read_all(full);
    const std::vector<uint8_t> bytes = read_bytes(full);
    const std::string cut = tmp("half_" + c.name);
    write_bytes(cut, bytes.data(), bytes.size() / 2 + 1);  // +1: a WAV cut mid-sample

    const std::vector<float> half = read_all(cut);
    EXPECT_GT(half.size(), whole.size() * 40 / 100);
    EXPECT_LT(half.size(), whole.size() * 60 / 100);
    ASSERT_GT(half.size(), 2000u);
    // All but the last 1000 samples (more than the resampler's look-ahead and
    // a codec frame at 16 kHz) equal the full decode.
    const std::vector<float> prefix(half.begin(), half.end() - 1000);
    const std::vector<float> same_span(whole.begin(), whole.begin() + static_cast<ptrdiff_t>(prefix.size()));
    const test::Diff d = test::max_abs_diff(prefix, same_span);
    EXPECT_EQ(d.max_abs, 0.0) << d.str();
    auto loaded = load_audio(cut);
    ASSERT_TRUE(loaded.ok()) << loaded.message();
    EXPECT_EQ(*loaded, half);
  }
}

// 2000 random bytes over the middle of an MP3, FLAC and M4A: the decoder
// fails there, and later frames decode again, so the damage is mid-stream.
// (Ogg and WebM are not here: their demuxers drop damaged pages or blocks
// without telling the decoder, so no error ever reaches us; audio_source.h.)
// Skipping it would shift every later timestamp, so read() returns the
// samples before it (identical to the intact file's), then an Error that
// names the file and the time, and the same Error again if asked again.
TEST(AudioSourceErrors, MidStreamDecodeErrorIsAnError) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.mono.empty());
  const std::string in = quote(ref.stereo_wav);
  struct Case {
    std::string name, args;
  };
  const Case cases[] = {{"s44.mp3", "-i " + in + " -ar 44100 -c:a libmp3lame -b:a 128k"},
                        {"s22.flac", "-i " + in + " -ar 22050 -c:a flac"},
                        {"s44.m4a", "-i " + in + " -ar 44100 -c:a aac -b:a 128k"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string intact = tmp(c.name);
    ASSERT_TRUE(ffmpeg(c.args, intact));
    const std::vector<float> whole = read_all(intact);
    std::vector<uint8_t> bytes = read_bytes(intact);
    std::mt19937 rng(99);
    for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 2000; ++i) bytes[i] = static_cast<uint8_t>(rng());
    const std::string damaged = tmp("damaged_" + c.name);
    write_bytes(damaged, bytes.data(), bytes.size());

    auto src = AudioSource::open(damaged);
    ASSERT_TRUE(src.ok()) << src.message();
    std::vector<float> got, buf(1000);
    std::string error;
    for (;;) {
      auto n = (*src)->read(buf.data(), buf.size());
      if (!n.ok()) {
        error = n.message();
        break;
      }
      ASSERT_GT(*n, 0u) << "the stream ended without an error";
      got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(*n));
    }
    char at[64];
    std::snprintf(at, sizeof at, ": decode error at %.2f s (", static_cast<double>(got.size()) / 16000);
    EXPECT_EQ(error.rfind(damaged + at, 0), 0u) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos);
    EXPECT_GT(got.size(), whole.size() / 4);
    EXPECT_LT(got.size(), whole.size() * 3 / 4);
    const std::vector<float> same_span(whole.begin(), whole.begin() + static_cast<ptrdiff_t>(std::min(got.size(), whole.size())));
    // Equal, except that in the M4A the AAC frame just before the damaged
    // packet decodes 4e-9 differently (the ffmpeg CLI shows the same), which
    // the resampler's look-ahead carries into the last ~40 samples.
    const test::Diff d = test::max_abs_diff(got, same_span);
    EXPECT_LT(d.max_abs, 1e-7) << d.str() << " of " << got.size();
    auto again = (*src)->read(buf.data(), buf.size());
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.message(), error);
    auto loaded = load_audio(damaged);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.message(), error);
  }
}

}  // namespace
}  // namespace ama
