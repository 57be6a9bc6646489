// The bf16 hand-offs around the encoder's attention (backend.h):
//  - Backend::attention_mixed with bf16 Q, K/V and output: the output must
//    be the f32 result on the same values rounded to nearest even, bit for
//    bit (the d_head 64 kernels round each finished row; the other paths run
//    in f32 and round after), so |err| <= 2^-8 |y| (half an ulp of 8 significant bits) on top of
//    what the f32-output attention already has;
//  - Backend::linear_bf16_in: bit for bit linear_fused's result on f32 rows
//    holding the same bf16 values (read in place, a partial last tile of
//    rows through a padded copy, odd K through a padded copy of every row),
//    including weights packed at other types (widened rows).
// On every ISA this CPU supports, on the AMX kernels over the scalar tile
// model, at every compute type. A failure names the worst element.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include "backend/cpu/cpu_backend.h"
#include "core/half.h"
#include "backend_variants.h"
#include "test_util.h"

namespace ama {
namespace {

using test::all_variants;
using test::variant_name;

using test::kSanitized;

std::vector<uint16_t> random_bf16(size_t n, unsigned seed, float scale) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(d(g));
  return v;
}

std::vector<float> widen(const std::vector<uint16_t>& x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = bf16_to_f32(x[i]);
  return r;
}

// The first element where got (bf16) differs from the rounding of want
// (f32), with the largest relative difference among all that differ; empty
// when they all agree. Rows of `cols` values, strides ld_got and ld_want.
std::string compare_rounded(const uint16_t* got, size_t ld_got, const float* want, size_t ld_want, int rows,
                            int cols) {
  int bad = 0, wr = 0, wc = 0;
  double worst = -1;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const uint16_t g = got[r * ld_got + c];
      const float w = want[r * ld_want + c];
      if (g == f32_to_bf16(w)) continue;
      ++bad;
      const double rel = std::fabs(bf16_to_f32(g) - w) / std::max(std::fabs(static_cast<double>(w)), 1e-30);
      if (!(rel <= worst)) worst = rel, wr = r, wc = c;
    }
  if (!bad) return "";
  std::ostringstream s;
  s << bad << " elements differ from the f32 result rounded to bf16; worst [" << wr << "][" << wc << "]: got "
    << bf16_to_f32(got[wr * ld_got + wc]) << ", f32 " << want[wr * ld_want + wc] << " (rounds to "
    << bf16_to_f32(f32_to_bf16(want[wr * ld_want + wc])) << "), relative " << worst;
  return s.str();
}

// Bitwise equality of two f32 matrices; names the worst element.
std::string compare_equal(const float* got, const float* want, size_t ld, int rows, int cols) {
  int bad = 0, wr = 0, wc = 0;
  double worst = -1;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const float g = got[r * ld + c], w = want[r * ld + c];
      if (std::memcmp(&g, &w, sizeof g) == 0) continue;
      ++bad;
      const double d = std::fabs(static_cast<double>(g) - w);
      if (!(d <= worst)) worst = d, wr = r, wc = c;
    }
  if (!bad) return "";
  std::ostringstream s;
  s << bad << " elements differ; worst [" << wr << "][" << wc << "]: got " << got[wr * ld + wc] << ", want "
    << want[wr * ld + wc] << " (abs " << worst << ")";
  return s.str();
}

class Bf16Handoff : public test::BackendVariantTest {};

struct AttnShape {
  int n_q, n_kv, n_head, d_head;
  bool causal;
  const char* what;
};

