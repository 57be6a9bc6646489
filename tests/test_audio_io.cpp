// Tests for WAV reading/writing (audio/wav.h) and resampling (audio/resample.h).
#include <gtest/gtest.h>

#include <optional>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "audio/audio_source.h"
#include "audio/resample.h"
#include "audio/wav.h"

#ifndef AMA_SHARED_DIR
#define AMA_SHARED_DIR "/work/shared"
#endif

namespace ama {
namespace {

constexpr double kPi = std::numbers::pi;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "ama_audio_io_" + name; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// ---------------------------------------------------------------------------
// Builds WAV images byte by byte, so tests can make headers the writer never
// produces (odd chunks, bad fields, truncation).

void put16(std::vector<uint8_t>& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
  put16(b, v & 0xFFFF);
  put16(b, v >> 16);
}

struct FmtFields {
  uint16_t tag = 1;
  uint16_t channels = 1;
  uint32_t rate = 16000;
  uint16_t bits = 16;
  int block_align = -1;  // -1: channels * bits / 8
};

std::vector<uint8_t> fmt_body(const FmtFields& f) {
  std::vector<uint8_t> b;
  const uint32_t align = f.block_align >= 0 ? static_cast<uint32_t>(f.block_align) : f.channels * f.bits / 8u;
  put16(b, f.tag);
  put16(b, f.channels);
  put32(b, f.rate);
  put32(b, f.rate * align);
  put16(b, align);
  put16(b, f.bits);
  return b;
}

// 40-byte WAVE_FORMAT_EXTENSIBLE body; `sub_tag` goes in the GUID, and
// `guid_ok` = false corrupts the fixed part of the GUID.
std::vector<uint8_t> extensible_body(FmtFields f, uint16_t sub_tag, bool guid_ok = true) {
  f.tag = 0xFFFE;
  std::vector<uint8_t> b = fmt_body(f);
  put16(b, 22);
  put16(b, f.bits);
  put32(b, 0x4);  // front centre
  put16(b, sub_tag);
  const uint8_t tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
  b.insert(b.end(), tail, tail + 14);
  if (!guid_ok) b.back() ^= 0xFF;
  return b;
}

class WavImage {
 public:
  explicit WavImage(const char* riff = "RIFF", const char* form = "WAVE") {
    bytes_.insert(bytes_.end(), riff, riff + 4);
    put32(bytes_, 0);
    bytes_.insert(bytes_.end(), form, form + 4);
  }
  // Appends a chunk; the size field is body.size() unless `declared` is given.
  // A pad byte follows odd bodies when `pad` is true.
  WavImage& chunk(const char* id, const std::vector<uint8_t>& body, int64_t declared = -1, bool pad = true) {
    bytes_.insert(bytes_.end(), id, id + 4);
    put32(bytes_, declared >= 0 ? static_cast<uint32_t>(declared) : static_cast<uint32_t>(body.size()));
    bytes_.insert(bytes_.end(), body.begin(), body.end());
    if (pad && (body.size() & 1)) bytes_.push_back(0);
    return *this;
  }
  WavImage& fmt(const FmtFields& f) { return chunk("fmt ", fmt_body(f)); }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> b = bytes_;
    const uint32_t riff_size = static_cast<uint32_t>(b.size() - 8);
    for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<uint8_t>(riff_size >> (8 * i));
    return b;
  }

