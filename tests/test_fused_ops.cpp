// The fused linear op (Backend::linear_fused: LayerNorm in the activation
// conversion, bf16 output, outputs split into per-layer blocks) and stacked
// matrices (Backend::stack_packed), on every ISA this CPU supports and on the
// AMX kernels over the scalar model of the tiles, at every compute type, at
// Whisper's shapes (base: Q/K/V 1500 x 512 x 1536, MLP up 1500 x 512 x 2048,
// cross-attention K of 6 layers 1500 x 512 x 3072) and at awkward ones (1
// row, odd rows, K and N tails, split blocks that straddle the 32-column
// tiles). Two checks:
//  - against the unfused ops on the same backend (layer_norm, then linear,
//    then the split and the bf16 rounding done by hand): the fused op runs
//    the same row kernels in the same order, so the results must be equal
//    bit for bit;
//  - against a plain double reference, within a bound derived from the
//    arithmetic (see reference_bound).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "core/half.h"
#include "model/whisper_model.h"
#include "backend_variants.h"
#include "test_util.h"

namespace ama {
namespace {

using test::all_variants;
using test::variant_name;

constexpr double kU = 1.0 / 16777216.0;  // 2^-24, float32's unit roundoff
constexpr float kEps = 1e-5f;

std::vector<float> random_vec(size_t n, unsigned seed, float scale = 1.0f, float mean = 0.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

class FusedOps : public test::BackendVariantTest {};

struct Case {
  int m, k, n;
  bool norm;
  Activation act;
  bool accumulate;
  bool bf16_out;
  int split;  // 0: one block of n columns
  const char* what;
};

std::string case_name(const Case& c, ComputeType ct) {
  return std::string(compute_type_name(ct)) + " " + c.what + ": m=" + std::to_string(c.m) + " k=" +
         std::to_string(c.k) + " n=" + std::to_string(c.n) + (c.norm ? " prenorm" : "") +
         (c.act == Activation::gelu ? " gelu" : c.act == Activation::gelu_q8 ? " gelu_q8" : "") + (c.accumulate ? " accumulate" : "") +
         (c.bf16_out ? " bf16-out" : "") + " split=" + std::to_string(c.split);
}

// Whisper's 1500 rows, or 161 under the sanitizers (test_util.h).
using test::kRealRows;

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {kRealRows, 512, 1536, true, Activation::none, false, false, 0, "base encoder Q/K/V"},
      {kRealRows, 512, 2048, true, Activation::gelu, false, false, 0, "base encoder MLP up"},
      {kRealRows, 512, 3072, false, Activation::none, false, true, 512, "base cross-attention K, 6 layers"},
      {1, 7, 17, true, Activation::none, false, false, 0, "one row"},
      {7, 33, 31, true, Activation::gelu, true, false, 0, "odd rows, K and N tails, residual"},
      {13, 129, 95, true, Activation::none, false, true, 24, "blocks straddling tiles, bf16"},
      {97, 3, 48, false, Activation::gelu, false, false, 16, "K of 3, split 16"},
      {33, 64, 70, true, Activation::none, true, false, 35, "split 35 with residual"},
      {40, 200, 1000, true, Activation::gelu, false, true, 0, "rows over the 16-row small-GEMM cut"},
      {kRealRows, 512, 2048, true, Activation::gelu_q8, false, false, 0, "base encoder MLP up, int8 path"},
      {7, 33, 31, true, Activation::gelu_q8, true, false, 0, "gelu_q8: odd rows, tails, residual"},
      {97, 240, 48, false, Activation::gelu_q8, false, true, 16, "gelu_q8: conv1's K, split 16, bf16"},
      // K of 768 and more (conv2's and MLP down's side) with column tails
      // of 4 and 20, and tiles straddling split blocks of 40.
      {19, 800, 228, true, Activation::gelu, true, false, 0, "long K: a tail of 4, residual"},
      {14, 768, 180, false, Activation::none, false, true, 0, "long K: a tail of 20, bf16 out"},
      {23, 771, 200, true, Activation::none, true, false, 40, "long K straddling split blocks of 40"},
  };
  return c;
}

// Output element (r, c) of a linear_fused with the given split.
size_t out_index(const Case& c, int r, int col, int ldy) {
  if (c.split == 0) return static_cast<size_t>(r) * ldy + col;
  return static_cast<size_t>(col / c.split) * (static_cast<size_t>(c.m) * ldy) + static_cast<size_t>(r) * ldy +
         col % c.split;
}

struct Inputs {
  std::vector<float> x, w, bias, gamma, beta, y0;
  int ldx, ldy;
  size_t out_size;
};

Inputs make_inputs(const Case& c) {
  Inputs in;
  in.ldx = c.k + 3;  // a row stride wider than K
  in.ldy = (c.split ? c.split : c.n) + 5;
  // Rows with a mean and a spread, as the residual stream has.
  in.x = random_vec(static_cast<size_t>(c.m) * in.ldx, 101 + c.k, 2.0f, 0.5f);
  in.w = random_vec(static_cast<size_t>(c.n) * c.k, 102 + c.n, 1.0f / std::sqrt(static_cast<float>(c.k)));
  in.bias = random_vec(c.n, 103, 0.5f);
  in.gamma = random_vec(c.k, 104, 0.1f, 1.0f);
  in.beta = random_vec(c.k, 105, 0.1f);
  const int blocks = c.split ? (c.n + c.split - 1) / c.split : 1;
  in.out_size = static_cast<size_t>(blocks) * c.m * in.ldy;
  in.y0 = random_vec(in.out_size, 106);  // the residual, and the gaps between blocks
  return in;
}

// The fused op; returns the outputs as float (bf16 widened).
std::vector<float> run_fused(Backend& be, const Case& c, const Inputs& in, const PackedMatrix& w) {
  LinearOutput o;
  o.ldy = in.ldy;
  o.split = c.split;
  o.split_stride = static_cast<size_t>(c.m) * in.ldy;
  std::vector<float> y = in.y0;
  std::vector<uint16_t> y16(in.out_size);
  for (size_t i = 0; i < y16.size(); ++i) y16[i] = f32_to_bf16(in.y0[i]);
  if (c.bf16_out)
    o.y_bf16 = y16.data();
  else
    o.y = y.data();
  const PreNorm norm{in.gamma.data(), in.beta.data(), kEps};
  be.linear_fused(in.x.data(), c.m, in.ldx, c.norm ? &norm : nullptr, w, in.bias.data(), c.act, c.accumulate, o);
  if (c.bf16_out)
    for (size_t i = 0; i < y.size(); ++i) y[i] = bf16_to_f32(y16[i]);
  return y;
}

// The same through the unfused ops: layer_norm, linear into a plain [m][n]
// matrix, then the split layout and the bf16 rounding by hand.
std::vector<float> run_unfused(Backend& be, const Case& c, const Inputs& in, const PackedMatrix& w) {
  std::vector<float> h(static_cast<size_t>(c.m) * in.ldx);
  const float* x = in.x.data();
  if (c.norm && c.m > 0) {
    be.layer_norm(in.x.data(), c.m, c.k, in.ldx, in.gamma.data(), in.beta.data(), kEps, h.data());
    x = h.data();
  }
  std::vector<float> full(static_cast<size_t>(c.m) * c.n);
  for (int r = 0; r < c.m; ++r)
    for (int j = 0; j < c.n; ++j) full[static_cast<size_t>(r) * c.n + j] = in.y0[out_index(c, r, j, in.ldy)];
  be.linear(x, c.m, in.ldx, w, in.bias.data(), c.act, c.accumulate, full.data(), c.n);
  std::vector<float> y = in.y0;
  if (c.bf16_out)
    for (auto& v : y) v = bf16_to_f32(f32_to_bf16(v));
  for (int r = 0; r < c.m; ++r)
    for (int j = 0; j < c.n; ++j) {
      const float v = full[static_cast<size_t>(r) * c.n + j];
      y[out_index(c, r, j, in.ldy)] = c.bf16_out ? bf16_to_f32(f32_to_bf16(v)) : v;
    }
  return y;
}

// Under the sanitizers the scalar and emulated-AMX tables leave out the
// real-shape cases (kRealRows rows), which the Release run checks on every
// table; their awkward shapes still run sanitized. Those cases were most of
// the two slowest FusedOps tests there (scalar 20-22 s, emulated AMX 14-16
// s of ASan test time), in a run that has to fit CI's 30 minutes.
bool left_to_release(const Case& c, int variant) {
  return test::kSanitized && c.m == kRealRows &&
         (variant == static_cast<int>(Isa::scalar) || variant == test::kAmxEmulated);
}

// Every compute type: f32 reads x itself, bf16 rounds it, int8 and int10
// quantize it per row, int8_bc as int8 plus its correction.
// int8_bc runs the int8 kernels, which the int8 cases cover at every
// shape; of the real shapes it takes those the model runs it at (Q/K/V,
// the cross-attention block), not the MLP's, to keep CI's time.
bool skipped_for(const Case& c, ComputeType ct) {
  return ct == ComputeType::int8_bc && c.m == kRealRows && std::string(c.what).find("MLP") != std::string::npos;
}
const ComputeType kTypes[] = {ComputeType::f32, ComputeType::bf16, ComputeType::int8, ComputeType::int10,
                              ComputeType::int8_bc};

TEST_P(FusedOps, LinearFusedEqualsUnfusedOps) {
  for (ComputeType ct : kTypes) {
    auto be = backend(ct);
    ASSERT_TRUE(be);
    for (const Case& c : cases()) {
      if (left_to_release(c, GetParam()) || skipped_for(c, ct)) continue;
      SCOPED_TRACE(case_name(c, ct) + " on " + variant_name(GetParam()));
      const Inputs in = make_inputs(c);
      auto w = be->pack_as(in.w.data(), c.n, c.k, ct);
      const auto fused = run_fused(*be, c, in, *w);
      const auto plain = run_unfused(*be, c, in, *w);
      ASSERT_EQ(fused.size(), plain.size());
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < fused.size(); ++i)
        if (std::memcmp(&fused[i], &plain[i], sizeof(float)) != 0 && bad++ == 0) first = i;
      EXPECT_EQ(bad, 0u) << bad << " elements differ; the first is element " << first << ": fused " << fused[first]
                         << ", unfused " << plain[first];
    }
  }
}

