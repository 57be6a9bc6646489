// Every kernel of every ISA this CPU supports against the plain scalar
// references, at Whisper's real shapes and at awkward ones (one row, odd K,
// N not a multiple of the tile). Tolerances come from the arithmetic:
// u = 2^-24 is float32's unit roundoff, and a length-K dot product
// accumulated in order has error at most K u sum|x_i w_i|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "core/half.h"
#include "test_util.h"

namespace ama {
namespace {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24
using test::kRealRows;

std::vector<float> random_vec(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<Isa> all_isas() { return {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx}; }

class Kernels : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << "ISA " << isa_name(GetParam()) << " is not supported by this CPU";
  }
  std::unique_ptr<Backend> backend(int threads = 2) {
    CpuBackendOptions o;
    o.force_isa = true;
    o.isa = GetParam();
    o.n_threads = threads;
    auto b = make_cpu_backend(o);
    EXPECT_TRUE(b.ok());
    return std::move(b.value());
  }
};

struct GemmShape {
  int m, k, n;
};

// linear() = packed GEMM + bias + optional GELU + optional residual add.
TEST_P(Kernels, LinearMatchesReference) {
  auto be = backend();
  const GemmShape shapes[] = {
      // real (rows: 1500, or 161 under the sanitizers; test_util.h): base encoder, tiny logits
      {kRealRows, 512, 512}, {kRealRows, 512, 2048}, {kRealRows, 2048, 512}, {1, 384, 51865},
      {kRealRows, 240, 384}, {5, 768, 3072},  // conv1 as GEMM (80 x 3), small decode
      {1, 1, 1}, {1, 7, 17}, {7, 33, 31}, {13, 129, 95}, {97, 3, 48}, {6, 64, 16}, {5, 1000, 33}};
  for (const auto& s : shapes) {
    for (int mode = 0; mode < 3; ++mode) {
      if (s.m * static_cast<size_t>(s.n) > 4000000 && mode > 0) continue;  // keep big shapes to one mode
      SCOPED_TRACE("m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) + " n=" + std::to_string(s.n) +
                   " mode=" + std::to_string(mode));
      auto x = random_vec(static_cast<size_t>(s.m) * s.k, 1 + s.k);
      auto w = random_vec(static_cast<size_t>(s.n) * s.k, 2 + s.n, 1.0f / std::sqrt(static_cast<float>(s.k)));
      auto bias = random_vec(s.n, 3);
      auto y = random_vec(static_cast<size_t>(s.m) * s.n, 4);  // residual for mode 2
      const auto y0 = y;
      auto packed = be->pack(w.data(), s.n, s.k);
      const Activation act = mode == 1 ? Activation::gelu : Activation::none;
      be->linear(x.data(), s.m, s.k, *packed, bias.data(), act, mode == 2, y.data(), s.n);
      double worst = 0;
      size_t worst_i = 0;
      double worst_ours = 0, worst_ref = 0;
      bool ok = true;
      // Large shapes: check a spread of rows (first, last, every 37th) to keep
      // the double reference quick; all columns of each are checked.
      std::vector<int> rows;
      for (int i = 0; i < s.m; ++i)
        if (s.m <= 64 || i < 4 || i == s.m - 1 || i % 37 == 0) rows.push_back(i);
      for (int i : rows)
        for (int j = 0; j < s.n; ++j) {
          double dot = 0, mag = 0;
          for (int kk = 0; kk < s.k; ++kk) {
            const double p = static_cast<double>(x[i * s.k + kk]) * w[static_cast<size_t>(j) * s.k + kk];
            dot += p;
            mag += std::fabs(p);
          }
          double pre = dot + bias[j];
          // Bound: the dot product (K u sum|p|), the bias add, then GELU's
          // own few ulps; the residual add adds one more rounding.
          double tol = (s.k + 2) * kU * (mag + std::fabs(bias[j])) + 1e-30;
          double ref = pre;
          if (act == Activation::gelu) {
            ref = 0.5 * pre * (1.0 + std::erf(pre / std::sqrt(2.0)));
            tol = tol * 1.2 + 8 * kU * std::fabs(pre);  // |GELU'| <= 1.13, erf in float
          }
          if (mode == 2) {
            ref += y0[static_cast<size_t>(i) * s.n + j];
            tol += 2 * kU * std::fabs(ref);
          }
          const double got = y[static_cast<size_t>(i) * s.n + j];
          const double err = std::fabs(got - ref);
          if (!(err <= tol)) ok = false;
          if (err / tol > worst) {
            worst = err / tol;
            worst_i = static_cast<size_t>(i) * s.n + j;
            worst_ours = got;
            worst_ref = ref;
          }
        }
      EXPECT_TRUE(ok) << "worst element " << worst_i << " (row " << worst_i / s.n << ", col " << worst_i % s.n
                      << "): ours " << worst_ours << ", reference " << worst_ref << ", error/tolerance " << worst;
    }
  }
}

// bf16, int8 and int10 linear: the reference applies the same input
// rounding (bf16 round-to-nearest-even; per-row affine u8 activations and
// per-channel int8 weights; per-row affine 16-bit activations and
// per-channel 10-bit weights) and then computes exactly in double, so the
// tolerance covers only the kernel's own f32 accumulation.
void check_quantized_linear(CpuBackendOptions o, const std::vector<GemmShape>& shapes) {
  for (ComputeType ct : {ComputeType::bf16, ComputeType::int8, ComputeType::int10}) {
    o.compute = ct;
    auto made = make_cpu_backend(o);
    ASSERT_TRUE(made.ok()) << made.message();
    auto be = std::move(made.value());
    if (o.emulate_amx) {
      // int10 has no AMX tile: the AMX table keeps AVX-512's (m >= 16 runs it here).
      const char* want = ct == ComputeType::int10 ? "isa=amx" : "amx_emulated";
      ASSERT_NE(be->describe().find(want), std::string::npos) << be->describe();
    }
    for (const auto& s : shapes) {
      SCOPED_TRACE(std::string(compute_type_name(ct)) + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) +
                   " n=" + std::to_string(s.n));
      auto x = random_vec(static_cast<size_t>(s.m) * s.k, 11 + s.k);
      for (size_t i = 0; i < x.size(); i += 3) x[i] = std::fabs(x[i]);  // skewed rows, as after GELU
      auto w = random_vec(static_cast<size_t>(s.n) * s.k, 12 + s.n, 1.0f / std::sqrt(static_cast<float>(s.k)));
      auto bias = random_vec(s.n, 13);
      std::vector<float> y(static_cast<size_t>(s.m) * s.n);
      auto packed = be->pack(w.data(), s.n, s.k);
      be->linear(x.data(), s.m, s.k, *packed, bias.data(), Activation::none, false, y.data(), s.n);

      // Quantized copies of the inputs, in double.
      std::vector<double> xq(x.size()), wq(w.size()), xs(s.m, 1.0), xlo(s.m, 0.0), ws(s.n, 1.0);
      if (ct == ComputeType::bf16) {
        for (size_t i = 0; i < x.size(); ++i) xq[i] = bf16_to_f32(f32_to_bf16(x[i]));
        for (size_t i = 0; i < w.size(); ++i) wq[i] = bf16_to_f32(f32_to_bf16(w[i]));
      } else {
        // int8: u8 activations, weights in [-127, 127]; int10: 16-bit
        // activations, weights in [-511, 511].
        const int x_max = ct == ComputeType::int8 ? 255 : 65535, w_max = ct == ComputeType::int8 ? 127 : 511;
        for (int i = 0; i < s.m; ++i) {
          const float* xr = x.data() + static_cast<size_t>(i) * s.k;
          const float lo = *std::min_element(xr, xr + s.k), hi = *std::max_element(xr, xr + s.k);
          const float sc = hi > lo ? (hi - lo) / static_cast<float>(x_max) : 1.0f, inv = 1.0f / sc;
          xs[i] = sc;
          xlo[i] = lo;
          for (int kk = 0; kk < s.k; ++kk)
            xq[static_cast<size_t>(i) * s.k + kk] = std::clamp(static_cast<int>(std::lrint((xr[kk] - lo) * inv)), 0, x_max);
        }
        for (int j = 0; j < s.n; ++j) {
          const float* wr = w.data() + static_cast<size_t>(j) * s.k;
          float mx = 0;
          for (int kk = 0; kk < s.k; ++kk) mx = std::max(mx, std::fabs(wr[kk]));
          const float sc = mx > 0 ? mx / static_cast<float>(w_max) : 1.0f;
          ws[j] = sc;
          for (int kk = 0; kk < s.k; ++kk)
            wq[static_cast<size_t>(j) * s.k + kk] = std::clamp(static_cast<int>(std::lrint(wr[kk] / sc)), -w_max, w_max);
        }
      }
      std::vector<int> rows;
      for (int i = 0; i < s.m; ++i)
        if (s.m <= 64 || i < 4 || i == s.m - 1 || i % 37 == 0) rows.push_back(i);
      double worst = 0;
      size_t worst_i = 0;
      for (int i : rows)
        for (int j = 0; j < s.n; ++j) {
          double dot = 0, mag = 0, colsum = 0;
          for (int kk = 0; kk < s.k; ++kk) {
            const double p = xq[static_cast<size_t>(i) * s.k + kk] * wq[static_cast<size_t>(j) * s.k + kk];
            dot += p;
            mag += std::fabs(p);
            colsum += wq[static_cast<size_t>(j) * s.k + kk];
          }
          double ref, tol;
          if (ct == ComputeType::bf16) {
            ref = dot + bias[j];
            tol = (s.k + 2) * kU * (mag + std::fabs(bias[j]));
          } else if (ct == ComputeType::int8) {
            // Integer dot products are exact; the float epilogue rounds a few times.
            const double a = xs[i] * dot, b = xlo[i] * colsum;
            ref = ws[j] * (a + b) + bias[j];
            tol = 6 * kU * (ws[j] * (std::fabs(a) + std::fabs(b)) + std::fabs(bias[j]));
          } else {
            // The two digits' exact sums are combined in float as 256 hi + lo:
            // two more roundings, each within u of sum |x w| (256 |hi| <= it).
            const double a = xs[i] * dot, b = xlo[i] * colsum;
            ref = ws[j] * (a + b) + bias[j];
            tol = 8 * kU * (ws[j] * (xs[i] * mag + std::fabs(b)) + std::fabs(bias[j]));
          }
          const double err = std::fabs(y[static_cast<size_t>(i) * s.n + j] - ref);
          if (err / (tol + 1e-30) > worst) worst = err / (tol + 1e-30), worst_i = static_cast<size_t>(i) * s.n + j;
        }
      EXPECT_LE(worst, 1.0) << "worst element " << worst_i << " (row " << worst_i / s.n << ", col " << worst_i % s.n
                            << "): ours " << y[worst_i] << ", error/tolerance " << worst;
    }
  }
}