 private:
  std::vector<uint8_t> bytes_;
};

std::vector<uint8_t> pcm16_bytes(const std::vector<int16_t>& v) {
  std::vector<uint8_t> b;
  for (int16_t s : v) put16(b, static_cast<uint16_t>(s));
  return b;
}

Result<AudioBuffer> parse(const std::vector<uint8_t>& bytes, const std::string& name = "test.wav") {
  return read_wav_memory(bytes.data(), bytes.size(), name);
}

// Expects an error whose message names the input and contains `what`.
void expect_error(const std::vector<uint8_t>& bytes, const std::string& what) {
  auto r = parse(bytes, "bad-input.wav");
  ASSERT_FALSE(r.ok()) << "expected an error containing '" << what << "'";
  EXPECT_NE(r.message().find("bad-input.wav"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find(what), std::string::npos) << r.message();
}

// ---------------------------------------------------------------------------
// WAV reading and writing

TEST(AudioIo, RoundTripEveryFormatAndChannelCount) {
  struct Case {
    WavSampleFormat fmt;
    const char* name;
    double step;  // quantisation step of the format
  };
  const Case cases[] = {{WavSampleFormat::pcm16, "pcm16", 1.0 / 32768},
                        {WavSampleFormat::pcm24, "pcm24", 1.0 / 8388608},
                        {WavSampleFormat::pcm32, "pcm32", 1.0 / 2147483648.0},
                        {WavSampleFormat::float32, "float32", 0.0}};
  for (const Case& c : cases) {
    for (int channels : {1, 2, 6}) {
      SCOPED_TRACE(std::string(c.name) + " x" + std::to_string(channels));
      // 1001 frames: an odd frame count makes the pcm24 mono data chunk odd-sized (padded).
      const int frames = 1001;
      const int rate = channels == 2 ? 44100 : 22050;
      std::vector<float> interleaved;
      for (int i = 0; i < frames; ++i) {
        for (int ch = 0; ch < channels; ++ch) {
          float v = static_cast<float>(0.9 * std::sin(0.01 * i * (ch + 1) + ch));
          if (i == 0) v = 1.0f;   // full scale, clips to the largest code in PCM
          if (i == 1) v = -1.0f;  // exactly representable in every format
          if (i == 2) v = ch % 2 ? 1.0f : -1.0f;
          interleaved.push_back(v);
        }
      }
      const std::string path = temp_path(std::string(c.name) + "_" + std::to_string(channels) + ".wav");
      ASSERT_TRUE(write_wav_file(path, interleaved, channels, rate, c.fmt).ok());

      auto r = read_wav_file(path);
      ASSERT_TRUE(r.ok()) << r.message();
      EXPECT_EQ(r->sample_rate, rate);
      ASSERT_EQ(r->samples.size(), static_cast<size_t>(frames));
      // Each channel is off by at most one step (half a step except at +1.0);
      // the average is then rounded to float (at most 2^-25 for |x| <= 1).
      const double tolerance = c.step + std::ldexp(1.0, -24);
      double worst = 0.0;
      for (int i = 0; i < frames; ++i) {
        double mean = 0.0;
        for (int ch = 0; ch < channels; ++ch) mean += interleaved[static_cast<size_t>(i * channels + ch)];
        mean /= channels;
        worst = std::max(worst, std::abs(r->samples[static_cast<size_t>(i)] - mean));
      }
      EXPECT_LE(worst, tolerance);
      if (c.fmt == WavSampleFormat::pcm16 && channels == 1) {
        EXPECT_LE(worst, 1.0 / 32768);
      }
      if (c.fmt == WavSampleFormat::float32 && channels == 1) {
        EXPECT_EQ(worst, 0.0);
      }
      EXPECT_FLOAT_EQ(r->samples[1], -1.0f);
      std::remove(path.c_str());
    }
  }
}

TEST(AudioIo, WriterUsesExtensibleHeaderWhereExpected) {
  const std::vector<float> six(6 * 10, 0.25f);
  const std::string path = temp_path("ext.wav");
  ASSERT_TRUE(write_wav_file(path, six, 6, 48000, WavSampleFormat::pcm16).ok());
  std::vector<uint8_t> b = read_bytes(path);
  ASSERT_GE(b.size(), 22u);
  EXPECT_EQ(b[20] | (b[21] << 8), 0xFFFE);  // format tag
  auto r = read_wav_file(path);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->samples.size(), 10u);
  EXPECT_FLOAT_EQ(r->samples[0], 0.25f);

  ASSERT_TRUE(write_wav_file(path, {0.5f, -0.5f}, 1, 16000, WavSampleFormat::pcm16).ok());
  b = read_bytes(path);
  EXPECT_EQ(b[20] | (b[21] << 8), 1);  // plain PCM for mono 16-bit
  std::remove(path.c_str());
}

TEST(AudioIo, ReadsHandMadeExtensibleHeaders) {
  // PCM 16-bit subformat, stereo.
  FmtFields f;
  f.channels = 2;
  auto pcm = WavImage().chunk("fmt ", extensible_body(f, 1)).chunk("data", pcm16_bytes({16384, -16384, 8192, 8192})).bytes();
  auto r = parse(pcm);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->samples.size(), 2u);
  EXPECT_FLOAT_EQ(r->samples[0], 0.0f);
  EXPECT_FLOAT_EQ(r->samples[1], 0.25f);