// |fused - exact| for one output, where exact is computed in double from the
// unrounded inputs. The input rounding of each compute type bounds each
// product's error: with x' = x + dx and w' = w + dw, |x'w' - xw| <= |x||dw| +
// |w||dx| + |dx||dw|, where |dx| <= half a step of the activation code
// (bf16, 8 significant bits: 2^-8 |x|; u8: (max - min) / 255 / 2 of the row; 16-bit: / 65535 / 2)
// and |dw| <= half a step of the weight code (bf16: 2^-8 |w|; int8:
// max|w_n| / 127 / 2; int10: max|w_n| / 511 / 2). The f32 LayerNorm adds
// (k + 8) u of each normalized value's scale (its sums of k terms), and the
// accumulation, bias add and rounding add (k + 2) u of the sum of |products|
// (kernels.h: one chain per element; bf16 and integer products are exact in
// f32 or s32 before the final scaling). GELU then multiplies by at most 1.13
// (its largest slope) and adds a few ulps of its own.
struct Bound {
  double ref, tol;
};
// int8_bc (backend.h) multiplies x by the first code W_q, so that ours -
// exact = (x' - x) W_q - (x - mu) (W - W_q) - mu (W - W_q - R') + (mu' -
// mu) R', with R' the second code, mu the rows' column mean and mu' the
// GEMM's (summed in f32 per group of 32 rows, then rounded to u8 for the
// 1-row product). Per term: |x - mu| dw in place of int8's |x| dw; |mu|
// dr, dr = max|R| / 127 / 2 <= dw / 254; and dmu (dw + dr).
struct MeanTerms {
  std::vector<double> mu, dmu;  // per input column
};
Bound reference_bound(const Case& c, const Inputs& in, ComputeType ct, int r, int j, const std::vector<double>& xr,
                      const std::vector<double>& ln_err, double dx_row, double lo, const MeanTerms* mt = nullptr) {
  double dot = 0, mag = 0, wmax = 0, qerr = 0, lnterm = 0, deq = 0, wsum = 0;
  const float* wj = in.w.data() + static_cast<size_t>(j) * c.k;
  for (int k = 0; k < c.k; ++k) wmax = std::max(wmax, std::fabs(static_cast<double>(wj[k])));
  for (int k = 0; k < c.k; ++k) {
    const double x = xr[k], w = wj[k];
    dot += x * w;
    mag += std::fabs(x * w);
    double dx = 0, dw = 0;
    switch (ct) {
      case ComputeType::f32: break;
      case ComputeType::bf16: dx = std::ldexp(std::fabs(x) + ln_err[k], -8), dw = std::ldexp(std::fabs(w), -8); break;
      case ComputeType::int8: dx = dx_row, dw = wmax / 127 / 2; break;
      case ComputeType::int10: dx = dx_row, dw = wmax / 511 / 2; break;
      case ComputeType::int8_bc: dx = dx_row, dw = wmax / 127 / 2 * (1 + 8 * kU); break;
    }
    if (ct == ComputeType::int8_bc) {
      const double dr = dw / 254 * (1 + 8 * kU), mu = mt->mu[k], dmu = mt->dmu[k];
      qerr += std::fabs(x - mu) * dw + std::fabs(w) * dx + dx * dw + std::fabs(mu) * dr + dmu * (dw + dr) +
              8 * kU * (std::fabs(mu) + dmu) * (dw + dr);  // the last: the correction's own f32 rounding
    } else {
      qerr += std::fabs(x) * dw + std::fabs(w) * dx + dx * dw;
    }
    lnterm += std::fabs(w) * ln_err[k];
    deq += std::fabs(x - lo) * std::fabs(w);
    wsum += std::fabs(w);
  }
  // The integer paths' output w_scale (s dot + lo col_sum) rounds two
  // terms of sizes sum |x - lo||w| and |lo| sum |w| (and their sum, and the
  // scaling) in f32, whatever the size of the result.
  if (ct == ComputeType::int8 || ct == ComputeType::int10 || ct == ComputeType::int8_bc)
    qerr += 4 * kU * (deq + std::fabs(lo) * wsum + qerr);
  double pre = dot + in.bias[j];
  double tol = qerr + lnterm + (c.k + 2) * kU * (mag + qerr + std::fabs(in.bias[j]));
  double ref = pre;
  if (c.act == Activation::gelu) {
    ref = 0.5 * pre * (1.0 + std::erf(pre / std::sqrt(2.0)));
    tol = tol * 1.13 + 8 * kU * std::fabs(pre) + 1e-7 * std::fabs(pre);  // A&S erf: 1.5e-7 absolute
  } else if (c.act == Activation::gelu_q8) {
    // The fitted formula in double (cpu::ref::gelu_q8); its slope is at
    // most 1.13, as GELU's. The kernels: vrcp14ps (2^-14 relative) or exp
    // and a division (a few ulps), a degree-5 2^f (2.4e-6 relative on
    // e^-t, times sigma (1 - sigma) <= 1/4 on the output).
    ref = static_cast<double>(cpu::ref::gelu_q8(static_cast<float>(pre)));
    tol = tol * 1.13 + std::ldexp(std::fabs(ref), -13) + 1e-6 * std::fabs(pre) + kU * std::fabs(pre);
  }
  if (c.accumulate) {
    ref += in.y0[out_index(c, r, j, in.ldy)];
    tol += 2 * kU * std::fabs(ref);
  }
  if (c.bf16_out) tol += std::ldexp(std::fabs(ref) + tol, -8);  // the output's own rounding (half a bf16 step)
  return {ref, tol + 1e-30};
}