TEST_P(Kernels, QuantizedLinearMatchesReference) {
  CpuBackendOptions o;
  o.force_isa = true;
  o.isa = GetParam();
  check_quantized_linear(o, {{kRealRows, 512, 2048}, {1, 512, 51865}, {5, 384, 1536}, {1, 1, 1}, {1, 7, 17}, {7, 33, 31},
                             {13, 129, 95}, {6, 64, 16}, {97, 3, 48}, {5, 1001, 33}, {40, 240, 384}});
}

// The AMX kernels' tiling and data layout, with the tile instructions
// replaced by a scalar model of their semantics: runs on any AVX-512 CPU,
// so the AMX code is checked even where the hardware is missing. Shapes
// with 16 or more rows reach the AMX tiles; tails in every dimension.
TEST(AmxEmulation, QuantizedLinearMatchesReference) {
  if (!isa_supported(Isa::avx512)) GTEST_SKIP() << "AMX emulation needs the AVX-512 kernels";
  CpuBackendOptions o;
  o.emulate_amx = true;
  check_quantized_linear(o, {{16, 32, 16}, {32, 64, 32}, {33, 40, 17}, {100, 129, 95}, {97, 512, 48}, {200, 70, 33}});
}

// Attention over bf16 K/V against f32 K/V holding the same (rounded) values.
TEST_P(Kernels, Bf16KvAttentionMatchesF32) {
  auto be = backend();
  const int n_kv = 1500, n_head = 8, d = 64, w = n_head * d;
  auto q = random_vec(static_cast<size_t>(5) * w, 21), kv = random_vec(static_cast<size_t>(n_kv) * w, 22);
  std::vector<uint16_t> kv16(kv.size());
  for (size_t i = 0; i < kv.size(); ++i) kv16[i] = f32_to_bf16(kv[i]), kv[i] = bf16_to_f32(kv16[i]);
  std::vector<float> a(static_cast<size_t>(5) * w), b(a.size());
  for (bool causal : {false, true}) {
    const int pos0 = causal ? 100 : 0, nk = causal ? 105 : n_kv;
    be->attention(q.data(), 5, w, kv.data(), kv.data(), nk, w, n_head, d, causal, pos0, a.data(), w);
    be->attention_bf16kv(q.data(), 5, w, kv16.data(), kv16.data(), nk, w, n_head, d, causal, pos0, b.data(), w);
    auto diff = test::max_abs_diff(b, a);
    EXPECT_LE(diff.max_abs, 1e-6) << diff.str("bf16 kv attention");  // same values; only the load path differs
  }
}