  // IEEE float subformat, mono.
  f.channels = 1;
  f.bits = 32;
  std::vector<uint8_t> floats;
  for (float v : {0.5f, -0.75f}) put32(floats, std::bit_cast<uint32_t>(v));
  r = parse(WavImage().chunk("fmt ", extensible_body(f, 3)).chunk("data", floats).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->samples.size(), 2u);
  EXPECT_EQ(r->samples[1], -0.75f);

  // Unknown subformat GUID, ADPCM subformat, and a cut-short extensible fmt.
  expect_error(WavImage().chunk("fmt ", extensible_body(f, 3, false)).chunk("data", floats).bytes(), "subformat");
  expect_error(WavImage().chunk("fmt ", extensible_body(f, 2)).chunk("data", floats).bytes(), "format tag");
  auto short_ext = extensible_body(f, 3);
  short_ext.resize(30);
  expect_error(WavImage().chunk("fmt ", short_ext).chunk("data", floats).bytes(), "EXTENSIBLE");
}

TEST(AudioIo, SkipsListAndUnknownChunks) {
  const std::vector<uint8_t> list = {'I', 'N', 'F', 'O', 'I', 'S', 'F', 'T', 4, 0, 0, 0, 'L', 'a', 'v', 'f'};
  const auto data = pcm16_bytes({1000, -1000, 3000});
  // LIST between fmt and data, LIST before fmt, and junk after data.
  for (const auto& bytes : {WavImage().fmt({}).chunk("LIST", list).chunk("data", data).bytes(),
                            WavImage().chunk("LIST", list).chunk("JUNK", std::vector<uint8_t>(28)).fmt({}).chunk("data", data).bytes(),
                            WavImage().fmt({}).chunk("data", data).chunk("LIST", list).bytes(),
                            WavImage().chunk("data", data).fmt({}).bytes()}) {  // data before fmt is legal
    auto r = parse(bytes);
    ASSERT_TRUE(r.ok()) << r.message();
    ASSERT_EQ(r->samples.size(), 3u);
    EXPECT_FLOAT_EQ(r->samples[2], 3000.0f / 32768);
  }
}

TEST(AudioIo, HonoursOddChunkPadding) {
  // A 3-byte chunk is followed by a pad byte; reading the next chunk id one
  // byte early would find "\0dat" and miss the data.
  auto bytes = WavImage().fmt({}).chunk("odd ", {1, 2, 3}).chunk("data", pcm16_bytes({100, 200})).bytes();
  auto r = parse(bytes);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->samples.size(), 2u);
  EXPECT_FLOAT_EQ(r->samples[1], 200.0f / 32768);

  // Odd-sized 8-bit data chunk, padded, followed by another chunk.
  FmtFields u8;
  u8.bits = 8;
  r = parse(WavImage().fmt(u8).chunk("data", {0, 128, 255, 64, 192}).chunk("LIST", {'I', 'N', 'F', 'O'}).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->samples.size(), 5u);
  EXPECT_FLOAT_EQ(r->samples[0], -1.0f);
  EXPECT_FLOAT_EQ(r->samples[1], 0.0f);
  EXPECT_FLOAT_EQ(r->samples[2], 127.0f / 128);
  EXPECT_FLOAT_EQ(r->samples[3], -0.5f);
}