// bf16 Q, K, V and output against the same values with f32 Q and output
// (and bf16 K/V, so that both take the same path at every compute type):
// the bf16 output must be the f32 one rounded, and bf16 Q must change
// nothing (the kernels round Q to bf16 themselves; elsewhere it widens
// exactly).
TEST_P(Bf16Handoff, AttentionBf16OutputIsTheF32OutputRounded) {
  const std::vector<AttnShape> shapes = {
      // The encoder's (base: 8 heads of 64 over 1500 positions); the scalar
      // tile model, and every variant under the sanitizers, runs 1 head of
      // it (8 took minutes; the scalar kernels' 8 heads took 57 s of CI's
      // sanitized run).
      {1500, 1500, emulated() || kSanitized ? 1 : 8, 64, false, "encoder"},
      {33, 65, 2, 64, false, "n_q, n_kv just past a block"},
      {37, 1, 3, 64, false, "one key"},
      {45, 127, 2, 64, false, "odd tile tail"},
      {1, 300, 2, 64, false, "one row (the rows path)"},
      {40, 40, 2, 64, true, "causal (the rows path)"},
      {50, 70, 3, 32, false, "d_head 32 (the GEMM-tile flash path)"},
  };
  for (ComputeType ct : {ComputeType::f32, ComputeType::bf16, ComputeType::int8}) {
    auto be = backend(ct);
    ASSERT_TRUE(be);
    for (const AttnShape& sh : shapes) {
      SCOPED_TRACE(std::string(sh.what) + " at " + compute_type_name(ct));
      const int w = sh.n_head * sh.d_head, ld_q = w + 3, ld_kv = w + 5, ld_out = w + 7;
      const auto q16 = random_bf16(static_cast<size_t>(sh.n_q) * ld_q, 1 + sh.n_q, 1.5f);
      const auto k16 = random_bf16(static_cast<size_t>(sh.n_kv) * ld_kv, 2 + sh.n_kv, 1.0f);
      const auto v16 = random_bf16(static_cast<size_t>(sh.n_kv) * ld_kv, 3 + sh.n_kv, 1.0f);
      const auto qf = widen(q16);
      std::vector<float> out(static_cast<size_t>(sh.n_q) * ld_out, NAN);
      std::vector<uint16_t> out16(out.size(), 0x7fc0);
      const int q_pos0 = sh.causal ? sh.n_kv - sh.n_q : 0;
      AttentionOperands f;
      f.q = qf.data(), f.ld_q = ld_q, f.k_bf16 = k16.data(), f.v_bf16 = v16.data(), f.ld_kv = ld_kv;
      f.out = out.data(), f.ld_out = ld_out;
      be->attention_mixed(f, sh.n_q, sh.n_kv, sh.n_head, sh.d_head, sh.causal, q_pos0);
      AttentionOperands b = f;
      b.q = nullptr, b.q_bf16 = q16.data(), b.out = nullptr, b.out_bf16 = out16.data();
      be->attention_mixed(b, sh.n_q, sh.n_kv, sh.n_head, sh.d_head, sh.causal, q_pos0);
      const std::string err = compare_rounded(out16.data(), ld_out, out.data(), ld_out, sh.n_q, w);
      EXPECT_TRUE(err.empty()) << err;
      // The padding between rows is not written.
      EXPECT_EQ(out16[w], 0x7fc0);
      // bf16 output from f32 K/V (the encoder's step A: Q, K, V from f32
      // GEMM outputs) against attention() on them.
      const auto kf = widen(k16), vf = widen(v16);
      std::vector<float> ref(out.size(), NAN);
      be->attention(qf.data(), sh.n_q, ld_q, kf.data(), vf.data(), sh.n_kv, ld_kv, sh.n_head, sh.d_head, sh.causal,
                    q_pos0, ref.data(), ld_out);
      AttentionOperands m;
      m.q = qf.data(), m.ld_q = ld_q, m.k = kf.data(), m.v = vf.data(), m.ld_kv = ld_kv;
      m.out_bf16 = out16.data(), m.ld_out = ld_out;
      be->attention_mixed(m, sh.n_q, sh.n_kv, sh.n_head, sh.d_head, sh.causal, q_pos0);
      const std::string err2 = compare_rounded(out16.data(), ld_out, ref.data(), ld_out, sh.n_q, w);
      EXPECT_TRUE(err2.empty()) << "f32 K/V: " << err2;
    }
  }
}

struct LinShape {
  int m, k, n;
  int ldx_extra;
  Activation act;
  bool accumulate, bias, bf16_out;
  const char* what;
};

// linear_bf16_in against linear_fused on the widened rows, bit for bit, for
// weights packed at every type.
TEST_P(Bf16Handoff, LinearBf16InputMatchesF32Input) {
  const std::vector<LinShape> shapes = {
      // The encoder's O projection (base): 1500 rows (the AVX-512 tile of 8
      // leaves 4 rows to the padded copy, AMX's 32 leaves 28), residual add.
      {emulated() ? 200 : 1500, 512, 512, 0, Activation::none, true, true, false, "O projection"},
      {1, 512, 96, 0, Activation::none, true, true, false, "one row"},
      {13, 64, 48, 8, Activation::gelu, false, true, false, "under 16 rows, strided"},
      {33, 33, 40, 0, Activation::none, false, false, false, "odd K"},
      {70, 100, 70, 5, Activation::gelu, true, true, false, "K and N tails"},
      {97, 96, 64, 0, Activation::none, false, true, true, "bf16 out, 97 rows"},
      {32, 1024, 33, 0, Activation::none, false, true, false, "whole tiles only"},
  };
  for (ComputeType ct : {ComputeType::f32, ComputeType::bf16, ComputeType::int8}) {
    auto be = backend(ct);
    ASSERT_TRUE(be);
    for (const LinShape& sh : shapes) {
      SCOPED_TRACE(std::string(sh.what) + " at " + compute_type_name(ct));
      const int ldx = sh.k + sh.ldx_extra;
      const auto x16 = random_bf16(static_cast<size_t>(sh.m) * ldx, 5 + sh.m, 1.0f);
      const auto xf = widen(x16);
      const auto wf = widen(random_bf16(static_cast<size_t>(sh.n) * sh.k, 6 + sh.k, 0.05f));
      const auto bias = widen(random_bf16(sh.n, 7, 0.1f));
      const auto packed = be->pack(wf.data(), sh.n, sh.k);
      const int ldy = sh.n + 3;
      const auto y0 = widen(random_bf16(static_cast<size_t>(sh.m) * ldy, 8, 1.0f));
      std::vector<float> want = y0, got = y0;
      std::vector<uint16_t> want16(y0.size(), 0), got16(y0.size(), 0);
      auto out = [&](std::vector<float>& y, std::vector<uint16_t>& y16) {
        LinearOutput o;
        o.ldy = ldy;
        if (sh.bf16_out)
          o.y_bf16 = y16.data();
        else
          o.y = y.data();
        return o;
      };
      const float* b = sh.bias ? bias.data() : nullptr;
      be->linear_fused(xf.data(), sh.m, ldx, nullptr, *packed, b, sh.act, sh.accumulate, out(want, want16));
      be->linear_bf16_in(x16.data(), sh.m, ldx, *packed, b, sh.act, sh.accumulate, out(got, got16));
      const std::string err = compare_equal(got.data(), want.data(), ldy, sh.m, ldy);
      EXPECT_TRUE(err.empty()) << err;
      EXPECT_EQ(got16, want16);
    }
  }
}

