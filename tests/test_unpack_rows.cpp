// Backend::unpack_row, which reads one row W[n] back out of a packed matrix
// (the decoder's token-embedding lookups read the packed logits matrix).
// For every packed format, at shapes that are not whole panels (n_out not a
// multiple of 16 or 32, int10's odd last tile of one panel) and K tails
// (n_in not a multiple of 2, 4 or 64), the rows must equal what packing
// made of the input: f32 exactly, bf16 the bf16 rounding, int8 and int10
// the per-channel quantization q * scale, recomputed here from the input.
// And they must be what the GEMMs multiply by: linear() on a random row
// agrees with dot products against the unpacked rows within the rounding
// of the activations alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "core/half.h"

namespace ama {
namespace {

std::vector<float> random_matrix(int n_out, int n_in, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 0.5f);
  std::vector<float> w(static_cast<size_t>(n_out) * n_in);
  for (float& v : w) v = d(g);
  // A row of zeros (int scales fall back to 1) and a row with one outlier
  // (the per-channel scale is set by it).
  if (n_out > 2) {
    std::fill_n(w.begin() + n_in, n_in, 0.0f);
    w[2 * static_cast<size_t>(n_in)] = 40.0f;
  }
  return w;
}

// What packing at `ct` makes of row n of w, computed independently of the
// packing code: the bf16 rounding, or round(w / s) * s with s = max|w| / qmax.
std::vector<float> expected_row(const std::vector<float>& w, int n_in, int n, ComputeType ct) {
  const float* r = w.data() + static_cast<size_t>(n) * n_in;
  std::vector<float> e(r, r + n_in);
  if (ct == ComputeType::f32) return e;
  if (ct == ComputeType::bf16) {
    for (float& v : e) v = bf16_to_f32(f32_to_bf16(v));
    return e;
  }
  const float qmax = ct == ComputeType::int8 ? 127.0f : 511.0f;
  float mx = 0;
  for (float v : e) mx = std::max(mx, std::fabs(v));
  const float s = mx > 0 ? mx / qmax : 1.0f;
  for (float& v : e) v = static_cast<float>(std::lrint(v / s)) * s;
  return e;
}

std::unique_ptr<Backend> cpu_backend() {
  CpuBackendOptions o;
  o.n_threads = 2;
  auto b = make_cpu_backend(o);
  EXPECT_TRUE(b.ok()) << b.message();
  return std::move(b.value());
}

struct Shape {
  int n_out, n_in;
};
// 1 x 1; n_out 17 (two panels, the second holding one row); 33 and 50 (int10:
// a last tile of one panel); 100 x 3 (K far below one pair group); 48 x 130
// (K pairs and quads with a tail); 96 x 64 (whole panels and tiles).
const Shape kShapes[] = {{1, 1}, {17, 5}, {33, 130}, {50, 77}, {100, 3}, {48, 130}, {96, 64}};
const ComputeType kTypes[] = {ComputeType::f32, ComputeType::bf16, ComputeType::int8, ComputeType::int10};

TEST(UnpackRows, EveryFormatGivesThePackedValues) {
  auto be = cpu_backend();
  for (ComputeType ct : kTypes)
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(std::string(compute_type_name(ct)) + " " + std::to_string(s.n_out) + " x " + std::to_string(s.n_in));
      const auto w = random_matrix(s.n_out, s.n_in, 11u + s.n_out * 7u + s.n_in);
      auto p = be->pack_as(w.data(), s.n_out, s.n_in, ct);
      // One float past the row: unpack_row writes n_in values and no more.
      std::vector<float> row(s.n_in + 1);
      int rounded = 0;
      for (int n = 0; n < s.n_out; ++n) {
        row[s.n_in] = -7.0f;
        be->unpack_row(*p, n, row.data());
        EXPECT_EQ(row[s.n_in], -7.0f) << "row " << n << " wrote past n_in";
        const auto e = expected_row(w, s.n_in, n, ct);
        for (int k = 0; k < s.n_in; ++k) {
          ASSERT_EQ(row[k], e[k]) << "row " << n << " k " << k << " input " << w[static_cast<size_t>(n) * s.n_in + k];
          rounded += e[k] != w[static_cast<size_t>(n) * s.n_in + k];
        }
      }
      // The expected values are not the input itself except at f32, so the
      // test sees the format's rounding (and the zero row stays zero).
      if (ct == ComputeType::f32) {
        EXPECT_EQ(rounded, 0);
      } else if (s.n_out * s.n_in > 50) {
        EXPECT_GT(rounded, s.n_out * s.n_in / 4);
      }
    }
}