TEST_P(Kernels, RowOpsMatchReference) {
  const cpu::KernelTable& k = cpu::kernel_table(GetParam());
  for (int n : {1, 3, 15, 16, 17, 64, 384, 512, 1280, 1500, 2048, 51865}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    auto a = random_vec(n, 10 + n, 3.0f), b = random_vec(n, 20 + n);
    // dot: K u sum|a b| (here plus the pairwise combine of 16 partial sums).
    double mag = 0;
    for (int i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(a[i]) * b[i]);
    EXPECT_NEAR(k.dot(a.data(), b.data(), n), cpu::ref::dot(a.data(), b.data(), n), (n + 4) * kU * mag + 1e-30);

    // layer norm: inputs with a large mean, as residual streams have.
    auto x = random_vec(n, 30 + n, 2.0f);
    for (auto& v : x) v += 5.0f;
    auto g = random_vec(n, 40 + n, 0.1f), be = random_vec(n, 50 + n, 0.1f);
    for (auto& v : g) v += 1.0f;
    std::vector<float> y(n), yr(n);
    k.layer_norm(x.data(), n, g.data(), be.data(), 1e-5f, y.data());
    cpu::ref::layer_norm(x.data(), n, g.data(), be.data(), 1e-5f, yr.data());
    if (n > 1) {
      // Mean and variance each carry ~n u relative error in float; the
      // normalized value (x - mean) / std inherits about 2 n u (|x|/std + 1).
      auto d = test::max_abs_diff(y, yr);
      EXPECT_LE(d.max_abs, 2.0 * (n + 8) * kU * (7.0 / 2.0 + 1.0) * 1.2 + 1e-6) << d.str("layer_norm");
    }

    // GELU against the exact erf form: a few ulps of |x| (issue: within 1e-6 of it for unit inputs).
    std::vector<float> gx = a;
    k.gelu(gx.data(), n);
    for (int i = 0; i < n; ++i)
      ASSERT_NEAR(gx[i], cpu::ref::gelu(a[i]), 8 * kU * std::fabs(a[i]) + 1e-7) << "gelu at element " << i << " x=" << a[i];

    // softmax: n + 4 roundings relative to each probability.
    std::vector<float> s = a, sr = a;
    k.softmax(s.data(), n);
    cpu::ref::softmax(sr.data(), n);
    for (int i = 0; i < n; ++i)
      ASSERT_NEAR(s[i], sr[i], (n + 8) * kU * sr[i] + 1e-38) << "softmax at element " << i;
  }
}