// The encoder at bf16 and int8 compute takes these hand-offs: its output
// must be what it was with the f32 hand-offs, which the oracle tests bound
// (test_oracle.cpp); here, that the two bf16 ops compose as the encoder
// calls them, on the stacked [q | k | v] rows of stride 3n.
TEST_P(Bf16Handoff, EncoderAttentionBlockComposes) {
  const int ctx = emulated() ? 64 : 300, n = 512, heads = 8;
  for (ComputeType ct : {ComputeType::bf16, ComputeType::int8}) {
    SCOPED_TRACE(compute_type_name(ct));
    auto be = backend(ct);
    ASSERT_TRUE(be);
    const auto qkv = widen(random_bf16(static_cast<size_t>(ctx) * 3 * n, 9, 1.0f));
    const auto wf = widen(random_bf16(static_cast<size_t>(n) * n, 10, 0.04f));
    const auto packed = be->pack_as(wf.data(), n, n, ComputeType::bf16);
    std::vector<float> att(static_cast<size_t>(ctx) * n);
    be->attention(qkv.data(), ctx, 3 * n, qkv.data() + n, qkv.data() + 2 * n, ctx, 3 * n, heads, 64, false, 0,
                  att.data(), n);
    // The f32 hand-off as the encoder ran it before: f32 rows, rounded by the GEMM.
    std::vector<float> want(static_cast<size_t>(ctx) * n, 0.5f), got = want;
    be->linear(att.data(), ctx, n, *packed, nullptr, Activation::none, true, want.data(), n);
    AttentionOperands io;
    io.q = qkv.data(), io.ld_q = 3 * n, io.k = qkv.data() + n, io.v = qkv.data() + 2 * n, io.ld_kv = 3 * n;
    std::vector<uint16_t> att16(att.size());
    io.out_bf16 = att16.data(), io.ld_out = n;
    be->attention_mixed(io, ctx, ctx, heads, 64, false, 0);
    LinearOutput o;
    o.y = got.data();
    o.ldy = n;
    be->linear_bf16_in(att16.data(), ctx, n, *packed, nullptr, Activation::none, true, o);
    const std::string err = compare_equal(got.data(), want.data(), n, ctx, n);
    EXPECT_TRUE(err.empty()) << err;
  }
}

// Operands of two types at once, or of none, are a programming error that
// the op checks report and abort on (backend/op_checks.h), never a guess.
TEST(Bf16HandoffDeathTest, AttentionMixedRejectsAmbiguousOperands) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the backend owns a thread pool
  CpuBackendOptions o;
  o.compute = ComputeType::int8;
  o.n_threads = 2;
  auto made = make_cpu_backend(o);
  ASSERT_TRUE(made.ok()) << made.message();
  auto be = std::move(made.value());
  std::vector<float> f(64 * 64, 0.5f);
  std::vector<uint16_t> h(64 * 64, 0x3f00), out(64 * 64, 0);
  AttentionOperands io;
  io.q = f.data(), io.ld_q = 64, io.k_bf16 = h.data(), io.v_bf16 = h.data(), io.ld_kv = 64;
  io.out_bf16 = out.data(), io.ld_out = 64;
  AttentionOperands both_q = io;
  both_q.q_bf16 = h.data();
  EXPECT_DEATH(be->attention_mixed(both_q, 64, 64, 1, 64, false, 0), "internal check failed");
  AttentionOperands mixed_kv = io;
  mixed_kv.v = f.data(), mixed_kv.v_bf16 = nullptr;
  EXPECT_DEATH(be->attention_mixed(mixed_kv, 64, 64, 1, 64, false, 0), "internal check failed");
  AttentionOperands no_out = io;
  no_out.out_bf16 = nullptr;
  EXPECT_DEATH(be->attention_mixed(no_out, 64, 64, 1, 64, false, 0), "internal check failed");
  // The well-formed call runs.
  be->attention_mixed(io, 64, 64, 1, 64, false, 0);
  EXPECT_EQ(out, h);  // every output the average of values all 0.5 (bf16 0x3f00)
}

INSTANTIATE_TEST_SUITE_P(AllIsas, Bf16Handoff,
                         all_variants(), [](const auto& info) { return variant_name(info.param); });

}  // namespace
}  // namespace ama
