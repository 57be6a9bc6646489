// The float32 engine against ../shared/oracle (an independent float64
// implementation of openai/whisper), through the CLI and the C++ API.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "audio/resample.h"
#include "backend/cpu/cpu_backend.h"
#include "decode/transcriber.h"
#include "model/ggml_file.h"
#include "model/whisper_model.h"
#include "backend_variants.h"
#include "test_util.h"

namespace ama {
namespace {

using test::kAmxEmulated;
using test::max_abs_diff;
using test::read_f32;
using test::shared;
using test::variant_name;

// Tolerances from ../shared/oracle/README.md.
constexpr double kMelTol = 1e-4, kEncoderTol = 2e-3, kLogitsTol = 1e-2;

struct OracleCase {
  std::string dir;
  std::vector<int> tokens;
  int n_vocab = 0;
};

OracleCase load_case(const std::string& name) {
  OracleCase c;
  c.dir = shared("oracle/" + name);
  std::ifstream f(c.dir + "/meta.json");
  auto j = nlohmann::json::parse(f);
  c.tokens = j["tokens"].get<std::vector<int>>();
  c.n_vocab = j["hparams"]["n_vocab"].get<int>();
  return c;
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int t : v) s += (s.empty() ? "" : ",") + std::to_string(t);
  return s;
}

// The engine through the C++ API on one backend configuration: the whole
// padded spectrogram, the first window's encoder output, and the logits.
struct EngineRun {
  std::vector<float> mel, encoder_out, logits;
};

Result<EngineRun> run_engine(const OracleCase& c, const CpuBackendOptions& options, const std::vector<float>& audio) {
  auto be = make_cpu_backend(options);
  if (!be) return be.error();
  auto model = load_model(c.dir + "/model.bin", **be);
  if (!model) return model.error();
  EngineRun r;
  LogMel lm((*model)->mel_filters, (*model)->hp.n_mels);
  r.mel = lm.compute(audio.data(), audio.size());
  Transcriber t(*model, **be);
  AMA_TRY(t.encode_window(r.mel.data(), LogMel::total_frames(audio.size())));
  auto enc = t.encoder_output();
  if (!enc) return enc.error();
  r.encoder_out = std::move(*enc);
  auto logits = t.logits_for(c.tokens);
  if (!logits) return logits.error();
  r.logits = std::move(logits.value());
  return r;
}

class Oracle : public ::testing::TestWithParam<std::string> {};

TEST_P(Oracle, MelThroughCli) {
  const std::string out = ::testing::TempDir() + "/oracle_mel_" + GetParam() + ".f32";
  auto r = test::run_command(std::string(AMA_CLI_PATH) + " mel --audio " + shared("audio/jfk.wav") + " --out " + out +
                             " --filters " + shared("oracle/" + GetParam() + "/model.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ours = read_f32(out), ref = read_f32(shared("oracle/" + GetParam() + "/mel.f32"));
  ASSERT_EQ(ours.size(), ref.size());
  auto d = max_abs_diff(ours, ref);
  EXPECT_LE(d.max_abs, kMelTol) << d.str("mel");
  std::printf("[oracle %s] mel %s\n", GetParam().c_str(), d.str().c_str());
  // The default, computed filterbank gives the same spectrogram.
  auto r2 = test::run_command(std::string(AMA_CLI_PATH) + " mel --audio " + shared("audio/jfk.wav") + " --out " + out);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  auto d2 = max_abs_diff(read_f32(out), ref);
  EXPECT_LE(d2.max_abs, kMelTol) << d2.str("mel with computed filters");
}

TEST_P(Oracle, LogitsThroughCli) {
  OracleCase c = load_case(GetParam());
  const std::string out = ::testing::TempDir() + "/oracle_logits_" + GetParam() + ".f32";
  const std::string enc = ::testing::TempDir() + "/oracle_enc_" + GetParam() + ".f32";
  auto r = test::run_command(std::string(AMA_CLI_PATH) + " logits -m " + c.dir + "/model.bin --audio " +
                             shared("audio/jfk.wav") + " --tokens " + join(c.tokens) + " --out " + out +
                             " --encoder-out " + enc);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto logits = read_f32(out), ref = read_f32(c.dir + "/logits.f32");
  ASSERT_EQ(logits.size(), ref.size());
  auto d = max_abs_diff(logits, ref);
  EXPECT_LE(d.max_abs, kLogitsTol) << d.str("logits");
  EXPECT_EQ(test::row_argmax(logits, c.n_vocab), test::row_argmax(ref, c.n_vocab));
  auto e = max_abs_diff(read_f32(enc), read_f32(c.dir + "/encoder_out.f32"));
  EXPECT_LE(e.max_abs, kEncoderTol) << e.str("encoder_out");
  std::printf("[oracle %s] encoder_out %s\n[oracle %s] logits %s\n", GetParam().c_str(), e.str().c_str(),
              GetParam().c_str(), d.str().c_str());
}

// The API checks run once per (model, ISA), so that an ISA this CPU lacks
// shows in ctest as a skipped test rather than as a printed line inside a
// passing one (tests/backend_variants.h).

class OracleIsa : public ::testing::TestWithParam<std::tuple<std::string, int>> {
 protected:
  void SetUp() override {
    if (const std::string why = test::variant_unsupported(variant()); !why.empty()) GTEST_SKIP() << why;
  }
  const std::string& model() const { return std::get<0>(GetParam()); }
  int variant() const { return std::get<1>(GetParam()); }
};

std::string oracle_isa_name(const ::testing::TestParamInfo<std::tuple<std::string, int>>& info) {
  return (std::get<0>(info.param) == "micro" ? "micro_" : "micro_en_") + variant_name(std::get<1>(info.param));
}

class OracleApi : public OracleIsa {};       // the real ISAs
class OracleFastPath : public OracleIsa {};  // the real ISAs and the emulated AMX tiles

// The C++ API on one ISA, at 1 and 2 threads.
TEST_P(OracleApi, EncoderAndLogitsThroughApi) {
  OracleCase c = load_case(model());
  auto audio = load_audio(shared("audio/jfk.wav"));
  ASSERT_TRUE(audio.ok()) << audio.message();
  auto ref_enc = read_f32(c.dir + "/encoder_out.f32");
  auto ref_logits = read_f32(c.dir + "/logits.f32");
  auto ref_mel = read_f32(c.dir + "/mel.f32");
  const Isa isa = static_cast<Isa>(variant());
  std::vector<float> first_logits;
  for (int threads : {1, 2}) {
    SCOPED_TRACE(std::string("isa ") + isa_name(isa) + ", threads " + std::to_string(threads));
    CpuBackendOptions bo;
    bo.force_isa = true;
    bo.isa = isa;
    bo.n_threads = threads;
    auto run = run_engine(c, bo, *audio);
    ASSERT_TRUE(run.ok()) << run.message();
    auto dm = max_abs_diff(run->mel, ref_mel);
    EXPECT_LE(dm.max_abs, kMelTol) << dm.str("mel");
    auto de = max_abs_diff(run->encoder_out, ref_enc);
    EXPECT_LE(de.max_abs, kEncoderTol) << de.str("encoder_out");
    auto dl = max_abs_diff(run->logits, ref_logits);
    EXPECT_LE(dl.max_abs, kLogitsTol) << dl.str("logits");
    EXPECT_EQ(test::row_argmax(run->logits, c.n_vocab), test::row_argmax(ref_logits, c.n_vocab));
    if (threads == 1)
      first_logits = run->logits;
    else
      EXPECT_TRUE(first_logits == run->logits) << "results differ between 1 and 2 threads";
  }
}

// The bf16 and int8 fast paths against the oracle's fast-path bar: row
// correlation >= 0.9999, max abs <= 0.25, argmax equal wherever the
// reference's top-1 to top-2 margin exceeds 0.3.
TEST_P(OracleFastPath, FastPathsMeetTheirBar) {
  OracleCase c = load_case(model());
  std::ifstream mf(c.dir + "/meta.json");
  auto meta = nlohmann::json::parse(mf);
  const auto margins = meta["top1_top2_margin"].get<std::vector<double>>();
  auto audio = load_audio(shared("audio/jfk.wav"));
  auto ref = read_f32(c.dir + "/logits.f32");
  const int V = c.n_vocab;
  // The row loops below index ref by row: a missing or short file must stop here.
  ASSERT_EQ(ref.size(), c.tokens.size() * static_cast<size_t>(V)) << c.dir << "/logits.f32";
  for (ComputeType ct : {ComputeType::bf16, ComputeType::int8}) {
    // This instance's ISA, or the AMX kernels on the scalar model of the
    // tiles (OracleIsa::SetUp skips the test where the CPU lacks the ISA).
    {
      const bool emulated = variant() == kAmxEmulated;
      const Isa isa = emulated ? Isa::avx512 : static_cast<Isa>(variant());
      const std::string label = emulated ? std::string("amx (emulated tiles)") : isa_name(isa);
      SCOPED_TRACE(std::string(compute_type_name(ct)) + " on " + label);
      CpuBackendOptions bo;
      bo.force_isa = true;
      bo.isa = isa;
      bo.emulate_amx = emulated;
      bo.compute = ct;
      auto run = run_engine(c, bo, *audio);
      ASSERT_TRUE(run.ok()) << run.message();
      const std::vector<float>* logits = &run->logits;
      auto d = max_abs_diff(*logits, ref);
      EXPECT_LE(d.max_abs, 0.25) << d.str("logits");
      double worst_corr = 1.0;
      const auto am = test::row_argmax(*logits, V), rm = test::row_argmax(ref, V);
      for (size_t r = 0; r < c.tokens.size(); ++r) {
        double mx = 0, my = 0;
        for (int j = 0; j < V; ++j) mx += (*logits)[r * V + j], my += ref[r * V + j];
        mx /= V, my /= V;
        double sxy = 0, sxx = 0, syy = 0;
        for (int j = 0; j < V; ++j) {
          const double a = (*logits)[r * V + j] - mx, b = ref[r * V + j] - my;
          sxy += a * b, sxx += a * a, syy += b * b;
        }
        const double corr = sxy / std::sqrt(sxx * syy);
        worst_corr = std::min(worst_corr, corr);
        EXPECT_GE(corr, 0.9999) << "row " << r;
        if (margins[r] > 0.3) {
          EXPECT_EQ(am[r], rm[r]) << "argmax of row " << r << " (margin " << margins[r] << ")";
        }
      }
      std::printf("[oracle %s] %s on %s: logits %s, worst row correlation %.7f\n", model().c_str(),
                  compute_type_name(ct), label.c_str(), d.str().c_str(), worst_corr);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Micro, Oracle, ::testing::Values("micro", "micro.en"),
                         [](const auto& info) { return info.param == "micro" ? "micro" : "micro_en"; });
INSTANTIATE_TEST_SUITE_P(Micro, OracleApi,
                         ::testing::Combine(::testing::Values("micro", "micro.en"),
                                            ::testing::Values(static_cast<int>(Isa::scalar), static_cast<int>(Isa::avx2),
                                                              static_cast<int>(Isa::avx512), static_cast<int>(Isa::amx))),
                         oracle_isa_name);
INSTANTIATE_TEST_SUITE_P(Micro, OracleFastPath,
                         ::testing::Combine(::testing::Values("micro", "micro.en"),
                                            ::testing::Values(static_cast<int>(Isa::scalar), static_cast<int>(Isa::avx2),
                                                              static_cast<int>(Isa::avx512), static_cast<int>(Isa::amx),
                                                              kAmxEmulated)),
                         oracle_isa_name);

}  // namespace
}  // namespace ama
