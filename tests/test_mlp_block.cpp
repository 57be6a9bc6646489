// Backend::mlp_block (the output projection and the MLP with their residual
// adds, row by row) against the separate ops it replaces on the same
// backend: linear_bf16_in or linear for the projection, linear_fused (with
// the LayerNorm) into a hidden matrix, and linear adding into x. The CPU
// backend runs int8 MLPs in chunks of rows, one thread each, with the same
// row kernels, so the results must be equal bit for bit; other weights take
// the separate ops themselves. On every ISA this CPU supports and on the
// AMX kernels over the scalar model of the tiles, at base's shape (1500 x
// 512, hidden 2048, as the int8 encoder packs it: int8 MLP, int8_bc output
// projection) and at awkward ones: one row, a chunk and one row, tails in K
// and in the hidden width, no LayerNorm, no projection, f32 attention rows,
// and projections that take the separate ops (bf16, f32).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend_variants.h"
#include "test_util.h"
#include "core/half.h"

namespace ama {
namespace {

using test::variant_name;

std::vector<float> random_vec(size_t n, unsigned seed, float scale = 1.0f, float mean = 0.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Fewer rows under the sanitizers (test_util.h); 161 still ends in a partial chunk.
using test::kRealRows;

struct Case {
  int m, n, hidden;
  ComputeType mlp_type, proj_type;
  bool norm, proj, att_bf16;
  Activation act;
  const char* what;
};

std::string case_name(const Case& c) {
  return std::string(c.what) + ": m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " hidden=" +
         std::to_string(c.hidden) + " mlp " + compute_type_name(c.mlp_type) +
         (c.proj ? std::string(" proj ") + compute_type_name(c.proj_type) + (c.att_bf16 ? " on bf16" : " on f32")
                 : " no proj") +
         (c.norm ? " prenorm" : "");
}

const std::vector<Case>& cases() {
  using CT = ComputeType;
  static const std::vector<Case> c = {
      {kRealRows, 512, 2048, CT::int8, CT::int8_bc, true, true, true, Activation::gelu_q8, "base, as the int8 encoder"},
      {1, 40, 160, CT::int8, CT::int8_bc, true, true, true, Activation::gelu_q8, "one row, int8_bc projection"},
      {33, 40, 160, CT::int8, CT::int8_bc, true, true, true, Activation::gelu, "a chunk and one row, int8_bc"},
      {70, 37, 150, CT::int8, CT::int8_bc, true, true, true, Activation::gelu_q8, "K and hidden tails, int8_bc"},
      {45, 64, 256, CT::int8, CT::int8, true, true, true, Activation::gelu, "plain int8 projection"},
      {45, 64, 256, CT::int8, CT::int8_bc, true, true, false, Activation::gelu, "int8_bc projection on f32 rows"},
      {kRealRows, 512, 2048, CT::bf16, CT::bf16, true, true, true, Activation::gelu, "base, as the bf16 encoder"},
      {kRealRows, 512, 2048, CT::f32, CT::f32, true, true, false, Activation::gelu, "base, as the f32 encoder"},
      {33, 40, 160, CT::int8, CT::bf16, true, true, true, Activation::gelu, "bf16 projection: the separate ops"},
      {45, 64, 256, CT::int8, CT::bf16, false, false, false, Activation::gelu, "no LayerNorm, no projection"},
      {45, 64, 256, CT::int8, CT::f32, true, true, false, Activation::gelu, "f32 projection on f32 rows"},
      {45, 64, 256, CT::int8, CT::bf16, true, true, false, Activation::gelu, "bf16 projection on f32 rows"},
      {20, 48, 192, CT::int10, CT::bf16, true, true, true, Activation::gelu, "int10 MLP"},
  };
  return c;
}

struct Inputs {
  std::vector<float> x, att, w_up, b_up, w_down, b_down, w_o, b_o, gamma, beta;
  std::vector<uint16_t> att16;
  int ldx, ld_att;
};

Inputs make_inputs(const Case& c) {
  Inputs in;
  in.ldx = c.n + 3;  // row strides wider than the rows
  in.ld_att = c.n + 5;
  const float sn = 1.0f / std::sqrt(static_cast<float>(c.n)), sh = 1.0f / std::sqrt(static_cast<float>(c.hidden));
  // The residual stream with a mean and a spread.
  in.x = random_vec(static_cast<size_t>(c.m) * in.ldx, 201 + c.n, 2.0f, 0.5f);
  in.att = random_vec(static_cast<size_t>(c.m) * in.ld_att, 202 + c.m);
  in.att16.resize(in.att.size());
  for (size_t i = 0; i < in.att.size(); ++i) in.att16[i] = f32_to_bf16(in.att[i]);
  in.w_up = random_vec(static_cast<size_t>(c.hidden) * c.n, 203, sn);
  in.b_up = random_vec(c.hidden, 204, 0.5f);
  in.w_down = random_vec(static_cast<size_t>(c.n) * c.hidden, 205, sh);
  in.b_down = random_vec(c.n, 206, 0.5f);
  in.w_o = random_vec(static_cast<size_t>(c.n) * c.n, 207, sn);
  in.b_o = random_vec(c.n, 208, 0.5f);
  in.gamma = random_vec(c.n, 209, 0.1f, 1.0f);
  in.beta = random_vec(c.n, 210, 0.1f);
  return in;
}

struct Packed {
  std::unique_ptr<PackedMatrix> up, down, o;
};

Packed pack(Backend& be, const Case& c, const Inputs& in) {
  Packed p;
  p.up = be.pack_as(in.w_up.data(), c.hidden, c.n, c.mlp_type);
  p.down = be.pack_as(in.w_down.data(), c.n, c.hidden, c.mlp_type);
  p.o = be.pack_as(in.w_o.data(), c.n, c.n, c.proj_type);
  return p;
}

std::vector<float> run_block(Backend& be, const Case& c, const Inputs& in, const Packed& p) {
  std::vector<float> x = in.x;
  const PreNorm norm{in.gamma.data(), in.beta.data(), 1e-5f};
  MlpBlock b;
  b.norm = c.norm ? &norm : nullptr;
  b.up = p.up.get(), b.up_bias = in.b_up.data(), b.act = c.act;
  b.down = p.down.get(), b.down_bias = in.b_down.data();
  if (c.proj) {
    b.out_proj = p.o.get(), b.out_bias = in.b_o.data(), b.ld_att = in.ld_att;
    if (c.att_bf16)
      b.att_bf16 = in.att16.data();
    else
      b.att = in.att.data();
  }
  be.mlp_block(x.data(), c.m, in.ldx, b);
  return x;
}

// The separate ops, as the encoder ran them before mlp_block.
std::vector<float> run_separate(Backend& be, const Case& c, const Inputs& in, const Packed& p) {
  std::vector<float> x = in.x;
  if (c.proj) {
    LinearOutput o;
    o.y = x.data();
    o.ldy = in.ldx;
    if (c.att_bf16)
      be.linear_bf16_in(in.att16.data(), c.m, in.ld_att, *p.o, in.b_o.data(), Activation::none, true, o);
    else
      be.linear(in.att.data(), c.m, in.ld_att, *p.o, in.b_o.data(), Activation::none, true, x.data(), in.ldx);
  }
  std::vector<float> hidden(static_cast<size_t>(c.m) * c.hidden);
  const PreNorm norm{in.gamma.data(), in.beta.data(), 1e-5f};
  LinearOutput up;
  up.y = hidden.data();
  up.ldy = c.hidden;
  be.linear_fused(x.data(), c.m, in.ldx, c.norm ? &norm : nullptr, *p.up, in.b_up.data(), c.act, false, up);
  be.linear(hidden.data(), c.m, c.hidden, *p.down, in.b_down.data(), Activation::none, true, x.data(), in.ldx);
  return x;
}

// Elements that differ in their bits; the message names the first and the
// largest difference.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, int ldx) {
  ASSERT_EQ(got.size(), want.size());
  size_t bad = 0, first = 0, worst = 0;
  double worst_diff = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
    if (bad++ == 0) first = i;
    const double d = std::isnan(got[i]) || std::isnan(want[i]) ? INFINITY : std::fabs(got[i] - want[i]);
    if (d > worst_diff) worst_diff = d, worst = i;
  }
  EXPECT_EQ(bad, 0u) << bad << " elements differ; the first at row " << first / ldx << ", column " << first % ldx
                     << ": " << got[first] << " against " << want[first] << "; the largest at row " << worst / ldx
                     << ", column " << worst % ldx << ": " << got[worst] << " against " << want[worst];
}

class MlpBlockTest : public test::BackendVariantTest {};

TEST_P(MlpBlockTest, EqualsTheSeparateOps) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(case_name(c) + " on " + variant_name(GetParam()));
    auto be = backend(c.mlp_type);
    ASSERT_TRUE(be);
    const Inputs in = make_inputs(c);
    const Packed p = pack(*be, c, in);
    const auto got = run_block(*be, c, in, p);
    const auto want = run_separate(*be, c, in, p);
    expect_same_bits(got, want, in.ldx);
    // The block did something to every row (a test that cannot pass by
    // leaving x alone): the last column of each row moved.
    for (int r = 0; r < c.m; ++r)
      ASSERT_NE(got[static_cast<size_t>(r) * in.ldx + c.n - 1], in.x[static_cast<size_t>(r) * in.ldx + c.n - 1])
          << "row " << r;
    // The stride's gap between rows is left alone.
    for (int r = 0; r < c.m; ++r)
      for (int j = c.n; j < in.ldx; ++j)
        ASSERT_EQ(got[static_cast<size_t>(r) * in.ldx + j], in.x[static_cast<size_t>(r) * in.ldx + j])
            << "row " << r << ", column " << j;
  }
}

// Chunks are fixed row ranges, so the thread count cannot change a result.
TEST_P(MlpBlockTest, IdenticalAtOneAndTwoThreads) {
  const Case& c = cases()[0];
  const Inputs in = make_inputs(c);
  auto one = backend(c.mlp_type, 1), two = backend(c.mlp_type, 2);
  ASSERT_TRUE(one && two);
  const Packed p1 = pack(*one, c, in), p2 = pack(*two, c, in);
  expect_same_bits(run_block(*one, c, in, p1), run_block(*two, c, in, p2), in.ldx);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, MlpBlockTest, test::all_variants(),
                         [](const ::testing::TestParamInfo<int>& i) { return variant_name(i.param); });

}  // namespace
}  // namespace ama