// The activation conversions of the GEMMs (bf16 rounding; the integer
// GEMMs' quantizers, u8 and 16 bits as two u8 digits) give every ISA the
// portable kernel's bits, scale and offset: the integer products are exact,
// so equal codes mean equal GEMM results everywhere. Rows of every tail length around a vector, Whisper's widths,
// exact ties (x - lo = k + 1/2 steps: round half to even), and rows holding
// NaN or infinities.
TEST_P(Kernels, RowConversionsMatchThePortableRule) {
  const cpu::KernelTable& k = cpu::kernel_table(GetParam());
  const cpu::KernelTable& scalar = cpu::kernel_table(Isa::scalar);
  std::vector<std::vector<float>> rows;
  for (int n : {1, 2, 15, 16, 17, 31, 33, 240, 512, 1536, 2048, 2051}) {
    rows.push_back(random_vec(n, 70 + n, 1.5f));
    for (float& v : rows.back()) v += 0.3f;  // rows off centre, as after LayerNorm's beta
  }
  std::vector<float> ties;
  for (int i = 0; i <= 255; ++i) ties.push_back(static_cast<float>(i) + (i % 3 == 0 ? 0.0f : 0.5f));
  rows.push_back(ties);  // lo 0, hi 255: a step of exactly 1
  for (float special : {NAN, INFINITY, -INFINITY}) {
    auto r = random_vec(37, 7, 1.0f);
    r[5] = special;
    rows.push_back(r);
    r[0] = special;  // first: the min/max scan starts from it
    rows.push_back(r);
  }
  rows.push_back(std::vector<float>(19, 3.25f));  // constant: scale 1
  // bf16 ties (half way between two bf16 values: to the even one), a
  // denormal, the largest float (rounds to inf), and a signalling NaN.
  rows.push_back({1.00390625f, 1.01171875f, -1.00390625f, 1e-40f, -1e-40f, 3.4028235e38f, 0.0f, -0.0f,
                  std::numeric_limits<float>::signaling_NaN(), 2.0f, 1.0f, 5.0f, 7.0f, 9.0f, 11.0f, 13.0f, 15.0f});
  for (size_t t = 0; t < rows.size(); ++t) {
    const std::vector<float>& x = rows[t];
    const int n = static_cast<int>(x.size());
    SCOPED_TRACE("row " + std::to_string(t) + ", n=" + std::to_string(n));
    std::vector<uint8_t> got(n), want(n), got_lo(n), want_lo(n);
    float gs, gl, ws, wl;
    k.quantize_u8_row(x.data(), n, got.data(), &gs, &gl);
    scalar.quantize_u8_row(x.data(), n, want.data(), &ws, &wl);
    EXPECT_EQ(std::memcmp(&gs, &ws, 4), 0) << "u8 scale " << gs << " against " << ws;
    EXPECT_EQ(std::memcmp(&gl, &wl, 4), 0) << "u8 offset " << gl << " against " << wl;
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(got[i], want[i]) << "u8 element " << i << " of " << n << " (x = " << x[i] << ")";
    std::vector<uint16_t> b16(n), want16(n);
    k.to_bf16_row(x.data(), n, b16.data());
    scalar.to_bf16_row(x.data(), n, want16.data());
    for (int i = 0; i < n; ++i) ASSERT_EQ(b16[i], want16[i]) << "bf16 element " << i << " of " << n << " (x = " << x[i] << ")";
    k.quantize_u16_row(x.data(), n, got.data(), got_lo.data(), &gs, &gl);
    scalar.quantize_u16_row(x.data(), n, want.data(), want_lo.data(), &ws, &wl);
    EXPECT_EQ(std::memcmp(&gs, &ws, 4), 0) << "u16 scale " << gs << " against " << ws;
    EXPECT_EQ(std::memcmp(&gl, &wl, 4), 0) << "u16 offset " << gl << " against " << wl;
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(256 * got[i] + got_lo[i], 256 * want[i] + want_lo[i]) << "u16 element " << i << " of " << n << " (x = " << x[i] << ")";
  }
  // The tie row's codes are the rule's: half steps to the even neighbour.
  std::vector<uint8_t> q(ties.size());
  float sc, lo;
  k.quantize_u8_row(ties.data(), static_cast<int>(ties.size()), q.data(), &sc, &lo);
  for (int i = 0; i <= 255; ++i) {
    const int want = i % 3 == 0 ? i : (i % 2 == 0 ? i : i + 1);
    ASSERT_EQ(q[i], want) << "tie at x = " << ties[i];
  }
}

// The cheaper GELU for 8-bit outputs (Act::gelu_q8), on every ISA.
// 1. Its formula (cpu::ref::gelu_q8, in double) is within 7.9e-5 of the erf
//    form everywhere: on a grid 16x finer than the fit's, over the range
//    where the fitted polynomial would turn back without the clamp, and far
//    out, where the clamp holds sigma at 1 - 8e-15 or 8e-15.
// 2. Each ISA's kernel is within 2^-13 |y| + 1e-6 |x| of the formula
//    (vrcp14ps: 2^-14 relative; the degree-5 2^f: 2.4e-6 relative on e^-t,
//    which moves sigma by at most a quarter of that; the f32 argument:
//    ~4 ulps of |t| <= 33, times sigma (1 - sigma) |t| <= 0.23), and the
//    specials: inf -> inf, NaN -> NaN, -0 -> -0, and -inf -> -inf
//    (x / (1 + e^32.5): the clamped formula, where erf's gives NaN).
TEST_P(Kernels, GeluQ8WithinItsBoundOfGelu) {
  const cpu::KernelTable& k = cpu::kernel_table(GetParam());
  double worst_fit = 0, worst_fit_x = 0;
  for (int i = -200000; i <= 200000; ++i) {  // [-15, 15] at steps of 7.5e-5
    const float x = static_cast<float>(i) * 7.5e-5f;
    const double fit = std::fabs(static_cast<double>(cpu::ref::gelu_q8(x)) - cpu::ref::gelu(x));
    if (fit > worst_fit) worst_fit = fit, worst_fit_x = x;
  }
  EXPECT_LE(worst_fit, 7.9e-5) << "worst at x=" << worst_fit_x;
  std::vector<float> x;
  for (int i = -1500; i <= 1500; ++i) x.push_back(static_cast<float>(i) * 0.01f);
  for (float v : {1e-30f, -1e-30f, 1e-8f, -1e-8f, 30.0f, -30.0f, 1e6f, -1e6f, 3e38f, -3e38f}) x.push_back(v);
  for (float v : {30.0f, 1e6f, 3e38f}) EXPECT_EQ(cpu::ref::gelu_q8(v), v);
  for (float v : {-30.0f, -1e6f}) EXPECT_LT(std::fabs(cpu::ref::gelu_q8(v)), 1e-13f * std::fabs(v));
  const std::vector<float> special = {INFINITY, -INFINITY, NAN, -0.0f, 0.0f};
  x.insert(x.end(), special.begin(), special.end());
  // Lengths with a vector tail, and one element.
  for (size_t n : {x.size(), x.size() - 3, size_t{1}}) {
    std::vector<float> y(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(n));
    const std::vector<float> in = y;
    k.gelu_q8(y.data(), static_cast<int>(n));
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; ++i) {
      const float want = cpu::ref::gelu_q8(in[i]);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(y[i])) << "gelu_q8(" << in[i] << ") = " << y[i] << ", want NaN";
      } else if (std::isinf(want) || want == 0.0f) {
        EXPECT_EQ(y[i], want) << "gelu_q8(" << in[i] << ")";
        EXPECT_EQ(std::signbit(y[i]), std::signbit(want)) << "gelu_q8(" << in[i] << ")";
      } else {
        const double tol = std::ldexp(std::fabs(want), -13) + 1e-6 * std::fabs(in[i]);
        const double err = std::fabs(static_cast<double>(y[i]) - want) / tol;
        if (err > worst) worst = err, worst_i = i;
      }
    }
    EXPECT_LE(worst, 1.0) << "n=" << n << ": worst at x=" << in[worst_i] << ": " << y[worst_i] << " against "
                          << cpu::ref::gelu_q8(in[worst_i]) << " (error / tolerance " << worst << ")";
  }
}