TEST(AudioIo, DecodesWholeFramesOfTruncatedDataChunk) {
  // Declares 1000 bytes, holds 101: 50 complete 16-bit frames, a stray byte.
  std::vector<int16_t> values(50);
  for (int i = 0; i < 50; ++i) values[static_cast<size_t>(i)] = static_cast<int16_t>(i * 100);
  auto body = pcm16_bytes(values);
  body.push_back(0x7F);
  auto r = parse(WavImage().fmt({}).chunk("data", body, 1000, false).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->samples.size(), 50u);
  EXPECT_FLOAT_EQ(r->samples[49], 4900.0f / 32768);

  // Stereo: 3 bytes present = no complete 4-byte frame -> error.
  FmtFields stereo;
  stereo.channels = 2;
  expect_error(WavImage().fmt(stereo).chunk("data", {1, 2, 3}, 400, false).bytes(), "truncated");
  expect_error(WavImage().fmt({}).chunk("data", {}, 400, false).bytes(), "truncated");
  // A complete data chunk smaller than one frame is also an error...
  expect_error(WavImage().fmt(stereo).chunk("data", {1, 2, 3}).bytes(), "less than one frame");
  // ...but an empty one is a valid, silent file.
  r = parse(WavImage().fmt({}).chunk("data", {}).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_TRUE(r->samples.empty());
  EXPECT_EQ(r->sample_rate, 16000);
}

TEST(AudioIo, StreamingDataSizeMeansRestOfFile) {
  auto r = parse(WavImage().fmt({}).chunk("data", pcm16_bytes({1, 2, 3, 4}), 0xFFFFFFFF).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->samples.size(), 4u);
}

TEST(AudioIo, ReadsRf64WithDs64Chunk) {
  std::vector<uint8_t> ds64;
  for (uint64_t v : {uint64_t{0}, uint64_t{6}, uint64_t{3}}) {  // riff size, data size, sample count
    put32(ds64, static_cast<uint32_t>(v));
    put32(ds64, static_cast<uint32_t>(v >> 32));
  }
  put32(ds64, 0);  // table length
  auto r = parse(WavImage("RF64").chunk("ds64", ds64).fmt({}).chunk("data", pcm16_bytes({5, 6, 7}), 0xFFFFFFFF)
                     .chunk("LIST", {'I', 'N', 'F', 'O'}).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->samples.size(), 3u);  // the ds64 size, not the rest of the file
}

TEST(AudioIo, FloatSamplesAreSanitised) {
  FmtFields f;
  f.tag = 3;
  f.bits = 32;
  std::vector<uint8_t> body;
  for (float v : {2.0f, -3.0f, std::nanf(""), INFINITY, 0.5f}) put32(body, std::bit_cast<uint32_t>(v));
  auto r = parse(WavImage().fmt(f).chunk("data", body).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->samples, (std::vector<float>{1.0f, -1.0f, 0.0f, 1.0f, 0.5f}));

  f.bits = 64;
  body.clear();
  for (double v : {0.25, -7.0}) {
    const uint64_t u = std::bit_cast<uint64_t>(v);
    put32(body, static_cast<uint32_t>(u));
    put32(body, static_cast<uint32_t>(u >> 32));
  }
  r = parse(WavImage().fmt(f).chunk("data", body).bytes());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->samples, (std::vector<float>{0.25f, -1.0f}));
}