// Input row r as the GEMM sees it before rounding: x, or its LayerNorm in
// double, with the LayerNorm's f32 error bound per value (ln_err).
void gemm_row(const Case& c, const Inputs& in, int r, std::vector<double>& xd, std::vector<double>& ln_err) {
  const float* xr = in.x.data() + static_cast<size_t>(r) * in.ldx;
  xd.assign(c.k, 0.0);
  ln_err.assign(c.k, 0.0);
  double mean = 0, var = 0, mean_abs = 0;
  for (int k = 0; k < c.k; ++k) mean += xr[k], mean_abs += std::fabs(xr[k]);
  mean /= c.k, mean_abs /= c.k;
  for (int k = 0; k < c.k; ++k) var += (xr[k] - mean) * (xr[k] - mean);
  var /= c.k;
  const double inv = 1.0 / std::sqrt(var + kEps);
  for (int k = 0; k < c.k; ++k) {
    if (c.norm) {
      const double z = (xr[k] - mean) * inv;
      xd[k] = z * in.gamma[k] + in.beta[k];
      ln_err[k] = (c.k + 8) * kU * (std::fabs(z) + mean_abs * inv) * std::fabs(in.gamma[k]) + 2 * kU * std::fabs(xd[k]);
    } else {
      xd[k] = xr[k];
    }
  }
}