// Attention against a double reference: encoder shape (1500 x 1500 per
// head, base), decoder causal steps, and cross-attention.
// GELU over its whole range, tails included (erf reaches 1 in float at
// |x| = 5.6), and at the special values, on every ISA: within a few ulps
// of |x| of the exact erf form, and inf, -inf, NaN and -0 as the formula
// gives them (GELU(-inf) = -inf * 0 = NaN).
TEST_P(Kernels, GeluOverItsWholeRange) {
  const cpu::KernelTable& k = cpu::kernel_table(GetParam());
  std::vector<float> x;
  for (int i = -1200; i <= 1200; ++i) x.push_back(static_cast<float>(i) * 0.01f);
  for (float v : {1e-30f, -1e-30f, 1e-8f, -1e-8f, 30.0f, -30.0f, 1e6f, -1e6f, 3e38f, -3e38f}) x.push_back(v);
  const std::vector<float> special = {INFINITY, -INFINITY, NAN, -0.0f, 0.0f};
  x.insert(x.end(), special.begin(), special.end());
  std::vector<float> y = x;
  k.gelu(y.data(), static_cast<int>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = cpu::ref::gelu(x[i]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(y[i])) << "gelu(" << x[i] << ") = " << y[i] << ", want NaN";
    } else if (std::isinf(want)) {
      EXPECT_EQ(y[i], want) << "gelu(" << x[i] << ")";
    } else {
      ASSERT_NEAR(y[i], want, 8 * kU * std::fabs(x[i]) + 1e-7) << "gelu at x=" << x[i];
    }
  }
}

// exp_sum (x = exp(x - sub), returning the sum: the softmax rows of the
// attention) over its range and at every tail length, on every ISA: each
// value within 4 ulps of exp in double (the polynomial's 2 plus the
// subtraction's and the scaling's roundings), exactly 0 below -87.3 and at
// -inf, NaN kept, and the sum within (n + 8) u of the values' exact sum.
TEST_P(Kernels, ExpSumOverItsRangeAndTails) {
  const cpu::KernelTable& k = cpu::kernel_table(GetParam());
  std::vector<float> base;
  for (int i = -900; i <= 800; ++i) base.push_back(static_cast<float>(i) * 0.1f);  // sums stay below FLT_MAX
  for (int n : {1, 7, 8, 15, 16, 17, 31, 33, 1500}) {
    for (int off = 0; off + n <= static_cast<int>(base.size()); off += 97) {
      std::vector<float> x(base.begin() + off, base.begin() + off + n), y = x;
      const float sub = 0.5f;
      const float sum = k.exp_sum(y.data(), n, sub);
      double exact = 0;
      for (int i = 0; i < n; ++i) {
        const double want = std::exp(static_cast<double>(x[i] - sub));
        if (x[i] - sub < -87.3f)
          ASSERT_EQ(y[i], 0.0f) << "n=" << n << " exp(" << x[i] << " - 0.5)";
        else
          ASSERT_NEAR(y[i], want, 4 * kU * want) << "n=" << n << " element " << i << ": exp(" << x[i] << " - 0.5)";
        exact += y[i];
      }
      ASSERT_NEAR(sum, exact, (n + 8) * kU * exact) << "n=" << n << " offset " << off;
    }
  }
  // The special values, at every lane position of a 17-element row.
  for (int at = 0; at < 17; ++at) {
    for (float v : {-INFINITY, NAN, -1e30f}) {
      std::vector<float> y(17, 0.0f);
      y[at] = v;
      const float sum = k.exp_sum(y.data(), 17, 0.0f);
      for (int i = 0; i < 17; ++i) {
        if (i != at) {
          ASSERT_NEAR(y[i], 1.0f, 2 * kU) << "element " << i << " beside " << v << " at " << at;
        } else if (std::isnan(v)) {
          EXPECT_TRUE(std::isnan(y[i])) << "exp(NaN) at " << at << " = " << y[i];
          EXPECT_TRUE(std::isnan(sum)) << "sum with a NaN at " << at;
        } else {
          EXPECT_EQ(y[i], 0.0f) << "exp(" << v << ") at " << at;
          EXPECT_NEAR(sum, 16.0f, 32 * kU) << "sum with " << v << " at " << at;
        }
      }
    }
  }
}