TEST(AudioIo, RejectsUnsupportedOrInconsistentFormats) {
  const auto data = pcm16_bytes({1, 2, 3, 4});
  auto with = [&](FmtFields f) { return WavImage().fmt(f).chunk("data", data).bytes(); };
  FmtFields f;
  f.tag = 2;  // MS ADPCM
  expect_error(with(f), "ADPCM");
  f = {};
  f.bits = 12;
  expect_error(with(f), "bit depth 12");
  f = {};
  f.tag = 3;  // 16-bit float does not exist in WAV
  expect_error(with(f), "float bit depth 16");
  f = {};
  f.channels = 0;
  expect_error(with(f), "zero channels");
  f = {};
  f.channels = 65;
  expect_error(with(f), "channel count 65");
  f = {};
  f.rate = 0;
  expect_error(with(f), "sample rate 0");
  f = {};
  f.rate = 384001;
  expect_error(with(f), "sample rate 384001");
  f = {};
  f.block_align = 4;  // mono 16-bit needs 2
  expect_error(with(f), "block_align");
  expect_error(WavImage().chunk("fmt ", std::vector<uint8_t>(14)).chunk("data", data).bytes(), "fmt chunk is too small");
  expect_error(WavImage().fmt({}).bytes(), "no data chunk");
  expect_error(WavImage().chunk("data", data).bytes(), "no fmt chunk");
  expect_error(WavImage("RIFF", "AVI ").fmt({}).chunk("data", data).bytes(), "not WAVE");
  expect_error(WavImage("RIFX").fmt({}).chunk("data", data).bytes(), "no RIFF header");
  // fmt chunk that claims more bytes than the file has.
  auto cut = fmt_body({});
  expect_error(WavImage().chunk("fmt ", cut, 4000, false).bytes(), "fmt chunk is truncated");
}

TEST(AudioIo, GarbageNeverCrashes) {
  // Named garbage with the expected error.
  expect_error({}, "too short");
  expect_error({'R', 'I', 'F', 'F'}, "too short");
  expect_error({'R', 'I', 'F', 'F', 0xFF, 0xFF, 0xFF, 0xFF, 'W', 'A', 'V', 'E'}, "no fmt chunk");
  // Huge chunk sizes everywhere.
  expect_error(WavImage().chunk("LIST", {1, 2, 3, 4}, 0xFFFFFFF0).fmt({}).bytes(), "no fmt chunk");
  expect_error(WavImage().fmt({}).chunk("data", {}, 0xFFFFFFF0, false).bytes(), "truncated");
  EXPECT_FALSE(read_wav_memory(nullptr, 100, "null").ok());

  // Random bytes, with and without a valid-looking header.
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<uint8_t> b(static_cast<size_t>(rng() % 200));
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    if (trial % 2 && b.size() >= 12) std::memcpy(b.data(), "RIFF\0\0\0\0WAVE", 12);
    auto r = parse(b);
    if (!r.ok()) {
      EXPECT_NE(r.message().find("test.wav"), std::string::npos);
    }
  }

  // Every prefix and many single-byte corruptions of a valid file
  // (multi-chunk, extensible, padded); ASan/UBSan catch any bad access.
  FmtFields f;
  f.channels = 3;
  f.bits = 24;
  std::vector<uint8_t> body(3 * 3 * 7);
  for (auto& x : body) x = static_cast<uint8_t>(rng());
  const auto valid = WavImage().chunk("LIST", {'I', 'N', 'F', 'O', 'x'}).chunk("fmt ", extensible_body(f, 1))
                         .chunk("data", body).chunk("JUNK", {9}).bytes();
  ASSERT_TRUE(parse(valid).ok());
  for (size_t n = 0; n < valid.size(); ++n) {
    std::vector<uint8_t> prefix(valid.begin(), valid.begin() + static_cast<ptrdiff_t>(n));
    (void)parse(prefix);
  }
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> b = valid;
    for (int k = 0; k <= trial % 3; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    auto r = parse(b);
    if (r.ok()) {
      for (float x : r->samples) ASSERT_TRUE(x >= -1.0f && x <= 1.0f);
    }
  }
}

TEST(AudioIo, FileErrorsNameThePath) {
  const std::string missing = temp_path("does_not_exist.wav");
  auto r = read_wav_file(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find(missing), std::string::npos) << r.message();

  r = read_wav_file(::testing::TempDir());  // a directory
  ASSERT_FALSE(r.ok());

  auto l = load_audio(missing);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.message().find(missing), std::string::npos);

  EXPECT_FALSE(write_wav_file(temp_path("no_such_dir/x.wav"), {0.0f}, 1, 16000, WavSampleFormat::pcm16).ok());
  EXPECT_FALSE(write_wav_file(temp_path("x.wav"), {0.0f}, 0, 16000, WavSampleFormat::pcm16).ok());
  EXPECT_FALSE(write_wav_file(temp_path("x.wav"), {0.0f, 0.0f, 0.0f}, 2, 16000, WavSampleFormat::pcm16).ok());
  EXPECT_FALSE(write_wav_file(temp_path("x.wav"), {0.0f}, 1, 0, WavSampleFormat::pcm16).ok());
}