// int8_bc's column mean over all rows, and a bound on the GEMM's error in
// it: f32 sums of 32 rows ((32 + 1) u of the sum of |x|, plus the
// LayerNorm's error), then its u8 code's half step (as dx_row below).
MeanTerms mean_terms(const Case& c, const Inputs& in) {
  MeanTerms t;
  t.mu.assign(c.k, 0.0);
  std::vector<double> abs_sum(c.k, 0.0), ln_sum(c.k, 0.0), xd, ln_err;
  for (int r = 0; r < c.m; ++r) {
    gemm_row(c, in, r, xd, ln_err);
    for (int k = 0; k < c.k; ++k) t.mu[k] += xd[k], abs_sum[k] += std::fabs(xd[k]), ln_sum[k] += ln_err[k];
  }
  double lo = INFINITY, hi = -INFINITY, e_max = 0;
  std::vector<double> e(c.k);
  for (int k = 0; k < c.k; ++k) {
    t.mu[k] /= c.m;
    e[k] = (33 * kU * abs_sum[k] + ln_sum[k]) / c.m;
    lo = std::min(lo, t.mu[k]), hi = std::max(hi, t.mu[k]), e_max = std::max(e_max, e[k]);
  }
  const double step_err = (hi - lo + 2 * e_max) / 255 * (0.5 + 4 * kU * 255);
  t.dmu.resize(c.k);
  for (int k = 0; k < c.k; ++k) t.dmu[k] = e[k] + step_err;
  return t;
}