TEST_P(Kernels, AttentionMatchesReference) {
  auto be = backend();
  struct Case {
    int n_q, n_kv, n_head, d_head;
    bool causal;
    int q_pos0;
  };
  const Case cases[] = {{1500, 1500, 2, 64, false, 0}, {1, 1500, 8, 64, false, 0}, {5, 5, 6, 64, true, 0},
                        {1, 37, 8, 64, true, 36},     {3, 10, 3, 5, true, 7},       {7, 1, 1, 1, false, 0},
                        // one-query rows at every head size with a register variant (16 keys at a time, then a tail)
                        {2, 300, 2, 128, false, 0},   {1, 77, 3, 80, true, 76},     {2, 50, 2, 32, false, 0},
                        {1, 33, 4, 16, false, 0},     {1, 40, 1, 96, false, 0}};
  for (const auto& c : cases) {
    SCOPED_TRACE("n_q=" + std::to_string(c.n_q) + " n_kv=" + std::to_string(c.n_kv));
    const int w = c.n_head * c.d_head;
    auto q = random_vec(static_cast<size_t>(c.n_q) * w, 1, 1.0f);
    auto kk = random_vec(static_cast<size_t>(c.n_kv) * w, 2, 1.0f);
    auto v = random_vec(static_cast<size_t>(c.n_kv) * w, 3, 1.0f);
    std::vector<float> out(static_cast<size_t>(c.n_q) * w);
    be->attention(q.data(), c.n_q, w, kk.data(), v.data(), c.n_kv, w, c.n_head, c.d_head, c.causal, c.q_pos0,
                  out.data(), w);
    double worst = 0;
    for (int h = 0; h < c.n_head; ++h)
      for (int i = 0; i < c.n_q; ++i) {
        const int vis = c.causal ? c.q_pos0 + i + 1 : c.n_kv;
        std::vector<double> p(vis);
        double mx = -INFINITY, max_ds = 0, vmax = 0;
        const double scale = 1.0 / std::sqrt(static_cast<double>(c.d_head));
        for (int j = 0; j < vis; ++j) {
          double s = 0, mag = 0;
          for (int d = 0; d < c.d_head; ++d) {
            const double t = static_cast<double>(q[i * w + h * c.d_head + d]) * kk[j * w + h * c.d_head + d];
            s += t;
            mag += std::fabs(t);
          }
          p[j] = s * scale;
          max_ds = std::max(max_ds, (c.d_head + 4) * kU * mag * scale);
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (auto& x : p) sum += x = std::exp(x - mx);
        for (int d = 0; d < c.d_head; ++d) {
          double o = 0;
          for (int j = 0; j < vis; ++j) {
            o += p[j] / sum * v[j * w + h * c.d_head + d];
            vmax = std::max(vmax, std::fabs(static_cast<double>(v[j * w + h * c.d_head + d])));
          }
          // Score errors ds change each weight by a factor exp(+-2 ds); the
          // weighted sum and the normalisation add (n_kv + 8) u.
          const double tol = (2.5 * max_ds + (vis + 8) * kU) * vmax + 1e-30;
          const double got = out[i * w + h * c.d_head + d];
          ASSERT_NEAR(got, o, tol) << "head " << h << " query " << i << " dim " << d;
          worst = std::max(worst, std::fabs(got - o));
        }
      }
  }
}

// Encoder attention on the bf16 tiles (compute bf16/int8): Q, K, P and V are
// rounded to bf16 (relative 2^-9 each). A score s = q.k / sqrt(d) moves by
// about 2^-8 (|s| + max|s|) in the exponent, which changes each weight by that
// factor, and the rounding of P and V adds 2^-8: the output error is below
// (2^-7 (max|s| + 1) + 2^-8) max|v|.
struct FlashCase {
  int n, n_head, d_head;
};

void check_bf16_flash(CpuBackendOptions o, const std::vector<FlashCase>& cases) {
  o.compute = ComputeType::bf16;
  auto be = std::move(make_cpu_backend(o).value());
  for (const FlashCase& c : cases) {
    SCOPED_TRACE("n=" + std::to_string(c.n) + " d=" + std::to_string(c.d_head));
    const int w = c.n_head * c.d_head;
    auto q = random_vec(static_cast<size_t>(c.n) * w, 31), k = random_vec(q.size(), 32), v = random_vec(q.size(), 33);
    std::vector<float> out(q.size());
    be->attention(q.data(), c.n, w, k.data(), v.data(), c.n, w, c.n_head, c.d_head, false, 0, out.data(), w);
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d_head));
    double vmax = 0;
    for (float x : v) vmax = std::max(vmax, std::fabs(static_cast<double>(x)));
    for (int h = 0; h < c.n_head; ++h)
      for (int i = 0; i < c.n; i += std::max(1, c.n / 16)) {
        std::vector<double> p(c.n);
        double mx = -INFINITY, smax = 0, sum = 0;
        for (int j = 0; j < c.n; ++j) {
          double t = 0;
          for (int e = 0; e < c.d_head; ++e) t += static_cast<double>(q[i * w + h * c.d_head + e]) * k[j * w + h * c.d_head + e];
          p[j] = t * scale;
          mx = std::max(mx, p[j]);
          smax = std::max(smax, std::fabs(p[j]));
        }
        for (auto& x : p) sum += x = std::exp(x - mx);
        const double tol = (std::ldexp(1.0, -7) * (smax + 1) + std::ldexp(1.0, -8)) * vmax;
        for (int e = 0; e < c.d_head; ++e) {
          double ref = 0;
          for (int j = 0; j < c.n; ++j) ref += p[j] / sum * v[j * w + h * c.d_head + e];
          ASSERT_NEAR(out[i * w + h * c.d_head + e], ref, tol) << "head " << h << " query " << i << " dim " << e;
        }
      }
  }
}

TEST_P(Kernels, Bf16FlashAttentionMatchesReference) {
  CpuBackendOptions o;
  o.force_isa = true;
  o.isa = GetParam();
  check_bf16_flash(o, {{1500, 2, 64}, {40, 3, 32}, {77, 1, 80}});
}

TEST(AmxEmulation, Bf16FlashAttentionMatchesReference) {
  if (!isa_supported(Isa::avx512)) GTEST_SKIP() << "AMX emulation needs the AVX-512 kernels";
  CpuBackendOptions o;
  o.emulate_amx = true;
  check_bf16_flash(o, {{40, 3, 32}, {77, 1, 80}, {129, 2, 64}});
}