TEST(AudioIo, LoadAudio16kRejectsEmptyFile) {
  const std::string path = temp_path("empty.wav");
  ASSERT_TRUE(write_wav_file(path, {}, 1, 44100, WavSampleFormat::pcm16).ok());
  auto r = read_wav_file(path);
  ASSERT_TRUE(r.ok()) << r.message();  // a valid, empty WAV...
  EXPECT_TRUE(r->samples.empty());
  auto l = load_audio(path);  // ...is not usable audio
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.message().find("no audio"), std::string::npos) << l.message();
  std::remove(path.c_str());
}

TEST(AudioIo, ReadsRealJfkFile) {
  const std::string path = std::string(AMA_SHARED_DIR) + "/audio/jfk.wav";  // has a LIST chunk
  auto r = read_wav_file(path);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->sample_rate, 16000);
  ASSERT_EQ(r->samples.size(), 176000u);
  float peak = 0.0f;
  for (float x : r->samples) peak = std::max(peak, std::abs(x));
  EXPECT_GT(peak, 0.1f);
  EXPECT_LE(peak, 1.0f);

  auto l = load_audio(path);
  ASSERT_TRUE(l.ok()) << l.message();
  EXPECT_EQ(*l, r->samples);  // already 16 kHz: untouched
}

TEST(AudioIo, ReadsAndUpsamplesReal8kFile) {
  const std::string path = std::string(AMA_SHARED_DIR) + "/audio/aepyx-8k.wav";
  auto r = read_wav_file(path);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->sample_rate, 8000);
  ASSERT_EQ(r->samples.size(), 1353216u);  // 2706432 data bytes / 2

  // Our resampler (tests only since audio goes through libswresample's soxr;
  // test_audio_source.cpp compares the two).
  auto l = std::make_optional(resample(r->samples, 8000, 16000));
  ASSERT_EQ(l->size(), 2 * r->samples.size());
  // Zero-delay 2x upsampling: even outputs fall on input samples, where the
  // sinc is 1 at the centre and 0 at every other tap.
  double worst = 0.0;
  for (size_t i = 0; i < r->samples.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs((*l)[2 * i] - r->samples[i])));
  }
  EXPECT_LT(worst, 1e-6);
}

// ---------------------------------------------------------------------------
// Resampling

std::vector<float> sine(double freq, double amplitude, int rate, double seconds) {
  std::vector<float> v(static_cast<size_t>(std::lround(seconds * rate)));
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<float>(amplitude * std::sin(2 * kPi * freq * static_cast<double>(i) / rate));
  }
  return v;
}

// Output samples to ignore at each end, where the filter reaches past the input.
size_t edge(int in_rate, int out_rate) {
  const int h = detail::resample_half_width(in_rate, out_rate);
  return static_cast<size_t>(std::ceil(static_cast<double>(h) * out_rate / in_rate)) + 2;
}

// Largest |out[n] - amplitude sin(2 pi f n / out_rate)| away from the edges.
// A zero-delay resampler must match the ideal sine in amplitude, frequency and phase.
double max_error_vs_ideal(const std::vector<float>& out, double freq, double amplitude, int in_rate, int out_rate) {
  const size_t e = edge(in_rate, out_rate);
  double worst = 0.0;
  for (size_t n = e; n + e < out.size(); ++n) {
    const double ideal = amplitude * std::sin(2 * kPi * freq * static_cast<double>(n) / out_rate);
    worst = std::max(worst, std::abs(out[n] - ideal));
  }
  return worst;
}

// Output samples of a unit sine at `freq` resampled from in_rate to out_rate.
std::vector<float> resampled_tone(double freq, int in_rate, int out_rate,
                                  detail::ResampleMethod method = detail::ResampleMethod::automatic) {
  return detail::resample_with(sine(freq, 1.0, in_rate, 0.5), in_rate, out_rate, method);
}