// Stacked matrices (Backend::stack_packed) keep each part's rows in order.
TEST(UnpackRows, StackedMatrices) {
  auto be = cpu_backend();
  for (ComputeType ct : kTypes) {
    SCOPED_TRACE(compute_type_name(ct));
    const int n_in = 70;
    const auto a = random_matrix(32, n_in, 3), b = random_matrix(33, n_in, 4);
    auto pa = be->pack_as(a.data(), 32, n_in, ct), pb = be->pack_as(b.data(), 33, n_in, ct);
    auto st = be->stack_packed({pa.get(), pb.get()});
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_EQ((*st)->n_out, 65);
    std::vector<float> row(n_in);
    for (int n = 0; n < 65; ++n) {
      be->unpack_row(**st, n, row.data());
      const auto e = n < 32 ? expected_row(a, n_in, n, ct) : expected_row(b, n_in, n - 32, ct);
      for (int k = 0; k < n_in; ++k) ASSERT_EQ(row[k], e[k]) << "row " << n << " k " << k;
    }
  }
}

// y = x W^T from linear() against sum_k x[k] unpacked[n][k] in double: the
// difference is the activation rounding (none at f32; bf16: 2^-9 of each
// |x|; u8 activations for int8: half of (max - min) / 255; 16-bit ones for
// int10: half of (max - min) / 65535) times sum |w|, plus float32
// accumulation (1e-5 of sum |x w| covers n_in <= 130 with room).
TEST(UnpackRows, RowsAreWhatTheGemmMultipliesBy) {
  auto be = cpu_backend();
  for (ComputeType ct : kTypes)
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(std::string(compute_type_name(ct)) + " " + std::to_string(s.n_out) + " x " + std::to_string(s.n_in));
      const auto w = random_matrix(s.n_out, s.n_in, 5u + s.n_out + s.n_in);
      auto p = be->pack_as(w.data(), s.n_out, s.n_in, ct);
      std::mt19937 g(9);
      std::normal_distribution<float> d(0.0f, 1.0f);
      std::vector<float> x(s.n_in);
      for (float& v : x) v = d(g);
      const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
      double step = 0;  // the largest activation rounding error
      if (ct == ComputeType::bf16) step = std::ldexp(1.0, -9) * std::max(std::fabs(*lo), std::fabs(*hi));
      if (ct == ComputeType::int8) step = (*hi - *lo) / 255.0 / 2;
      if (ct == ComputeType::int10) step = (*hi - *lo) / 65535.0 / 2;
      std::vector<float> y(s.n_out), row(s.n_in);
      be->linear(x.data(), 1, s.n_in, *p, nullptr, Activation::none, false, y.data(), s.n_out);
      for (int n = 0; n < s.n_out; ++n) {
        be->unpack_row(*p, n, row.data());
        double dot = 0, abs_xw = 0, abs_w = 0;
        for (int k = 0; k < s.n_in; ++k) {
          dot += static_cast<double>(x[k]) * row[k];
          abs_xw += std::fabs(static_cast<double>(x[k]) * row[k]);
          abs_w += std::fabs(row[k]);
        }
        EXPECT_NEAR(y[n], dot, step * abs_w * 1.01 + 1e-5 * abs_xw + 1e-6) << "row " << n;
      }
    }
}

}  // namespace
}  // namespace ama