// The fused op against the plain double reference within reference_bound,
// naming the worst element.
void expect_matches_reference(Backend& be, const Case& c, const Inputs& in, ComputeType ct) {
  auto w = be.pack_as(in.w.data(), c.n, c.k, ct);
  const auto y = run_fused(be, c, in, *w);
  MeanTerms mt;
  if (ct == ComputeType::int8_bc) mt = mean_terms(c, in);
  double worst = 0, worst_ours = 0, worst_ref = 0;
  int worst_r = -1, worst_j = -1;
  std::vector<double> xd, ln_err;
  for (int r = 0; r < c.m; ++r) {
    if (c.m > 64 && r > 3 && r != c.m - 1 && r % 37 != 0) continue;  // a spread of rows of the big shapes
    gemm_row(c, in, r, xd, ln_err);
    double lo = xd[0], hi = xd[0];
    for (double v : xd) lo = std::min(lo, v), hi = std::max(hi, v);
    // Half a step of the row's code, widened by the LayerNorm's error of its range.
    double ln_max = 0;
    for (double e : ln_err) ln_max = std::max(ln_max, e);
    const double range = hi - lo + 2 * ln_max;
    // The code's step s = range / L, and the scaled value (x - lo) / s,
    // up to L, is itself rounded in f32 before it is rounded to the code.
    const double levels = ct == ComputeType::int10 ? 65535 : 255;
    const double dx_row = range / levels * (0.5 + 4 * kU * levels);
    for (int j = 0; j < c.n; ++j) {
      const Bound b = reference_bound(c, in, ct, r, j, xd, ln_err, dx_row, lo, &mt);
      const double got = y[out_index(c, r, j, in.ldy)];
      const double ratio = std::fabs(got - b.ref) / b.tol;
      if (!(ratio <= worst) || std::isnan(got)) {
        worst = std::isnan(got) ? INFINITY : ratio;
        worst_ours = got, worst_ref = b.ref, worst_r = r, worst_j = j;
      }
    }
  }
  EXPECT_LE(worst, 1.0) << "worst element (row " << worst_r << ", column " << worst_j << "): ours " << worst_ours
                        << ", reference " << worst_ref << ", error/tolerance " << worst;
  // The gaps between split blocks (columns split..ldy of each block) are
  // never written.
  if (c.split) {
    size_t touched = 0;
    for (size_t blk = 0; blk * c.split < static_cast<size_t>(c.n); ++blk)
      for (int r = 0; r < c.m; ++r)
        for (int col = c.split; col < in.ldy; ++col) {
          const size_t i = blk * c.m * in.ldy + static_cast<size_t>(r) * in.ldy + col;
          const float want = c.bf16_out ? bf16_to_f32(f32_to_bf16(in.y0[i])) : in.y0[i];
          if (std::memcmp(&y[i], &want, sizeof(float)) != 0) ++touched;
        }
    EXPECT_EQ(touched, 0u) << "elements outside the split blocks were written";
  }
}