// Work splitting never changes a result, at any compute type.
TEST_P(Kernels, IdenticalAtOneAndTwoThreads) {
  const int m = 301, k = 77, n = 197;
  auto x = random_vec(static_cast<size_t>(m) * k, 5), w = random_vec(static_cast<size_t>(n) * k, 6);
  for (ComputeType ct : {ComputeType::f32, ComputeType::bf16, ComputeType::int8, ComputeType::int10}) {
    SCOPED_TRACE(compute_type_name(ct));
    std::vector<float> y[2];
    for (int threads : {1, 2}) {
      CpuBackendOptions o;
      o.force_isa = true;
      o.isa = GetParam();
      o.n_threads = threads;
      o.compute = ct;
      auto be = std::move(make_cpu_backend(o).value());
      y[threads - 1].resize(static_cast<size_t>(m) * n);
      be->linear(x.data(), m, k, *be->pack(w.data(), n, k), nullptr, Activation::gelu, false, y[threads - 1].data(), n);
    }
    EXPECT_TRUE(y[0] == y[1]);
  }
  auto b1 = backend(1), b2 = backend(2);
  std::vector<float> a1(static_cast<size_t>(m) * 128), a2(a1.size());
  auto q = random_vec(a1.size(), 7), kv = random_vec(a1.size(), 8);
  for (bool causal : {true, false}) {
    b1->attention(q.data(), m, 128, kv.data(), kv.data(), m, 128, 2, 64, causal, 0, a1.data(), 128);
    b2->attention(q.data(), m, 128, kv.data(), kv.data(), m, 128, 2, 64, causal, 0, a2.data(), 128);
    EXPECT_TRUE(a1 == a2);
  }
  // Decoder steps (1 and 5 queries): with 2 threads the heads are split
  // into groups (6 heads: 3 + 3), with 1 they run in one call.
  const int heads = 6, wd = heads * 64, n_kv = 300;
  auto q6 = random_vec(static_cast<size_t>(5) * wd, 9), kv6 = random_vec(static_cast<size_t>(n_kv) * wd, 10);
  std::vector<uint16_t> kv16(kv6.size());
  for (size_t i = 0; i < kv6.size(); ++i) kv16[i] = f32_to_bf16(kv6[i]);
  for (int n_q : {1, 5}) {
    SCOPED_TRACE("decoder step attention, n_q=" + std::to_string(n_q));
    std::vector<float> o1(static_cast<size_t>(n_q) * wd), o2(o1.size());
    b1->attention(q6.data(), n_q, wd, kv6.data(), kv6.data(), n_kv, wd, heads, 64, false, 0, o1.data(), wd);
    b2->attention(q6.data(), n_q, wd, kv6.data(), kv6.data(), n_kv, wd, heads, 64, false, 0, o2.data(), wd);
    EXPECT_TRUE(o1 == o2);
    b1->attention_bf16kv(q6.data(), n_q, wd, kv16.data(), kv16.data(), n_kv, wd, heads, 64, true, n_kv - n_q, o1.data(), wd);
    b2->attention_bf16kv(q6.data(), n_q, wd, kv16.data(), kv16.data(), n_kv, wd, heads, 64, true, n_kv - n_q, o2.data(), wd);
    EXPECT_TRUE(o1 == o2);
  }
}

// The one-head row kernels (attend_row_*, used by the benchmarks) against the
// several-head partial-softmax ones that attention() runs, normalized here:
// the same weighted sums up to the order of the additions, (n + 8) u max|v|
// each. And m and l against their definitions.
TEST_P(Kernels, AttendRowMatchesAttendHeads) {
  const cpu::KernelTable& kt = cpu::kernel_table(GetParam());
  for (int d : {64, 80, 128, 5}) {
    for (int n : {1, 15, 16, 77, 256}) {
      SCOPED_TRACE("d=" + std::to_string(d) + " n=" + std::to_string(n));
      const int heads = 3, w = heads * d;
      auto q = random_vec(w, 31 + n), k = random_vec(static_cast<size_t>(n) * w, 32 + n),
           v = random_vec(static_cast<size_t>(n) * w, 33 + n);
      std::vector<uint16_t> k16(k.size()), v16(v.size());
      for (size_t i = 0; i < k.size(); ++i) k16[i] = f32_to_bf16(k[i]), v16[i] = f32_to_bf16(v[i]);
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      for (bool bf16 : {false, true}) {
        SCOPED_TRACE(bf16 ? "bf16 K/V" : "f32 K/V");
        std::vector<float> kr(k.size()), vr(v.size());  // the values the kernels see
        for (size_t i = 0; i < k.size(); ++i)
          kr[i] = bf16 ? bf16_to_f32(k16[i]) : k[i], vr[i] = bf16 ? bf16_to_f32(v16[i]) : v[i];
        double vmax = 0;
        for (float x : vr) vmax = std::max(vmax, std::fabs(static_cast<double>(x)));
        std::vector<float> scratch(static_cast<size_t>(heads) * n), rows(w), all(w), m(heads), l(heads);
        for (int h = 0; h < heads; ++h) {
          if (bf16)
            kt.attend_row_bf16(q.data() + h * d, k16.data() + h * d, v16.data() + h * d, n, w, d, scale,
                               scratch.data(), rows.data() + h * d);
          else
            kt.attend_row_f32(q.data() + h * d, k.data() + h * d, v.data() + h * d, n, w, d, scale, scratch.data(),
                              rows.data() + h * d);
        }
        if (bf16)
          kt.attend_heads_bf16(q.data(), k16.data(), v16.data(), n, w, heads, d, scale, scratch.data(), m.data(),
                               l.data(), all.data());
        else
          kt.attend_heads_f32(q.data(), k.data(), v.data(), n, w, heads, d, scale, scratch.data(), m.data(), l.data(),
                              all.data());
        for (int h = 0; h < heads; ++h) {
          double smax = -INFINITY, mag = 0;
          std::vector<double> sc(n);
          for (int j = 0; j < n; ++j) {
            double s = 0, sm = 0;
            for (int c = 0; c < d; ++c) {
              const double t = static_cast<double>(q[h * d + c]) * kr[static_cast<size_t>(j) * w + h * d + c];
              s += t;
              sm += std::fabs(t);
            }
            sc[j] = s * scale;
            smax = std::max(smax, sc[j]);
            mag = std::max(mag, sm * scale);
          }
          double lsum = 0;
          for (int j = 0; j < n; ++j) lsum += std::exp(sc[j] - smax);
          const double ds = (d + 4) * kU * mag;  // score error
          ASSERT_NEAR(m[h], smax, ds) << "max score of head " << h;
          ASSERT_NEAR(l[h], lsum, (2.5 * ds + (n + 8) * kU) * lsum) << "softmax sum of head " << h;
          for (int c = 0; c < d; ++c)
            ASSERT_NEAR(rows[h * d + c], all[h * d + c] / l[h], 2.0 * (n + 8) * kU * vmax)
                << "head " << h << " column " << c;
        }
      }
    }
  }
}