// Gain in dB of a unit sine at `freq` after resampling, from the RMS away from
// the edges. Used for the stopband, where the output is an alias or residue.
double rms_gain_db(double freq, int in_rate, int out_rate) {
  const auto out = resampled_tone(freq, in_rate, out_rate);
  const size_t e = edge(in_rate, out_rate);
  double sum = 0.0;
  size_t count = 0;
  for (size_t n = e; n + e < out.size(); ++n, ++count) sum += static_cast<double>(out[n]) * out[n];
  return 10.0 * std::log10(sum / static_cast<double>(count) / 0.5);  // a unit sine has mean square 0.5
}

// Passband gain in dB: least-squares fit of a sin + b cos at `freq` away from
// the edges. Unlike the RMS, this is exact for a window holding a non-integer
// number of periods (50 Hz in 0.49 s).
double fitted_gain_db(double freq, int in_rate, int out_rate) {
  const auto out = resampled_tone(freq, in_rate, out_rate);
  const size_t e = edge(in_rate, out_rate);
  double ss = 0, sc = 0, cc = 0, ys = 0, yc = 0;
  for (size_t n = e; n + e < out.size(); ++n) {
    const double phase = 2 * kPi * freq * static_cast<double>(n) / out_rate;
    const double s = std::sin(phase), c = std::cos(phase), y = out[n];
    ss += s * s, sc += s * c, cc += c * c, ys += y * s, yc += y * c;
  }
  const double det = ss * cc - sc * sc;
  const double a = (ys * cc - yc * sc) / det;
  const double b = (yc * ss - ys * sc) / det;
  return 20.0 * std::log10(std::hypot(a, b));
}

TEST(AudioIo, ResampleIdentityAt16k) {
  const auto in = sine(440, 0.3, 16000, 0.1);
  EXPECT_EQ(resample(in, 16000, 16000), in);
  EXPECT_EQ(resample(in, 22050, 22050), in);
}

TEST(AudioIo, ResampleLengthIsCeilOfScaledLength) {
  struct Case {
    size_t n_in;
    int in_rate, out_rate;
    size_t expected;
  };
  const Case cases[] = {
      {441, 44100, 16000, 160},   // exact
      {442, 44100, 16000, 161},   // 160.36 -> 161
      {1, 44100, 16000, 1},       // 0.36 -> 1
      {0, 44100, 16000, 0},
      {3, 8000, 16000, 6},
      {1000, 48000, 16000, 334},  // 333.3 -> 334
      {22050, 22050, 16000, 16000},
      {7, 11025, 16000, 11},      // 10.16 -> 11
      {5, 16000, 16001, 6},       // 5.0003 -> 6 (direct path)
  };
  for (const Case& c : cases) {
    EXPECT_EQ(resample(std::vector<float>(c.n_in, 0.1f), c.in_rate, c.out_rate).size(), c.expected)
        << c.n_in << " samples " << c.in_rate << " -> " << c.out_rate;
  }
  EXPECT_TRUE(resample({1.0f, 2.0f}, 0, 16000).empty());
  EXPECT_TRUE(resample({1.0f, 2.0f}, 16000, -1).empty());
}

TEST(AudioIo, Resample1kHzSineKeepsAmplitudeFrequencyAndPhase) {
  // 44056 Hz reduces to L = 2000 > 1000: the direct (per-sample double) path.
  for (int in_rate : {44100, 48000, 8000, 22050, 11025, 32000, 96000, 44056}) {
    SCOPED_TRACE(in_rate);
    const auto out = resample(sine(1000, 0.8, in_rate, 0.5), in_rate, 16000);
    const size_t n_in = static_cast<size_t>(std::lround(0.5 * in_rate));
    ASSERT_EQ(out.size(), (n_in * 16000 + in_rate - 1) / in_rate);
    const double err = max_error_vs_ideal(out, 1000, 0.8, in_rate, 16000);
    EXPECT_LT(err, 0.01);   // the requirement
    EXPECT_LT(err, 2e-4);   // what the filter actually achieves
  }
}