TEST_P(FusedOps, LinearFusedMatchesPlainReference) {
  for (ComputeType ct : kTypes) {
    auto be = backend(ct);
    ASSERT_TRUE(be);
    for (const Case& c : cases()) {
      if (left_to_release(c, GetParam()) || skipped_for(c, ct)) continue;
      SCOPED_TRACE(case_name(c, ct) + " on " + variant_name(GetParam()));
      expect_matches_reference(*be, c, make_inputs(c), ct);
    }
  }
}

// int8_bc on rows that share a large mean (as the encoder's do: |mu| 0.8
// of a row's norm on the oracle's model), here 20 times their spread: its
// error stays within the bound above, where |x - mu| replaces |x|. And the
// error that the rows share, which averaging over rows (a diffuse
// attention) does not shrink, must be far below plain int8's: per column,
// the mean over the rows of (ours - exact). For plain int8 that is mostly
// mu (W - W_q) (here ~0.007 rms: |mu| ~ sqrt(512), the weights' rounding
// ~0.0003 rms); what is left of it after the correction is ~100 times
// smaller (R's own rounding 1/254 of it, mu's u8 rounding ~1%), beside the activations' rounding (~0.007 rms per output, its
// mean over m rows ~0.007 / sqrt(m): 6 times below plain int8's at the
// 37 rows of the small case). So below a third of plain int8's, or the
// correction is missing.
TEST_P(FusedOps, MeanCorrectionCancelsTheSharedError) {
  auto be = backend(ComputeType::int8);
  ASSERT_TRUE(be);
  for (const Case& c : {Case{kRealRows, 512, 512, false, Activation::none, false, false, 0, "shared mean"},
                        Case{37, 100, 70, true, Activation::none, true, false, 0, "shared mean, tails, prenorm"}}) {
    SCOPED_TRACE(case_name(c, ComputeType::int8_bc) + " on " + variant_name(GetParam()));
    Inputs in = make_inputs(c);
    const auto mu = random_vec(c.k, 401, 1.0f);
    const auto noise = random_vec(in.x.size(), 402, 0.05f);
    for (size_t i = 0; i < in.x.size(); ++i) in.x[i] = mu[i % in.ldx % c.k] + noise[i];
    if (c.norm) {  // a LayerNorm of such rows leaves the shared part in place
      in.gamma = random_vec(c.k, 403, 0.1f, 1.0f);
      in.beta = random_vec(c.k, 404, 0.1f);
    }
    expect_matches_reference(*be, c, in, ComputeType::int8_bc);
    // The exact outputs, once.
    std::vector<double> exact(static_cast<size_t>(c.m) * c.n), xd, ln_err;
    for (int r = 0; r < c.m; ++r) {
      gemm_row(c, in, r, xd, ln_err);
      for (int j = 0; j < c.n; ++j) {
        double ref = in.bias[j];
        for (int k = 0; k < c.k; ++k) ref += xd[k] * in.w[static_cast<size_t>(j) * c.k + k];
        if (c.accumulate) ref += in.y0[out_index(c, r, j, in.ldy)];
        exact[static_cast<size_t>(r) * c.n + j] = ref;
      }
    }
    // The largest |column mean of (ours - exact)|.
    auto shared_err = [&](ComputeType ct) {
      auto w = be->pack_as(in.w.data(), c.n, c.k, ct);
      const auto y = run_fused(*be, c, in, *w);
      double worst = 0;
      for (int j = 0; j < c.n; ++j) {
        double sum = 0;
        for (int r = 0; r < c.m; ++r) sum += y[out_index(c, r, j, in.ldy)] - exact[static_cast<size_t>(r) * c.n + j];
        worst = std::max(worst, std::fabs(sum / c.m));
      }
      return worst;
    };
    const double plain = shared_err(ComputeType::int8), corrected = shared_err(ComputeType::int8_bc);
    EXPECT_LT(corrected, plain / 3) << "the largest column mean of the error: int8_bc " << corrected << ", int8 "
                                    << plain;
    std::printf("[shared error] %s: int8 %.3g, int8_bc %.3g\n", c.what, plain, corrected);
  }
}

