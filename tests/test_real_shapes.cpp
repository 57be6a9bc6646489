// The float32 engine against an independent float64 reference
// (reference_whisper.h) at the real tiny and base shapes, and at a small
// custom shape on every ISA. The models are random (model/test_model.h); the
// audio is ../shared/audio/jfk.wav. The reference itself is first checked
// against ../shared/oracle.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "audio/resample.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "decode/transcriber.h"
#include "model/test_model.h"
#include "model/whisper_model.h"
#include "reference_whisper.h"
#include "test_util.h"

namespace ama {
namespace {

using test::max_abs_diff;
using test::RefWhisper;
using test::shared;

// The bar from ../shared/oracle/README.md for the float32 path.
constexpr double kEncoderTol = 2e-3, kLogitsTol = 1e-2;

// <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|> " And so my fellow Americans, ask not"
const std::vector<int> kTokens = {50258, 50259, 50359, 50363, 400, 370, 452, 7177, 6280, 11, 1029, 406};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::vector<int> argmax_rows(const std::vector<double>& x, size_t cols) {
  std::vector<int> r;
  for (size_t row = 0; (row + 1) * cols <= x.size(); ++row) {
    size_t best = 0;
    for (size_t j = 1; j < cols; ++j)
      if (x[row * cols + j] > x[row * cols + best]) best = j;
    r.push_back(static_cast<int>(best));
  }
  return r;
}

// Smallest top-1 minus top-2 gap over the rows of the reference logits.
double min_top2_margin(const std::vector<double>& x, size_t cols) {
  double m = std::numeric_limits<double>::infinity();
  for (size_t row = 0; (row + 1) * cols <= x.size(); ++row) {
    double a = -std::numeric_limits<double>::infinity(), b = a;
    for (size_t j = 0; j < cols; ++j) {
      const double v = x[row * cols + j];
      if (v > a) {
        b = a;
        a = v;
      } else if (v > b) {
        b = v;
      }
    }
    m = std::min(m, a - b);
  }
  return m;
}

// A random model file in the test temp dir, deleted with this object.
struct TempModel {
  std::string path;
  explicit TempModel(std::string p) : path(std::move(p)) {}
  ~TempModel() { std::remove(path.c_str()); }
  TempModel(const TempModel&) = delete;
  TempModel& operator=(const TempModel&) = delete;
};

Status make_model(const HParams& hp, uint64_t seed, const std::string& path) {
  TestModelOptions o;
  o.hp = hp;
  o.seed = seed;
  o.vocab_source = std::string(AMA_SHARED_DIR) + "/models/whisper-vocab/for-tests-ggml-base.bin";
  o.output = path;
  return write_test_model(o);
}

struct EngineOutput {
  std::vector<float> enc, logits;
};

// Runs our engine: mel of jfk.wav with the model's filters, one window, then logits.
void run_engine(const std::string& model_path, const CpuBackendOptions& bo, const std::vector<float>& audio,
                EngineOutput* out, std::vector<float>* mel_out = nullptr, int* ld_out = nullptr) {
  auto be = make_cpu_backend(bo);
  ASSERT_TRUE(be.ok()) << be.message();
  auto model = load_model(model_path, **be);
  ASSERT_TRUE(model.ok()) << model.message();
  LogMel lm((*model)->mel_filters, (*model)->hp.n_mels);
  std::vector<float> mel = lm.compute(audio.data(), audio.size());
  const int ld = LogMel::total_frames(audio.size());
  ASSERT_EQ(mel.size(), static_cast<size_t>((*model)->hp.n_mels) * ld);
  Transcriber t(*model, **be);
  ASSERT_TRUE(t.encode_window(mel.data(), ld).ok());
  auto enc = t.encoder_output();
  ASSERT_TRUE(enc.ok()) << enc.message();
  out->enc = std::move(*enc);
  auto logits = t.logits_for(kTokens);
  ASSERT_TRUE(logits.ok()) << logits.message();
  out->logits = std::move(*logits);
  if (mel_out) *mel_out = std::move(mel);
  if (ld_out) *ld_out = ld;
}

struct ReferenceOutput {
  std::vector<double> enc, logits;
  double encode_seconds = 0, logits_seconds = 0;
};

void run_reference(const std::string& model_path, const std::vector<float>& mel, int ld, ReferenceOutput* out,
                   int* n_vocab) {
  auto ref = RefWhisper::load(model_path);
  ASSERT_TRUE(ref.ok()) << ref.message();
  auto t0 = std::chrono::steady_clock::now();
  out->enc = ref->encode(mel.data(), ld);
  out->encode_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  out->logits = ref->logits(out->enc, kTokens);
  out->logits_seconds = seconds_since(t0);
  *n_vocab = ref->hp.n_vocab;
}

// Checks ours against the reference with the float32 bar and reports the errors.
void compare(const std::string& label, const EngineOutput& ours, const ReferenceOutput& ref, int n_vocab) {
  ASSERT_EQ(ours.enc.size(), ref.enc.size()) << label;
  ASSERT_EQ(ours.logits.size(), ref.logits.size()) << label;
  const test::Diff de = max_abs_diff(ours.enc, ref.enc);
  const test::Diff dl = max_abs_diff(ours.logits, ref.logits);
  EXPECT_LE(de.max_abs, kEncoderTol) << label << ": " << de.str("encoder_out");
  EXPECT_LE(dl.max_abs, kLogitsTol) << label << ": " << dl.str("logits");
  const std::vector<int> ours_top = test::row_argmax(ours.logits, n_vocab), ref_top = argmax_rows(ref.logits, n_vocab);
  EXPECT_EQ(ours_top, ref_top) << label << ": argmax differs from the reference";
  std::printf("[real shapes %s] encoder_out %s\n[real shapes %s] logits %s; argmax %s; reference top-2 margin >= %.3g\n",
              label.c_str(), de.str().c_str(), label.c_str(), dl.str().c_str(),
              ours_top == ref_top ? "equal" : "DIFFERS", min_top2_margin(ref.logits, n_vocab));
  std::string key = label;
  for (char& ch : key)
    if (ch == ' ') ch = '_';
  ::testing::Test::RecordProperty(key + "_encoder_max_abs", fmt(de.max_abs));
  ::testing::Test::RecordProperty(key + "_logits_max_abs", fmt(dl.max_abs));
}

void check_standard_arch(const std::string& arch, uint64_t seed) {
  auto hp = standard_hparams(arch);
  ASSERT_TRUE(hp.ok()) << hp.message();
  TempModel tm(::testing::TempDir() + "/real_shapes_" + arch + ".bin");
  auto st = make_model(*hp, seed, tm.path);
  ASSERT_TRUE(st.ok()) << st.message();
  auto audio = load_audio(shared("audio/jfk.wav"));
  ASSERT_TRUE(audio.ok()) << audio.message();

  EngineOutput ours;
  std::vector<float> mel;
  int ld = 0;
  auto t0 = std::chrono::steady_clock::now();
  run_engine(tm.path, {}, *audio, &ours, &mel, &ld);
  if (::testing::Test::HasFatalFailure()) return;
  const double engine_seconds = seconds_since(t0);

  ReferenceOutput ref;
  int n_vocab = 0;
  run_reference(tm.path, mel, ld, &ref, &n_vocab);
  if (::testing::Test::HasFatalFailure()) return;
  std::printf("[real shapes %s] reference encoder %.2f s, decoder+logits %.2f s; engine (load+mel+encode+logits) %.2f s\n",
              arch.c_str(), ref.encode_seconds, ref.logits_seconds, engine_seconds);
  compare(arch, ours, ref, n_vocab);
}

// The reference GEMM against a plain triple loop, both B layouts, odd sizes.
TEST(RealShapes, ReferenceGemmMatchesNaive) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd;
  struct Case {
    int M, N, K;
  };
  for (Case c : {Case{1, 1, 1}, Case{5, 7, 3}, Case{37, 19, 300}, Case{70, 261, 513}, Case{12, 1000, 64}}) {
    for (bool b_nk : {true, false}) {
      const int lda = c.K + 3, ldb = (b_nk ? c.K : c.N) + 2, ldc = c.N + 1;
      std::vector<double> A(static_cast<size_t>(c.M) * lda), B(static_cast<size_t>(b_nk ? c.N : c.K) * ldb), bias(c.N);
      for (auto& v : A) v = nd(rng);
      for (auto& v : B) v = nd(rng);
      for (auto& v : bias) v = nd(rng);
      std::vector<double> C(static_cast<size_t>(c.M) * ldc, 1e300);
      test::ref_gemm(c.M, c.N, c.K, A.data(), lda, B.data(), ldb, b_nk, bias.data(), C.data(), ldc, 2);
      double worst = 0;
      for (int i = 0; i < c.M; ++i)
        for (int j = 0; j < c.N; ++j) {
          double s = bias[j];
          for (int k = 0; k < c.K; ++k)
            s += A[static_cast<size_t>(i) * lda + k] *
                 (b_nk ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j]);
          worst = std::max(worst, std::fabs(s - C[static_cast<size_t>(i) * ldc + j]));
        }
      // |terms| ~ 1, so K * 2^-52 * sqrt-ish growth stays far below 1e-11.
      EXPECT_LE(worst, 1e-11) << c.M << "x" << c.N << "x" << c.K << (b_nk ? " B[N][K]" : " B[K][N]");
    }
  }
}