// A batched decoder step's cross-attention gives each sequence what it gets
// alone (same keys, 5 queries in one call against 5 calls of 1), at any
// thread count.
TEST_P(Kernels, AttentionRowsAreBatchInvariant) {
  auto be = backend();
  const int n_kv = 1500, heads = 8, w = heads * 64, n_q = 5;
  auto q = random_vec(static_cast<size_t>(n_q) * w, 41), kv = random_vec(static_cast<size_t>(n_kv) * w, 42);
  std::vector<uint16_t> kv16(kv.size());
  for (size_t i = 0; i < kv.size(); ++i) kv16[i] = f32_to_bf16(kv[i]);
  std::vector<float> batch(q.size()), one(q.size());
  be->attention_bf16kv(q.data(), n_q, w, kv16.data(), kv16.data(), n_kv, w, heads, 64, false, 0, batch.data(), w);
  for (int i = 0; i < n_q; ++i)
    be->attention_bf16kv(q.data() + static_cast<size_t>(i) * w, 1, w, kv16.data(), kv16.data(), n_kv, w, heads, 64,
                         false, 0, one.data() + static_cast<size_t>(i) * w, w);
  EXPECT_TRUE(batch == one);
  be->attention(q.data(), n_q, w, kv.data(), kv.data(), n_kv, w, heads, 64, false, 0, batch.data(), w);
  for (int i = 0; i < n_q; ++i)
    be->attention(q.data() + static_cast<size_t>(i) * w, 1, w, kv.data(), kv.data(), n_kv, w, heads, 64, false, 0,
                  one.data() + static_cast<size_t>(i) * w, w);
  EXPECT_TRUE(batch == one);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, Kernels, ::testing::ValuesIn(all_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

// A PackedMatrix this backend did not pack (another backend's, or a kind it
// does not know) must stop linear() with the op-check report (op_checks.h:
// report and abort), never be cast to one of the backend's own layouts.
class ForeignPackedMatrix final : public PackedMatrix {};

TEST(CpuBackendDeathTest, LinearRejectsAForeignPackedMatrix) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the backend owns a thread pool
  for (ComputeType ct : {ComputeType::f32, ComputeType::bf16, ComputeType::int8}) {
    SCOPED_TRACE(compute_type_name(ct));
    CpuBackendOptions o;
    o.compute = ct;
    o.n_threads = 2;
    auto made = make_cpu_backend(o);
    ASSERT_TRUE(made.ok()) << made.message();
    auto be = std::move(made.value());
    ForeignPackedMatrix foreign;
    foreign.n_out = 4;
    foreign.n_in = 8;
    std::vector<float> x(8, 1.0f), y(4, 0.0f);
    EXPECT_DEATH(be->linear(x.data(), 1, 8, foreign, nullptr, Activation::none, false, y.data(), 4),
                 "internal check failed.*not packed by this CPU backend");
    // The same call with the backend's own packing runs (the check is not
    // simply always failing).
    std::vector<float> w(32, 0.5f);
    be->linear(x.data(), 1, 8, *be->pack(w.data(), 4, 8), nullptr, Activation::none, false, y.data(), 4);
    EXPECT_NEAR(y[0], 4.0f, 0.05f);
  }
}

TEST(CpuFeatures, EnvironmentCapsTheIsa) {
  // selected_isa() is computed once per process, so check through the CLI.
  auto r = test::run_command("AMANUENSIS_ISA=scalar " + std::string(AMA_CLI_PATH) + " info");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("selected isa: scalar (forced by AMANUENSIS_ISA=scalar"), std::string::npos) << r.out;
  auto bogus = test::run_command("AMANUENSIS_ISA=bogus " + std::string(AMA_CLI_PATH) + " info");
  EXPECT_NE(bogus.out.find("not one of"), std::string::npos) << bogus.out;
}

// The error reports every numeric test relies on (test_util.h): a comparison
// that looked at nothing must fail, not pass. A missing or truncated output
// (sizes differ) or two empty ones give max_abs = INFINITY, which fails any
// EXPECT_LE(d.max_abs, tol), and the report says why.
TEST(TestUtil, MaxAbsDiffFailsWhenSizesDifferOrNothingIsCompared) {
  const std::vector<float> ref = {1.0f, 2.0f, 3.0f};
  const std::vector<float> truncated = {1.0f, 2.0f}, longer = {1.0f, 2.0f, 3.0f, 4.0f}, none;
  for (const std::vector<float>* ours : {&truncated, &longer, &none}) {
    const test::Diff d = test::max_abs_diff(*ours, ref);
    EXPECT_FALSE(d.max_abs <= 1e-3) << "compared " << ours->size() << " elements with 3 and passed: " << d.str();
    const std::string want = "sizes differ: ours " + std::to_string(ours->size()) + ", reference 3";
    EXPECT_NE(d.str("logits").find(want), std::string::npos) << d.str("logits");
  }
  const test::Diff both_empty = test::max_abs_diff(none, std::vector<double>{});
  EXPECT_FALSE(both_empty.max_abs <= 1e-3) << "two empty arrays passed: " << both_empty.str();
  EXPECT_NE(both_empty.str().find("nothing to compare"), std::string::npos) << both_empty.str();

  // Equal sizes: the largest error and where it is; NaN counts as infinite.
  std::vector<float> off = ref;
  off[1] = 2.5f;
  const test::Diff d = test::max_abs_diff(off, ref);
  EXPECT_EQ(d.max_abs, 0.5);
  EXPECT_EQ(d.worst, 1u);
  off[2] = NAN;
  const test::Diff dn = test::max_abs_diff(off, ref);
  EXPECT_FALSE(dn.max_abs <= 1e-3) << dn.str();
  EXPECT_EQ(dn.worst, 2u);
}

}  // namespace
}  // namespace ama