TEST(AudioIo, ResampleKeeps7500HzAndRejects9kHz) {
  // 7.5 kHz is inside the 7.6 kHz passband at 16 kHz output.
  const auto kept = resample(sine(7500, 0.8, 44100, 0.5), 44100, 16000);
  EXPECT_LT(max_error_vs_ideal(kept, 7500, 0.8, 44100, 16000), 0.01);
  EXPECT_NEAR(fitted_gain_db(7500, 44100, 16000), 0.0, 0.001);
  // 9 kHz would alias to 7 kHz.
  EXPECT_LT(rms_gain_db(9000, 44100, 16000), -60.0);
}

TEST(AudioIo, ResamplePassbandIsFlat) {
  for (int in_rate : {44100, 48000, 22050}) {
    for (double f : {50.0, 300.0, 1000.0, 3000.0, 5000.0, 7000.0, 7600.0}) {
      EXPECT_NEAR(fitted_gain_db(f, in_rate, 16000), 0.0, 0.001) << f << " Hz at " << in_rate;
    }
  }
  for (double f : {100.0, 1000.0, 3000.0, 3800.0}) EXPECT_NEAR(fitted_gain_db(f, 8000, 16000), 0.0, 0.001) << f;
}

TEST(AudioIo, ResampleStopbandIsAtLeast80dB) {
  // Everything from 1.05 fN (8.4 kHz) up to the input Nyquist frequency.
  for (int in_rate : {44100, 48000, 22050, 44056}) {
    for (double f = 8400.0; f < in_rate / 2.0; f += 277.0) {
      EXPECT_LT(rms_gain_db(f, in_rate, 16000), -80.0) << f << " Hz at " << in_rate;
    }
  }
}

TEST(AudioIo, ResampleUpsamplingSuppressesImages) {
  // A 3 kHz tone at 8 kHz, upsampled to 16 kHz, must not leave its 5 kHz image:
  // the error against a pure 3 kHz sine measures everything else.
  const auto out = resample(sine(3000, 0.8, 8000, 0.5), 8000, 16000);
  EXPECT_LT(max_error_vs_ideal(out, 3000, 0.8, 8000, 16000), 1e-3);
}

TEST(AudioIo, ResamplePathsAgreeAndAreDeterministic) {
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 0.2f);
  std::vector<float> in(20000);
  for (auto& x : in) x = noise(rng);
  for (auto [in_rate, out_rate] : {std::pair{44100, 16000}, std::pair{8000, 16000}, std::pair{22050, 16000},
                                   std::pair{16000, 44100}}) {
    const auto poly = detail::resample_with(in, in_rate, out_rate, detail::ResampleMethod::polyphase);
    const auto direct = detail::resample_with(in, in_rate, out_rate, detail::ResampleMethod::direct);
    ASSERT_EQ(poly.size(), direct.size());
    double worst = 0.0;
    for (size_t i = 0; i < poly.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(poly[i] - direct[i])));
    EXPECT_LT(worst, 1e-5) << in_rate << " -> " << out_rate;  // float taps vs double taps
    EXPECT_EQ(poly, resample(in, in_rate, out_rate));
  }
  EXPECT_EQ(resample(in, 44056, 16000), resample(in, 44056, 16000));
}

TEST(AudioIo, ResampleKeepsDcAndHandlesTinyInputs) {
  const auto out = resample(std::vector<float>(4410, 0.5f), 44100, 16000);
  const size_t e = edge(44100, 16000);
  for (size_t n = e; n + e < out.size(); ++n) ASSERT_NEAR(out[n], 0.5f, 1e-6f) << n;
  for (size_t n = 1; n <= 4; ++n) {
    EXPECT_EQ(resample(std::vector<float>(n, 1.0f), 44100, 16000).size(), (n * 160 + 440) / 441);
    EXPECT_EQ(resample(std::vector<float>(n, 1.0f), 8000, 16000).size(), 2 * n);
    EXPECT_EQ(resample(std::vector<float>(n, 1.0f), 1, 16000).size(), 16000 * n);
  }
}

}  // namespace
}  // namespace ama