// The reference reproduces ../shared/oracle (another float64 implementation)
// up to the float32 rounding of the stored oracle outputs.
TEST(RealShapes, ReferenceMatchesOracle) {
  const std::string dir = shared("oracle/micro");
  std::ifstream f(dir + "/meta.json");
  ASSERT_TRUE(f.good()) << dir;
  const auto meta = nlohmann::json::parse(f);
  const std::vector<int> tokens = meta["tokens"].get<std::vector<int>>();
  auto ref = RefWhisper::load(dir + "/model.bin");
  ASSERT_TRUE(ref.ok()) << ref.message();
  const std::vector<float> mel = test::read_f32(dir + "/mel.f32");
  const int ld = static_cast<int>(mel.size() / ref->hp.n_mels);
  ASSERT_EQ(mel.size(), static_cast<size_t>(ref->hp.n_mels) * ld);
  const std::vector<double> enc = ref->encode(mel.data(), ld);
  const std::vector<double> logits = ref->logits(enc, tokens);
  const std::vector<float> oracle_enc = test::read_f32(dir + "/encoder_out.f32");
  const std::vector<float> oracle_logits = test::read_f32(dir + "/logits.f32");
  ASSERT_EQ(enc.size(), oracle_enc.size());
  ASSERT_EQ(logits.size(), oracle_logits.size());
  // In these reports "ours" is this reference and "reference" the oracle.
  const test::Diff de = max_abs_diff(enc, oracle_enc), dl = max_abs_diff(logits, oracle_logits);
  // float32 storage rounds |x| < 64 by at most 2^-24 * 64 = 3.8e-6; allow for
  // that plus float64 differences in summation order.
  EXPECT_LE(de.max_abs, 1e-5) << de.str("encoder_out (oracle vs reference)");
  EXPECT_LE(dl.max_abs, 1e-5) << dl.str("logits (oracle vs reference)");
  EXPECT_EQ(test::row_argmax(oracle_logits, ref->hp.n_vocab), argmax_rows(logits, ref->hp.n_vocab));
  std::printf("[real shapes] reference vs oracle micro: encoder_out %s\n[real shapes] reference vs oracle micro: logits %s\n",
              de.str().c_str(), dl.str().c_str());
}

