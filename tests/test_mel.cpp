// The audio front end: the FFT against a direct DFT, the computed mel
// filterbank against the one in whisper.cpp's files, and window-by-window
// log-mel against the whole-file computation.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "audio/fft.h"
#include "audio/mel.h"
#include "audio/resample.h"
#include "model/ggml_file.h"
#include "test_util.h"
#include <cstdio>

namespace ama {
namespace {

TEST(Fft, MatchesDirectDftAtMixedRadixSizes) {
  for (int n : {1, 2, 3, 4, 5, 7, 12, 30, 49, 128, 400, 1000}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    std::mt19937 g(n);
    std::normal_distribution<double> d;
    std::vector<std::complex<double>> in(n), out(n);
    for (auto& v : in) v = {d(g), d(g)};
    Fft(n).forward(in.data(), out.data());
    double worst = 0;
    for (int k = 0; k < n; ++k) {
      std::complex<double> s = 0;
      for (int j = 0; j < n; ++j) s += in[j] * std::polar(1.0, -2.0 * M_PI * j * k / n);
      worst = std::max(worst, std::abs(s - out[k]));
    }
    // Double-precision FFT error grows like log n; a direct DFT like n.
    EXPECT_LE(worst, 1e-12 * n) << "worst bin error " << worst;
  }
}

TEST(MelFilters, ComputedSlaneyFiltersMatchWhisperFiles) {
  auto r = GgmlReader::open(test::shared("models/whisper-vocab/for-tests-ggml-base.bin"));
  auto h = r->read_header();
  ASSERT_TRUE(h.ok());
  auto ours = slaney_mel_filters(80);
  ASSERT_EQ(ours.size(), h->mel_filters.size());
  auto d = test::max_abs_diff(ours, h->mel_filters);
  // Stored as float32 from a float64 computation: within a few float ulps of ~0.03.
  EXPECT_LE(d.max_abs, 1e-8) << d.str("mel filters");
  auto f128 = slaney_mel_filters(128);
  EXPECT_EQ(f128.size(), 128u * 201u);
  for (int m = 0; m < 128; ++m) {  // every filter is a non-empty triangle
    double s = 0;
    for (int b = 0; b < 201; ++b) s += f128[m * 201 + b];
    EXPECT_GT(s, 0.0) << "filter " << m;
  }
}

TEST(LogMel, WindowByWindowEqualsWholeFile) {
  auto audio = load_audio_16k(test::shared("audio/jfk.wav"));
  ASSERT_TRUE(audio.ok());
  LogMel lm(slaney_mel_filters(80), 80);
  const auto whole = lm.compute(audio->data(), audio->size());
  const int total = LogMel::total_frames(audio->size());
  const float gmax = lm.global_max(audio->data(), audio->size());
  for (int f0 : {0, 1, 777, total - 3000}) {
    std::vector<float> w(80 * 3000);
    lm.raw_frames(audio->data(), audio->size(), f0, f0 + 3000, w.data(), 3000);
    LogMel::normalize(w.data(), 80, 3000, 3000, gmax);
    for (int m = 0; m < 80; ++m)
      for (int c = 0; c < 3000; ++c)
        ASSERT_EQ(w[m * 3000 + c], whole[static_cast<size_t>(m) * total + f0 + c]) << "mel " << m << " frame " << f0 + c;
  }
}

}  // namespace
}  // namespace ama

namespace ama {
namespace {

// large-v3's shape: 128 mel bins, 51866 tokens, from the 80-bin base
// vocabulary (the filters are computed). Written, loaded, and checked.
TEST(MelFilters, LargeV3TestModelGetsComputed128BinFilters) {
  const std::string out = ::testing::TempDir() + "/mel128_model.bin";
  auto r = test::run_command(std::string(AMA_CLI_PATH) + " make-test-model --dims 64,2,1,1,128,51866 -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto reader = GgmlReader::open(out);
  auto h = reader->read_header();
  ASSERT_TRUE(h.ok()) << h.message();
  EXPECT_EQ(h->hp.n_mels, 128);
  EXPECT_EQ(h->mel_filters, slaney_mel_filters(128));
  auto mel = test::run_command(std::string(AMA_CLI_PATH) + " mel --n-mels 128 --audio " + test::shared("audio/jfk.wav") +
                               " --out " + ::testing::TempDir() + "/mel128.f32 --filters " + out);
  EXPECT_EQ(mel.exit_code, 0) << mel.err;
  EXPECT_EQ(test::read_f32(::testing::TempDir() + "/mel128.f32").size(), 128u * 4100u);
  std::remove(out.c_str());
}

}  // namespace
}  // namespace ama