// Stacked matrices give the parts' outputs side by side, bit for bit; and
// so do plain int8 parts followed by int8_bc ones (the encoder's Q/K/V),
// whose correction only the latter's columns get.
TEST_P(FusedOps, StackedMatrixEqualsItsParts) {
  std::vector<std::pair<ComputeType, bool>> configs;  // (type, first two parts plain int8)
  for (ComputeType ct : kTypes) configs.push_back({ct, false});
  configs.push_back({ComputeType::int8_bc, true});
  for (const auto& [ct, mixed] : configs) {
    auto be = backend(ct);
    ASSERT_TRUE(be);
    // int10 tiles hold 32 rows, the others 16: every part but the last
    // fills whole tiles; the last may end in a partial one.
    const std::vector<int> rows = {64, 32, 96, 40};
    for (int m : {1, 7, kRealRows}) {
      const int k = 512 + 7;
      SCOPED_TRACE(std::string(compute_type_name(ct)) + (mixed ? " after int8" : "") + " m=" + std::to_string(m) +
                   " on " + variant_name(GetParam()));
      auto x = random_vec(static_cast<size_t>(m) * k, 201, 1.5f);
      std::vector<std::unique_ptr<PackedMatrix>> parts;
      std::vector<const PackedMatrix*> ptrs;
      std::vector<float> bias;
      int n = 0;
      for (size_t p = 0; p < rows.size(); ++p) {
        auto w = random_vec(static_cast<size_t>(rows[p]) * k, 210 + p, 0.05f);
        parts.push_back(be->pack_as(w.data(), rows[p], k, mixed && p < 2 ? ComputeType::int8 : ct));
        ptrs.push_back(parts.back().get());
        auto b = random_vec(rows[p], 220 + p, 0.3f);
        bias.insert(bias.end(), b.begin(), b.end());
        n += rows[p];
      }
      auto stacked = be->stack_packed(ptrs);
      ASSERT_TRUE(stacked.ok()) << stacked.message();
      ASSERT_EQ((*stacked)->n_out, n);
      ASSERT_EQ((*stacked)->n_in, k);
      std::vector<float> whole(static_cast<size_t>(m) * n);
      be->linear(x.data(), m, k, **stacked, bias.data(), Activation::gelu, false, whole.data(), n);
      int col0 = 0;
      for (size_t p = 0; p < rows.size(); ++p) {
        std::vector<float> y(static_cast<size_t>(m) * rows[p]);
        be->linear(x.data(), m, k, *parts[p], bias.data() + col0, Activation::gelu, false, y.data(), rows[p]);
        size_t bad = 0;
        for (int r = 0; r < m; ++r)
          for (int j = 0; j < rows[p]; ++j)
            if (y[static_cast<size_t>(r) * rows[p] + j] != whole[static_cast<size_t>(r) * n + col0 + j]) ++bad;
        EXPECT_EQ(bad, 0u) << "part " << p << ": " << bad << " outputs differ from the stacked GEMM's";
        col0 += rows[p];
      }
    }
  }
}

TEST_P(FusedOps, StackingRefusesMismatchedParts) {
  auto be = backend(ComputeType::int8);
  ASSERT_TRUE(be);
  auto w = random_vec(64 * 64, 301);
  auto a = be->pack_as(w.data(), 32, 64, ComputeType::int8);
  auto b16 = be->pack_as(w.data(), 32, 64, ComputeType::bf16);
  auto narrow = be->pack_as(w.data(), 32, 48, ComputeType::int8);
  auto odd = be->pack_as(w.data(), 24, 64, ComputeType::int8);
  auto odd10 = be->pack_as(w.data(), 48, 64, ComputeType::int10);  // 16-row panels, but int10 tiles are 32
  auto b10 = be->pack_as(w.data(), 32, 64, ComputeType::int10);
  auto bc = be->pack_as(w.data(), 32, 64, ComputeType::int8_bc);
  auto expect_error = [&](std::vector<const PackedMatrix*> parts, const std::string& words) {
    auto r = be->stack_packed(parts);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.message().find(words), std::string::npos) << r.message();
    EXPECT_EQ(r.message().find('\n'), std::string::npos) << "one line: " << r.message();
  };
  expect_error({}, "no matrices");
  expect_error({a.get(), nullptr}, "null");
  expect_error({a.get(), b16.get()}, "compute type");
  expect_error({a.get(), narrow.get()}, "width");
  expect_error({odd.get(), a.get()}, "whole panels");
  expect_error({odd10.get(), b10.get()}, "whole panels");
  expect_error({bc.get(), a.get()}, "int8_bc parts must come last");
  // A partial panel is fine at the end.
  auto ok = be->stack_packed({a.get(), odd.get()});
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ((*ok)->n_out, 56);
}