// tiny is ~37 GFLOP and base ~90 GFLOP per run of each implementation: seconds
// in an optimized build, many minutes unoptimized under the sanitizers.
constexpr bool kOptimizedBuild =
#ifdef __OPTIMIZE__
    true;
#else
    false;
#endif

TEST(RealShapes, TinyMatchesReference) {
  if (!kOptimizedBuild) GTEST_SKIP() << "real shapes need an optimized build (this one has no -O)";
  check_standard_arch("tiny", 101);
}

TEST(RealShapes, BaseMatchesReference) {
  if (!kOptimizedBuild) GTEST_SKIP() << "real shapes need an optimized build (this one has no -O)";
  check_standard_arch("base", 202);
}

// A small custom shape (64 state, 2 heads, 1 layer each), one test per ISA,
// so that an ISA this CPU lacks shows in ctest as a skipped test rather than
// as a printed line inside a passing one.
class CustomShape : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << "ISA " << isa_name(GetParam()) << " is not supported by this CPU";
  }
};

TEST_P(CustomShape, MatchesReference) {
  const Isa isa = GetParam();
  auto base = standard_hparams("tiny");
  ASSERT_TRUE(base.ok()) << base.message();
  HParams hp = *base;
  hp.n_audio_state = hp.n_text_state = 64;
  hp.n_audio_head = hp.n_text_head = 2;
  hp.n_audio_layer = hp.n_text_layer = 1;
  // One file per instance: ctest may run the instances side by side.
  TempModel tm(::testing::TempDir() + "/real_shapes_custom_" + isa_name(isa) + ".bin");
  auto st = make_model(hp, 303, tm.path);
  ASSERT_TRUE(st.ok()) << st.message();
  auto audio = load_audio(shared("audio/jfk.wav"));
  ASSERT_TRUE(audio.ok()) << audio.message();

  CpuBackendOptions bo;
  bo.force_isa = true;
  bo.isa = isa;
  EngineOutput ours;
  std::vector<float> mel;
  int ld = 0;
  run_engine(tm.path, bo, *audio, &ours, &mel, &ld);
  if (::testing::Test::HasFatalFailure()) return;
  ReferenceOutput ref;
  int n_vocab = 0;
  run_reference(tm.path, mel, ld, &ref, &n_vocab);
  if (::testing::Test::HasFatalFailure()) return;
  compare(std::string("custom64 ") + isa_name(isa), ours, ref, n_vocab);
}

// Named RealShapes/... so that scripts/test.sh's sanitizer run, which leaves
// out 'RealShapes*', still leaves it out.
INSTANTIATE_TEST_SUITE_P(RealShapes, CustomShape, ::testing::Values(Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

}  // namespace
}  // namespace ama
