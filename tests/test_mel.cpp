// The audio front end: the FFT against a direct DFT, the computed mel
// filterbanks against the one in whisper.cpp's files and openai's own
// mel_filters.npz, and window-by-window log-mel against the whole-file
// computation.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "audio/audio_source.h"
#include "audio/fft.h"
#include "audio/mel.h"
#include "audio/resample.h"
#include "model/ggml_file.h"
#include "npz.h"
#include "test_util.h"
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

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
  ASSERT_TRUE(r.ok()) << r.message();
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

// Both of our filterbanks, 80 and 128 bins, against the arrays openai's
// log_mel_spectrogram loads (whisper/assets/mel_filters.npz, made with
// librosa.filters.mel). Tolerance, with u = 2^-24 (float32's unit
// roundoff): librosa builds the triangles t in float64, stores them in a
// float32 array (one rounding), then multiplies by the Slaney norm e in
// float64 and stores float32 again (a second rounding): theirs =
// fl(fl(t) e), within 2u |x| of the exact t e. We round t e once: within
// u |x|. So |ours - theirs| <= 3u |x| (at most a few float32 ulps), plus the
// float64 differences in how t and e are formed (summation order in
// linspace and the mel scale, ~1e-16 relative), which reach ~1e-14 in
// absolute terms only at a triangle's edge where t is a difference of
// nearly equal frequencies: 1e-13 absolute covers that.
TEST(MelFilters, ComputedFiltersMatchOpenaiNpz) {
  constexpr double kU = 1.0 / 16777216.0;
  for (int n_mels : {80, 128}) {
    SCOPED_TRACE("mel_" + std::to_string(n_mels));
    auto theirs = test::read_npz_f32(test::shared("whisper-assets/mel_filters.npz"), "mel_" + std::to_string(n_mels));
    ASSERT_TRUE(theirs.ok()) << theirs.message();
    ASSERT_EQ(theirs->shape, (std::vector<size_t>{static_cast<size_t>(n_mels), 201}));
    const std::vector<float> ours = slaney_mel_filters(n_mels);
    ASSERT_EQ(ours.size(), theirs->data.size());
    double worst = -1;  // largest error / tolerance
    size_t at = 0, differing = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      const double t = theirs->data[i], err = std::fabs(ours[i] - t), tol = 3 * kU * std::fabs(t) + 1e-13;
      differing += ours[i] != theirs->data[i];
      if (err / tol > worst) worst = err / tol, at = i;
    }
    EXPECT_LE(worst, 1.0) << "worst element: filter " << at / 201 << ", bin " << at % 201 << ": ours " << ours[at]
                          << ", openai " << theirs->data[at] << ", error " << std::fabs(ours[at] - theirs->data[at])
                          << " (" << worst << " x the tolerance)";
    std::printf("[mel filters] mel_%d: %zu of %zu elements differ from openai's; worst at %.2f x the tolerance\n", n_mels,
                differing, ours.size(), worst);
  }
}

// The npz reader refuses what it cannot read correctly rather than handing
// back garbage: a missing array, and a damaged deflate stream.
TEST(MelFilters, NpzReaderRejectsMissingArraysAndDamage) {
  const std::string path = test::shared("whisper-assets/mel_filters.npz");
  auto missing = test::read_npz_f32(path, "mel_64");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("mel_80.npy, mel_128.npy"), std::string::npos) << missing.message();

  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  bytes[500] = static_cast<char>(bytes[500] ^ 0x5a);  // inside mel_80.npy's deflated data
  const std::string damaged = ::testing::TempDir() + "/mel_filters_damaged.npz";
  std::ofstream(damaged, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  auto bad = test::read_npz_f32(damaged, "mel_80");
  EXPECT_FALSE(bad.ok()) << "a damaged archive was read";
  EXPECT_TRUE(test::read_npz_f32(damaged, "mel_128").ok());  // the other entry is intact
  std::remove(damaged.c_str());
}

TEST(LogMel, WindowByWindowEqualsWholeFile) {
  auto audio = load_audio(test::shared("audio/jfk.wav"));
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

// The log-mel (Stockham FFT, two frames per complex transform, sparse
// filterbank, float log10) against log_mel_frame_reference (a plain
// 400-point DFT of each windowed frame, the dense filterbank and log10, in
// double), on real speech.
// Bound: the output is float, so half an ulp of rounding, plus log10f's
// own error (within an ulp) and the power rounded to float first (2.6e-8):
// 2 ulps of the largest |value| (measured: 1.2e-7 at |value| < 4).
TEST(LogMel, MatchesPlainDftReference) {
  auto audio = load_audio(test::shared("audio/jfk.wav"));
  ASSERT_TRUE(audio.ok());
  const std::vector<float> filters = slaney_mel_filters(80);
  LogMel lm(filters, 80);
  const int total = LogMel::total_frames(audio->size());
  std::vector<float> out(static_cast<size_t>(80) * total);
  lm.raw_frames(audio->data(), audio->size(), 0, total, out.data(), total);
  double worst = 0, worst_ref = 0, max_ref = 0;
  int worst_m = -1, worst_t = -1;
  // The reflected start, both frames of a pair, speech, the zero padding's edge.
  for (int t : {0, 1, 2, 3, 501, 502, 1099, 1100, total - 2, total - 1}) {
    double ref[80];
    log_mel_frame_reference(audio->data(), audio->size(), t, filters, 80, ref);
    for (int m = 0; m < 80; ++m) {
      max_ref = std::max(max_ref, std::fabs(ref[m]));
      const double d = std::fabs(out[static_cast<size_t>(m) * total + t] - ref[m]);
      if (d > worst) worst = d, worst_ref = ref[m], worst_m = m, worst_t = t;
    }
  }
  EXPECT_LE(worst, 2 * std::ldexp(1.0, std::ilogb(max_ref) - 23))
      << "worst at mel " << worst_m << " frame " << worst_t << ": reference " << worst_ref;
}

// The kernel harness checks its log-mel row against the same reference.
TEST(LogMel, KernelsCommandChecksTheMelRow) {
  const auto r = test::run_command(std::string(AMA_CLI_PATH) + " kernels --kernel log_mel --iters 1 -t 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["kernels"].size(), 1u);
  const auto& k = j["kernels"][0];
  EXPECT_EQ(k["kernel"].get<std::string>(), "log_mel_f64_fft400_mixed_radix");
  EXPECT_GT(k["max_abs_err"].get<double>(), 0.0);  // compared, not skipped: the float outputs are not exact
  EXPECT_LT(k["max_rel_err"].get<double>(), std::ldexp(1.0, -22)) << k.dump();
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