// The fused op's results do not depend on the thread count (the work split
// is fixed, kernels.h), as for linear().
TEST_P(FusedOps, IdenticalAtOneAndTwoThreads) {
  for (ComputeType ct : kTypes) {
    auto one = backend(ct, 1), two = backend(ct, 2);
    ASSERT_TRUE(one && two);
    // Several row blocks (96) and column blocks (128), split blocks that
    // straddle tiles, bf16 out; and an MLP up with its LayerNorm and GELU.
    const Case c{300, 256, 600, false, Activation::none, false, true, 200, "stacked K/V, 3 layers"};
    const Case d{300, 256, 1024, true, Activation::gelu, false, false, 0, "MLP up"};
    for (const Case* cc : {&c, &d}) {
      SCOPED_TRACE(case_name(*cc, ct) + " on " + variant_name(GetParam()));
      const Inputs in = make_inputs(*cc);
      auto w1 = one->pack_as(in.w.data(), cc->n, cc->k, ct);
      auto w2 = two->pack_as(in.w.data(), cc->n, cc->k, ct);
      EXPECT_TRUE(run_fused(*one, *cc, in, *w1) == run_fused(*two, *cc, in, *w2));
    }
  }
}

// Loading stacks the projections at every compute type (so the encoder and
// compute_cross take the one-GEMM paths that the oracle tests then check end
// to end) and releases the per-layer matrices.
TEST_P(FusedOps, LoadedModelIsStacked) {
  for (ComputeType ct : {ComputeType::f32, ComputeType::bf16, ComputeType::int8}) {
    SCOPED_TRACE(std::string(compute_type_name(ct)) + " on " + variant_name(GetParam()));
    auto be = backend(ct);
    ASSERT_TRUE(be);
    auto model = load_model(test::shared("oracle/micro/model.bin"), *be);
    ASSERT_TRUE(model.ok()) << model.message();
    const WhisperModel& m = **model;
    const int a = m.hp.n_audio_state, s = m.hp.n_text_state;
    for (const EncoderLayerWeights& e : m.encoder) {
      // int8: the query and key in int8, the value in int8_bc
      // (layer_compute_type), stacked as one (its correction on V's rows).
      const LinearWeights& st = e.qkv;
      const int rows = 3 * a;
      ASSERT_TRUE(st.w);
      EXPECT_EQ(st.w->n_out, rows);
      EXPECT_EQ(st.w->n_in, a);
      ASSERT_EQ(st.b.size(), static_cast<size_t>(rows));
      // Whisper's keys have no bias: zeros after the query's.
      for (int i = a; i < 2 * a; ++i) EXPECT_EQ(st.b[i], 0.0f);
      EXPECT_FALSE(e.attn.query.w || e.attn.key.w);
      EXPECT_FALSE(e.attn.value.w);
    }
    // The cheaper GELU exactly where an 8-bit GEMM follows (conv2, MLP down).
    const Activation want = ct == ComputeType::int8 ? Activation::gelu_q8 : Activation::gelu;
    EXPECT_EQ(m.conv1_act, want);
    EXPECT_EQ(m.encoder_mlp_act, want);
    for (const LinearWeights* kv : {&m.cross_k, &m.cross_v}) {
      ASSERT_TRUE(kv->w);
      EXPECT_EQ(kv->w->n_out, m.hp.n_text_layer * s);
    }
    EXPECT_TRUE(m.cross_k.b.empty());  // no key bias anywhere
    EXPECT_EQ(m.cross_v.b.size(), static_cast<size_t>(m.hp.n_text_layer * s));
    for (const DecoderLayerWeights& d : m.decoder) EXPECT_FALSE(d.cross.key.w || d.cross.value.w);
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, FusedOps,
                         all_variants(), [](const auto& info) { return variant_name(info.param); });

}  // namespace
}  // namespace ama
