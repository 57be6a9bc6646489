// whisper.cpp's quantized ggml types (src/model/ggml_quants.h): every type
// round-trips within the error bound its format allows; hand-built blocks
// decode to values worked out by hand from ggml-common.h's layouts (so a
// layout mistake made the same way in the encoder and the decoder cannot
// pass); bad files fail with one clear message; and a quantized model's
// logits, run through the int8 path, stay within the fast-path bar of an
// f32 run on the same (dequantized) weights.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "backend/cpu/cpu_backend.h"
#include "core/half.h"
#include "core/splitmix64.h"
#include "decode/transcriber.h"
#include "model/ggml_file.h"
#include "model/ggml_quants.h"
#include "model/test_model.h"
#include "model/whisper_model.h"
#include "test_util.h"

#ifndef AMA_CLI_PATH
#define AMA_CLI_PATH "amanuensis"
#endif

namespace ama {
namespace {

const std::string kVocab = AMA_SHARED_DIR "/models/whisper-vocab/for-tests-ggml-base.bin";

const test::ProcessTempDir kTmp("ama_ggml_quants");  // removed when the tests end
std::string tmp(const std::string& name) { return kTmp.file(name); }

const std::vector<GgmlType> kQuantTypes = {GgmlType::q4_0, GgmlType::q4_1, GgmlType::q5_0, GgmlType::q5_1,
                                           GgmlType::q8_0, GgmlType::q2_k, GgmlType::q3_k, GgmlType::q4_k,
                                           GgmlType::q5_k, GgmlType::q6_k};

GgmlTypeInfo info_of(GgmlType t) { return *ggml_type_info(static_cast<int32_t>(t)); }

// Deterministic N(0, 1) values (Box-Muller on splitmix64).
std::vector<float> gaussian(size_t n, uint64_t seed, float sd = 1.0f) {
  SplitMix64 g(seed);
  auto u = [&] { return (static_cast<double>(g.next() >> 11) + 0.5) / 9007199254740992.0; };
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(sd * std::sqrt(-2 * std::log(u())) * std::cos(2 * M_PI * u()));
  return v;
}

// ---- Error bounds, derived from each format and our round-to-nearest with
// scales rounded up in magnitude (ggml_quants.h). f16 rounding of a scale
// adds at most 2^-10 relative (kF16); kEps covers float arithmetic (a few
// ulps of the values involved).
constexpr double kF16 = 1.0 / 1024;

struct Bound {
  double tight;  // |err| <= tight for every element whose code is not at the clamped end
  double loose;  // and <= loose for the rest (see symmetric types)
  bool tight_applies;
};

// f16 rounds a scale up by at most 2^-10 relative, or 2^-24 absolute below
// f16's normal range (6.1e-5).
double f16up(double v) { return v * (1 + kF16) + 0x1p-24; }

// Symmetric with ggml's sign trick (q4_0, q5_0, q3_k, q6_k sub-blocks): the
// largest-magnitude value x_m maps to -neg, so the step is at least
// s = |x_m| / neg and at most D. Codes run from -neg to neg - 1: a value of
// the opposite sign beyond (neg - 0.5) * s may be clamped to neg - 1, which
// costs up to one step instead of half.
Bound symmetric_bound(float x, double amax, int neg, double D) {
  const double s = amax / neg;
  const bool inner = std::fabs(x) <= (neg - 0.5) * s;
  return {D / 2, D, inner};
}

// Per element bound for `t` on block-aligned data x (the whole row).
std::vector<Bound> bounds_for(GgmlType t, const std::vector<float>& x) {
  std::vector<Bound> b(x.size());
  const int block = info_of(t).block;
  for (size_t b0 = 0; b0 < x.size(); b0 += block) {
    const float* p = x.data() + b0;
    double amax = 0, lo = p[0], hi = p[0];
    for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(double(p[i]))), lo = std::min(lo, double(p[i])), hi = std::max(hi, double(p[i]));
    const double eps = 4e-7 * std::max(amax, 1e-30);
    switch (t) {
      case GgmlType::q8_0: {
        const double D = f16up(amax / 127);
        for (int i = 0; i < block; ++i) b[b0 + i] = {D / 2 + eps, D / 2 + eps, true};
        break;
      }
      case GgmlType::q4_0:
      case GgmlType::q5_0: {
        const int neg = t == GgmlType::q4_0 ? 8 : 16;
        const double D = f16up(amax / neg);
        for (int i = 0; i < block; ++i) {
          b[b0 + i] = symmetric_bound(p[i], amax, neg, D);
          b[b0 + i].tight += eps, b[b0 + i].loose += eps;
        }
        break;
      }
      case GgmlType::q4_1:
      case GgmlType::q5_1: {
        const int nmax = t == GgmlType::q4_1 ? 15 : 31;
        // The offset is f16(min) rounded down (2^-10 relative, or 2^-24 below f16's normals).
        const double D = f16up((hi - lo + std::fabs(lo) * kF16 + 0x1p-24) / nmax);
        for (int i = 0; i < block; ++i) b[b0 + i] = {D / 2 + eps, D / 2 + eps, true};
        break;
      }
      case GgmlType::q2_k:
      case GgmlType::q4_k:
      case GgmlType::q5_k: {
        // value = d*sc_j*q - dmin*m_j: the sub-block min m_j = max(0, -min_j)
        // rounded up to dmin = max_j m_j / smax; then the step s_j = (max_j +
        // m'_j) / nmax rounded up to d = max_j s_j / smax. Every value lands
        // inside [0, nmax] steps, so |err| <= (s_j + d) / 2.
        const int sub = t == GgmlType::q2_k ? 16 : 32, nmax = t == GgmlType::q2_k ? 3 : t == GgmlType::q4_k ? 15 : 31;
        const int smax = t == GgmlType::q2_k ? 15 : 63;
        double M = 0, mj[16], hj[16], S = 0, sj[16];
        for (int j = 0; j < block / sub; ++j) {
          double l = p[j * sub], h = p[j * sub];
          for (int i = 0; i < sub; ++i) l = std::min(l, double(p[j * sub + i])), h = std::max(h, double(p[j * sub + i]));
          mj[j] = std::max(0.0, -l), hj[j] = h, M = std::max(M, mj[j]);
        }
        const double dmin = f16up(M / smax);
        for (int j = 0; j < block / sub; ++j) sj[j] = std::max(0.0, (hj[j] + mj[j] + dmin) / nmax), S = std::max(S, sj[j]);
        const double d = f16up(S / smax);
        for (int j = 0; j < block / sub; ++j)
          for (int i = 0; i < sub; ++i) b[b0 + j * sub + i] = {(sj[j] + d) / 2 + eps, (sj[j] + d) / 2 + eps, true};
        break;
      }
      case GgmlType::q3_k:
      case GgmlType::q6_k: {
        // Per 16: step |s_j| = amax_j / neg, rounded up to the super-block's d = max_j |s_j| / smax.
        const int neg = t == GgmlType::q3_k ? 4 : 32, smax = t == GgmlType::q3_k ? 31 : 127;
        double aj[16], A = 0;
        for (int j = 0; j < 16; ++j) {
          aj[j] = 0;
          for (int i = 0; i < 16; ++i) aj[j] = std::max(aj[j], std::fabs(double(p[16 * j + i])));
          A = std::max(A, aj[j] / neg);
        }
        const double d = f16up(A / smax);
        for (int j = 0; j < 16; ++j)
          for (int i = 0; i < 16; ++i) {
            auto& e = b[b0 + 16 * j + i];
            e = symmetric_bound(p[16 * j + i], aj[j], neg, aj[j] / neg + d);
            e.tight += eps, e.loose += eps;
          }
        break;
      }
      default: break;
    }
  }
  return b;
}

// Quantizes rows of n, decodes them, and checks every element against its
// bound; on failure names the worst element (by error / bound).
void check_round_trip(GgmlType t, const std::vector<float>& x, size_t row, const std::string& what) {
  SCOPED_TRACE(std::string(info_of(t).name) + ", " + what);
  ASSERT_EQ(x.size() % row, 0u);
  const size_t rb = ggml_row_bytes(info_of(t), row);
  std::vector<uint8_t> q(rb * (x.size() / row));
  std::vector<float> y(x.size());
  for (size_t r = 0; r < x.size() / row; ++r) {
    Status s = quantize_row(t, x.data() + r * row, row, q.data() + r * rb);
    ASSERT_TRUE(s.ok()) << s.message();
    dequantize_row(t, q.data() + r * rb, row, y.data() + r * row);
  }
  const auto bounds = bounds_for(t, x);
  double worst = 0, max_err = 0;
  size_t wi = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double err = std::fabs(double(y[i]) - x[i]);
    const double lim = bounds[i].tight_applies ? bounds[i].tight : bounds[i].loose;
    const double ratio = lim > 0 ? err / lim : (err > 0 ? INFINITY : 0);
    max_err = std::max(max_err, err);
    if (!(ratio <= worst)) worst = ratio, wi = i;
  }
  EXPECT_LE(worst, 1.0) << "worst element " << wi << ": x " << x[wi] << ", decoded " << y[wi] << ", error "
                        << std::fabs(double(y[wi]) - x[wi]) << ", bound "
                        << (bounds[wi].tight_applies ? bounds[wi].tight : bounds[wi].loose);
  std::printf("[quant] %-5s %-28s max abs error %.3g, worst error / bound %.3f\n", info_of(t).name, what.c_str(),
              max_err, worst);
}

TEST(GgmlQuants, TypeTable) {
  // Block sizes and bytes as in ggml-common.h; ftypes as in ggml.h's ggml_ftype.
  struct Want {
    GgmlType t;
    const char* name;
    int block, bytes, ftype;
  };
  const Want want[] = {{GgmlType::q4_0, "q4_0", 32, 18, 2},   {GgmlType::q4_1, "q4_1", 32, 20, 3},
                       {GgmlType::q5_0, "q5_0", 32, 22, 8},   {GgmlType::q5_1, "q5_1", 32, 24, 9},
                       {GgmlType::q8_0, "q8_0", 32, 34, 7},   {GgmlType::q2_k, "q2_k", 256, 84, 10},
                       {GgmlType::q3_k, "q3_k", 256, 110, 11}, {GgmlType::q4_k, "q4_k", 256, 144, 12},
                       {GgmlType::q5_k, "q5_k", 256, 176, 13}, {GgmlType::q6_k, "q6_k", 256, 210, 14}};
  for (const auto& w : want) {
    auto i = ggml_type_info(static_cast<int32_t>(w.t));
    ASSERT_TRUE(i.has_value()) << w.name;
    EXPECT_STREQ(i->name, w.name);
    EXPECT_EQ(i->block, w.block) << w.name;
    EXPECT_EQ(i->block_bytes, w.bytes) << w.name;
    EXPECT_EQ(i->ftype, w.ftype) << w.name;
    EXPECT_EQ(ggml_type_of_ftype(w.ftype)->type, w.t) << w.name;
    EXPECT_EQ(ggml_type_from_name(w.name)->type, w.t) << w.name;
  }
  EXPECT_EQ(ggml_type_from_name("Q4_K")->type, GgmlType::q4_k);
  EXPECT_FALSE(ggml_type_info(4).has_value());   // q4_2, removed from ggml
  EXPECT_FALSE(ggml_type_info(9).has_value());   // q8_1: activations only
  EXPECT_FALSE(ggml_type_info(15).has_value());  // q8_k: activations only
  EXPECT_FALSE(ggml_type_info(-1).has_value());
  EXPECT_FALSE(ggml_type_of_ftype(4).has_value());  // MOSTLY_Q4_1_SOME_F16: whisper.cpp never writes it
  EXPECT_EQ(ggml_type_name(9), "q8_1");
  EXPECT_EQ(ggml_type_name(42), "type 42");
  EXPECT_EQ(ggml_row_bytes(info_of(GgmlType::q5_k), 512), 2u * 176);
}

TEST(GgmlQuants, RoundTripWithinFormatBound) {
  for (GgmlType t : kQuantTypes) {
    const size_t block = info_of(t).block;
    // One block.
    check_round_trip(t, gaussian(block, 11), block, "one block");
    // Many rows of a few blocks, at Whisper's weight scale (N(0, 1/512)).
    check_round_trip(t, gaussian(37 * 2 * block, 12, 0.044f), 2 * block, "37 rows x 2 blocks");
    // Awkward contents: zeros, a constant, all positive, all negative, one outlier, tiny values.
    std::vector<float> odd(6 * block);
    for (size_t i = 0; i < block; ++i) {
      odd[i] = 0;
      odd[block + i] = -0.3f;
      odd[2 * block + i] = 1.0f + 0.01f * static_cast<float>(i);
      odd[3 * block + i] = -2.0f - 0.02f * static_cast<float>(i % 7);
      odd[4 * block + i] = (i == block / 3) ? 50.0f : 0.01f * static_cast<float>(i % 5);
      odd[5 * block + i] = 1e-6f * static_cast<float>(static_cast<int>(i % 9) - 4);
    }
    check_round_trip(t, odd, block, "zero/constant/signed/outlier/tiny blocks");
  }
}

TEST(GgmlQuants, EncoderRejectsBadInput) {
  std::vector<uint8_t> buf(1024);
  std::vector<float> x(64, 1.0f);
  Status s = quantize_row(GgmlType::q4_k, x.data(), 64, buf.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a multiple of q4_k's block size 256"), std::string::npos) << s.message();
  x[5] = NAN;
  s = quantize_row(GgmlType::q8_0, x.data(), 32, buf.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("non-finite value at element 5"), std::string::npos) << s.message();
  x[5] = 1e9f;  // 1e9 / 127 does not fit in f16 (max 65504)
  s = quantize_row(GgmlType::q8_0, x.data(), 32, buf.data());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("does not fit in f16"), std::string::npos) << s.message();
}

// ---- Hand-built blocks. Each expected value is worked out from the layout
// in ggml-common.h, independently of our encoder.

std::vector<float> decode(GgmlType t, const std::vector<uint8_t>& bytes) {
  EXPECT_EQ(bytes.size(), static_cast<size_t>(info_of(t).block_bytes));
  std::vector<float> y(info_of(t).block);
  dequantize_row(t, bytes.data(), y.size(), y.data());
  return y;
}
void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) { b[off] = v & 0xFF, b[off + 1] = v >> 8; }

TEST(GgmlQuants, HandBuiltLegacyBlocks) {
  {  // q4_0: d 0.5; qs[j] = j | (15 - j) << 4: element j = (j - 8) / 2, element j + 16 = (7 - j) / 2.
    std::vector<uint8_t> b(18);
    put16(b, 0, 0x3800);
    for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    auto y = decode(GgmlType::q4_0, b);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;
      EXPECT_EQ(y[j + 16], (7 - j) * 0.5f) << j + 16;
    }
  }
  {  // q4_1: d 0.25, m -1; qs[j] = j | j << 4: elements j and j + 16 = j / 4 - 1.
    std::vector<uint8_t> b(20);
    put16(b, 0, 0x3400);
    put16(b, 2, 0xBC00);
    for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | (j << 4));
    auto y = decode(GgmlType::q4_1, b);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(y[j], j * 0.25f - 1) << j;
      EXPECT_EQ(y[j + 16], j * 0.25f - 1) << j + 16;
    }
  }
  {  // q5_0: d 1; qh = 0xAAAAAAAA (bit 4 of every odd element); qs[j] = j | (15 - j) << 4.
    std::vector<uint8_t> b(22);
    put16(b, 0, 0x3C00);
    for (int i = 0; i < 4; ++i) b[2 + i] = 0xAA;
    for (int j = 0; j < 16; ++j) b[6 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    auto y = decode(GgmlType::q5_0, b);
    EXPECT_EQ(y[0], -16.0f);      // 0 - 16
    EXPECT_EQ(y[1], 1.0f);        // 1 + 16 - 16
    EXPECT_EQ(y[14], -2.0f);      // 14 - 16
    EXPECT_EQ(y[16], -1.0f);      // 15 - 16
    EXPECT_EQ(y[17], 14.0f);      // 14 + 16 - 16
    EXPECT_EQ(y[31], 0.0f);       // 0 + 16 - 16
  }
  {  // q5_1: d 0.5, m 2; qh = 0x0000FFFF (bit 4 of elements 0-15); qs = 3 | 5 << 4.
    std::vector<uint8_t> b(24);
    put16(b, 0, 0x3800);
    put16(b, 2, 0x4000);
    b[4] = b[5] = 0xFF;
    for (int j = 0; j < 16; ++j) b[8 + j] = 3 | (5 << 4);
    auto y = decode(GgmlType::q5_1, b);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(y[j], 19 * 0.5f + 2) << j;
      EXPECT_EQ(y[j + 16], 5 * 0.5f + 2) << j + 16;
    }
  }
  {  // q8_0: d 0.125, qs[e] = e - 16.
    std::vector<uint8_t> b(34);
    put16(b, 0, 0x3000);
    for (int e = 0; e < 32; ++e) b[2 + e] = static_cast<uint8_t>(static_cast<int8_t>(e - 16));
    auto y = decode(GgmlType::q8_0, b);
    for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], (e - 16) * 0.125f) << e;
  }
}

TEST(GgmlQuants, HandBuiltKQuantBlocks) {
  {  // q2_k: scales[16] qs[64] d dmin. d 1, dmin 0.5.
    std::vector<uint8_t> b(84);
    b[0] = 0x21;   // sub-block 0: scale 1, min 2
    b[2] = 0x03;   // sub-block 2: scale 3, min 0
    b[9] = 0x15;   // sub-block 9: scale 5, min 1
    b[12] = 0x42;  // sub-block 12: scale 2, min 4
    b[16 + 1] = 0x03;       // qs[1] bits 0-1: element 1 (first half, group 0), q 3
    b[16 + 2] = 0x08;       // qs[2] bits 2-3: element 32 + 2 = 34, q 2
    b[16 + 33] = 0x30;      // qs[33] bits 4-5: element 128 + 64 + 1 = 193, q 3
    put16(b, 80, 0x3C00);
    put16(b, 82, 0x3800);
    auto y = decode(GgmlType::q2_k, b);
    EXPECT_EQ(y[0], -1.0f);    // 1 * 0 - 0.5 * 2
    EXPECT_EQ(y[1], 2.0f);     // 1 * 3 - 0.5 * 2
    EXPECT_EQ(y[34], 6.0f);    // 3 * 2 - 0
    EXPECT_EQ(y[150], -0.5f);  // sub-block 9: 5 * 0 - 0.5 * 1
    EXPECT_EQ(y[193], 4.0f);   // sub-block 12: 2 * 3 - 0.5 * 4
    EXPECT_EQ(y[255], 0.0f);
  }
  {  // q3_k: hmask[32] qs[64] scales[12] d. d 0.5. Six-bit scale codes
     // (value + 32): default 32 = low nibble 0, high bits 2 (bytes 8-11 = 0xAA).
    std::vector<uint8_t> b(110);
    for (int i = 0; i < 32; ++i) b[i] = 0xFF;  // every high bit set: q = the low 2 bits
    uint8_t* sc = b.data() + 96;
    for (int i = 8; i < 12; ++i) sc[i] = 0xAA;
    sc[1] = 0xB3;  // scale 1 low nibble 3 (code 35: +3); scale 9 low nibble 0xB
    sc[9] = 0x9A;  // scale 9 (byte 8 + 9 % 4, bits 4-5) high bits 01: code 0x1B = 27: -5
    sc[6] = 0xF0;  // scale 14 low nibble 0xF
    sc[10] = 0xEA; // scale 14 (byte 8 + 14 % 4, bits 6-7) high bits 11: code 63: +31
    b[32 + 19] = 0x01;  // element 19: low bits 1
    b[19] = 0xFE;       // element 19's high bit (hmask[19] bit 0) clear: q = 1 - 4 = -3
    b[32 + 50] = 0x03;  // element 146 = 128 + 18: qs[32 + 18] bits 0-1, q = 3
    b[32 + 45] = 0x80;  // element 237 = 128 + 3*32 + 13: qs[32 + 13] bits 6-7 = 2
    b[13] = 0x7F;       // element 237's high bit (hmask[13] bit 7) clear: q = 2 - 4 = -2
    put16(b, 108, 0x3800);
    auto y = decode(GgmlType::q3_k, b);
    EXPECT_EQ(y[18], 0.0f);
    EXPECT_EQ(y[19], -4.5f);   // 0.5 * 3 * -3
    EXPECT_EQ(y[146], -7.5f);  // 0.5 * -5 * 3
    EXPECT_EQ(y[237], -31.0f); // 0.5 * 31 * -2
    EXPECT_EQ(y[13], 0.0f);    // sub-block 0: scale 0
  }
  // q4_k and q5_k share the 12-byte scales: scale/min 1 = 5/2 (bytes 1 and 5);
  // scale/min 6 = 37/50: low nibbles in byte 10 (0x25), top bits of the scale
  // in byte 2 bits 6-7 (10), of the min in byte 6 bits 6-7 (11).
  auto k4_scales = [](uint8_t* s) {
    s[1] = 5, s[5] = 2;
    s[10] = 0x25, s[2] = 0x80, s[6] = 0xC0;
  };
  {  // q4_k: d dmin scales[12] qs[128]. d 1, dmin 0.25.
    std::vector<uint8_t> b(144);
    put16(b, 0, 0x3C00);
    put16(b, 2, 0x3400);
    k4_scales(b.data() + 4);
    b[16 + 8] = 0x90;    // element 40 (sub-block 1): high nibble of qs[8] = 9
    b[16 + 104] = 0x07;  // element 200 (sub-block 6): low nibble of qs[96 + 8] = 7
    auto y = decode(GgmlType::q4_k, b);
    EXPECT_EQ(y[8], 0.0f);
    EXPECT_EQ(y[33], -0.5f);   // 5 * 0 - 0.25 * 2
    EXPECT_EQ(y[40], 44.5f);   // 5 * 9 - 0.25 * 2
    EXPECT_EQ(y[200], 246.5f); // 37 * 7 - 0.25 * 50
    EXPECT_EQ(y[232], 0.0f);   // sub-block 7: 0
  }
  {  // q5_k: d dmin scales[12] qh[32] qs[128]; the fifth bit of element e in bit e / 32 of qh[e % 32].
    std::vector<uint8_t> b(176);
    put16(b, 0, 0x3C00);
    put16(b, 2, 0x3400);
    k4_scales(b.data() + 4);
    b[16 + 8] = 0x42;         // qh[8]: bits 1 (element 40) and 6 (element 200)
    b[48 + 8] = 0x90;         // element 40: high nibble of qs[8] = 9
    b[48 + 104] = 0x07;       // element 200: low nibble of qs[104] = 7
    auto y = decode(GgmlType::q5_k, b);
    EXPECT_EQ(y[8], 0.0f);
    EXPECT_EQ(y[40], 124.5f);  // 5 * 25 - 0.5
    EXPECT_EQ(y[200], 838.5f); // 37 * 23 - 12.5
    EXPECT_EQ(y[72], 0.0f);
  }
  {  // q6_k: ql[128] qh[64] scales[16] d. d 0.5. Element 128h + 32g + l:
     // low 4 bits in ql[64h + l + 32 (g odd)] (low nibble for g < 2), top 2 in qh[32h + l] bits 2g.
    std::vector<uint8_t> b(210);
    int8_t* sc = reinterpret_cast<int8_t*>(b.data() + 192);
    sc[3] = -2, sc[10] = 7, sc[14] = 1;
    b[50] = 0x0A;        // element 50 (h 0, g 1, l 18): ql[50] low nibble
    b[128 + 18] = 0x08;  // qh[18] bits 2-3 = 2: q = 0x2A - 32 = 10
    b[98] = 0x53;        // element 162 (h 1, g 1, l 2): low nibble 3; element 226 (g 3): high nibble 5
    b[128 + 34] = 0xC0;  // qh[34]: bits 2-3 = 0 (element 162: q = 3 - 32), bits 6-7 = 3 (element 226: q = 53 - 32)
    put16(b, 208, 0x3800);
    auto y = decode(GgmlType::q6_k, b);
    EXPECT_EQ(y[50], -10.0f);    // 0.5 * -2 * 10
    EXPECT_EQ(y[48], 32.0f);     // 0.5 * -2 * -32
    EXPECT_EQ(y[162], -101.5f);  // 0.5 * 7 * -29
    EXPECT_EQ(y[226], 10.5f);    // 0.5 * 1 * 21
    EXPECT_EQ(y[0], 0.0f);       // scale 0
  }
}

// Our encoder's bytes decode to what it meant, including the packed fields
// that the hand-built blocks above only spot-check: a block of distinct
// values per code position survives the trip with each element nearest its
// own code.
TEST(GgmlQuants, EncoderUsesEveryCodePosition) {
  for (GgmlType t : kQuantTypes) {
    const int block = info_of(t).block;
    std::vector<float> x(block);
    for (int i = 0; i < block; ++i) x[i] = std::sin(0.37f * i) * (1.0f + 0.1f * (i % 16));
    check_round_trip(t, x, block, "sine block");
  }
}

// ---- Files.

HParams small_hp(int state) {
  HParams hp;
  hp.n_vocab = 51865;
  hp.n_audio_ctx = 1500;
  hp.n_audio_state = hp.n_text_state = state;
  hp.n_audio_head = hp.n_text_head = state / 64;
  hp.n_audio_layer = hp.n_text_layer = 1;
  hp.n_text_ctx = 64;
  hp.n_mels = 80;
  hp.ftype = 1;
  return hp;
}

std::string make_model(const std::string& name, int state, std::optional<GgmlType> quant, int ftype = 1,
                       uint64_t seed = 5) {
  TestModelOptions o;
  o.hp = small_hp(state);
  o.hp.ftype = ftype;
  o.seed = seed;
  o.vocab_source = kVocab;
  o.output = tmp(name);
  o.quant = quant;
  Status s = write_test_model(o);
  EXPECT_TRUE(s.ok()) << s.message();
  return o.output;
}

std::vector<char> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

struct TensorAt {
  std::string name;
  int32_t type;
  std::vector<int> ne;
  size_t start, data;  // offset of the record and of its data
};

// Walks the tensor records of a file whose header GgmlReader accepts.
std::vector<TensorAt> tensor_offsets(const std::vector<char>& b, size_t first) {
  std::vector<TensorAt> out;
  size_t o = first;
  while (o + 12 <= b.size()) {
    int32_t h[3];
    std::memcpy(h, b.data() + o, 12);
    TensorAt t;
    t.start = o;
    t.type = h[2];
    t.ne.resize(h[0]);
    std::memcpy(t.ne.data(), b.data() + o + 12, 4 * h[0]);
    t.name.assign(b.data() + o + 12 + 4 * h[0], h[1]);
    t.data = o + 12 + 4 * h[0] + h[1];
    uint64_t n = 1;
    for (int d : t.ne) n *= d;
    const auto info = ggml_type_info(t.type);
    o = t.data + ggml_row_bytes(*info, t.ne[0]) * (n / t.ne[0]);
    out.push_back(t);
  }
  return out;
}

size_t header_size(const std::string& path) {
  auto r = GgmlReader::open(path);
  EXPECT_TRUE(r.ok());
  auto h = r->read_header();
  EXPECT_TRUE(h.ok()) << h.message();
  size_t n = 4 + 44 + 8 + h->mel_filters.size() * 4 + 4;
  for (auto& t : h->vocab) n += 4 + t.size();
  return n;
}

// Reads every tensor of `path`; the first failure's message, or "" when all read.
std::string read_all(const std::string& path) {
  auto r = GgmlReader::open(path);
  if (!r) return r.message();
  auto h = r->read_header();
  if (!h) return h.message();
  std::vector<float> data;
  for (;;) {
    auto rec = r->next_tensor();
    if (!rec) return rec.message();
    if (rec->name.empty()) return "";
    data.resize(rec->n_elements);
    if (Status s = r->read_tensor_data(*rec, data.data()); !s) return s.message();
  }
}

void expect_has(std::string msg, std::initializer_list<const char*> parts) {
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();  // the CLI's line end
  EXPECT_FALSE(msg.empty()) << "expected an error";
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

TEST(GgmlQuantFiles, WrittenLikeWhisperCppQuantize) {
  // Per type: the header's ftype is 2000 + ggml_ftype, exactly the 2-D
  // tensors whisper.cpp quantizes are in that type, and the file loads.
  auto be = make_cpu_backend({.n_threads = 2});
  ASSERT_TRUE(be.ok()) << be.message();
  for (GgmlType t : kQuantTypes) {
    SCOPED_TRACE(info_of(t).name);
    const std::string p = make_model(std::string("w_") + info_of(t).name + ".bin", 256, t);
    const auto b = read_bytes(p);
    int32_t ftype;
    std::memcpy(&ftype, b.data() + 44, 4);
    EXPECT_EQ(ftype, 2000 + info_of(t).ftype);
    int n_quant = 0;
    for (const auto& r : tensor_offsets(b, header_size(p))) {
      const bool two_d = r.ne.size() == 2;
      const bool skipped = r.name == "encoder.conv1.bias" || r.name == "encoder.conv2.bias" ||
                           r.name.find("positional_embedding") != std::string::npos;
      const int32_t want = two_d && !skipped ? static_cast<int32_t>(t)
                           : r.ne.size() == 3 ? 1  // conv weights stay f16 in an f16 source
                                              : 0;
      EXPECT_EQ(r.type, want) << r.name;
      n_quant += r.type == static_cast<int32_t>(t);
    }
    // One layer each: 4 + 2 encoder, 8 + 2 decoder matrices, and the token embedding.
    EXPECT_EQ(n_quant, 17);
    EXPECT_EQ(read_all(p), "");
    auto m = load_model(p, **be);
    EXPECT_TRUE(m.ok()) << m.message();
  }
}

TEST(GgmlQuantFiles, BadQuantizedFilesFailClearly) {
  const std::string good = make_model("bad_src_q8.bin", 64, GgmlType::q8_0);
  const auto b = read_bytes(good);
  const auto recs = tensor_offsets(b, header_size(good));
  const TensorAt* q = nullptr;
  for (const auto& r : recs)
    if (r.type == static_cast<int32_t>(GgmlType::q8_0)) {
      q = &r;
      break;
    }
  ASSERT_NE(q, nullptr);
  auto patched = [&](const std::string& name, size_t off, int32_t v) {
    auto c = b;
    std::memcpy(c.data() + off, &v, 4);
    write_bytes(tmp(name), c);
    return read_all(tmp(name));
  };
  // Unknown type id, and the activation-only types.
  expect_has(patched("type42.bin", q->start + 8, 42), {q->name.c_str(), "unknown type id 42"});
  expect_has(patched("type9.bin", q->start + 8, 9), {q->name.c_str(), "q8_1"});
  // A quantized tensor of another type than the ftype says.
  expect_has(patched("mismatch.bin", q->start + 8, 2), {q->name.c_str(), "is q4_0", "ftype 2007 says q8_0"});
  // Quantized tensors in a file whose ftype says f16.
  expect_has(patched("f16ftype.bin", 44, 1), {q->name.c_str(), "is q8_0", "unquantized"});
  // Old (pre-May 2023) and future quantization versions, and ftypes nobody writes.
  expect_has(patched("v1.bin", 44, 1007), {"ftype 1007", "quantization version 1", "re-quantize"});
  expect_has(patched("v0.bin", 44, 7), {"ftype 7", "quantization version 0"});
  expect_has(patched("v3.bin", 44, 3007), {"ftype 3007", "version 3", "newer"});
  expect_has(patched("ftype4.bin", 44, 2004), {"ftype 2004", "not a model type we read"});
  expect_has(patched("ftype2001.bin", 44, 2001), {"ftype 2001", "not a known model type"});
  // A row length that is not a multiple of the block: an f32 tensor of 64
  // columns relabelled q4_k (ftype made to match).
  {
    auto c = b;
    const int32_t qk = 12, fk = 2012;
    std::memcpy(c.data() + 44, &fk, 4);
    for (const auto& r : recs)
      if (r.type == static_cast<int32_t>(GgmlType::q8_0)) std::memcpy(c.data() + r.start + 8, &qk, 4);
    write_bytes(tmp("rows.bin"), c);
    expect_has(read_all(tmp("rows.bin")), {q->name.c_str(), "rows of 64 elements", "q4_k's block size 256"});
  }
  // A corrupt block scale (f16 inf) in the first block.
  {
    auto c = b;
    c[q->data] = 0x00, c[q->data + 1] = 0x7C;
    write_bytes(tmp("infscale.bin"), c);
    expect_has(read_all(tmp("infscale.bin")), {q->name.c_str(), "non-finite", "element 0"});
  }
  // Truncated inside the quantized data and inside the first block.
  for (size_t cut : {q->data + 17, q->data + 1000}) {
    std::vector<char> c(b.begin(), b.begin() + static_cast<long>(cut));
    write_bytes(tmp("trunc.bin"), c);
    expect_has(read_all(tmp("trunc.bin")), {"truncated file", q->name.c_str()});
  }
  // Every cut point of the header and the first quantized record: an error, never a crash.
  for (size_t cut = q->start + 1; cut < q->data + 80; cut += 7) {
    std::vector<char> c(b.begin(), b.begin() + static_cast<long>(cut));
    write_bytes(tmp("trunc2.bin"), c);
    EXPECT_NE(read_all(tmp("trunc2.bin")), "") << "cut at " << cut;
  }
  // The writer refuses rows that do not divide into blocks.
  {
    auto w = GgmlWriter::create(tmp("wrows.bin"));
    ASSERT_TRUE(w.ok());
    std::vector<float> x(2 * 48, 0.5f);
    Status s = w->write_tensor("x", {2, 48}, GgmlType::q8_0, x.data());
    expect_has(s.message(), {"tensor 'x'", "rows of 48 elements", "q8_0's block size 32"});
  }
}

TEST(GgmlQuantFiles, CliMakeTestModelQuant) {
  const std::string cli = AMA_CLI_PATH;
  const std::string p = tmp("cli_q5_1.bin");
  auto r = test::run_command(cli + " make-test-model --dims 64,1,1,1,80,51865,64 --quant q5_1 -o " + p);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_all(p), "");
  const auto b = read_bytes(p);
  int32_t ftype;
  std::memcpy(&ftype, b.data() + 44, 4);
  EXPECT_EQ(ftype, 2009);
  // The CLI runs the quantized model end to end.
  const std::string out = tmp("cli_q5_1_logits.f32");
  r = test::run_command(cli + " logits -m " + p + " --audio " + test::shared("audio/jfk.wav") +
                        " --tokens 50258,50259,50359 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto logits = test::read_f32(out);
  ASSERT_EQ(logits.size(), 3u * 51865u);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  r = test::run_command(cli + " make-test-model --arch tiny --quant q4_k -o " + tmp("cli_tiny_q4k.bin"));
  EXPECT_NE(r.exit_code, 0);
  expect_has(r.err, {"q4_k", "multiple of 256", "rows of 384"});
  r = test::run_command(cli + " make-test-model --arch tiny --quant q9 -o " + tmp("cli_q9.bin"));
  EXPECT_NE(r.exit_code, 0);
  expect_has(r.err, {"--quant", "'q9'", "q8_0"});
}

// ---- Fidelity: logits of quantized models.
//
// A quantized file is dequantized to f32 at load and repacked into each
// layer's compute type (layer_compute_type), so at the default int8 compute
// a q8_0 weight goes through a second quantization: per-channel int8 (or
// int10) over the whole row instead of one scale per 32. The test compares
// the quantized file at int8 against f32 compute on the SAME weights (the
// file dequantized and written as f32), which isolates what our compute adds
// to the file's own quantization, and reports the file's own error too (f32
// compute, quantized weights against the original unquantized ones).

struct LogitStats {
  double max_abs = 0, worst_corr = 1;
};

LogitStats compare(const std::vector<float>& a, const std::vector<float>& ref, int V) {
  LogitStats st;
  EXPECT_EQ(a.size(), ref.size());
  if (a.size() != ref.size() || a.empty()) return {INFINITY, -1};
  for (size_t r = 0; r < a.size() / V; ++r) {
    const float* x = a.data() + r * V;
    const float* y = ref.data() + r * V;
    double mx = 0, my = 0;
    for (int j = 0; j < V; ++j) mx += x[j], my += y[j], st.max_abs = std::max(st.max_abs, std::fabs(double(x[j]) - y[j]));
    mx /= V, my /= V;
    double sxy = 0, sxx = 0, syy = 0;
    for (int j = 0; j < V; ++j) sxy += (x[j] - mx) * (y[j] - my), sxx += (x[j] - mx) * (x[j] - mx), syy += (y[j] - my) * (y[j] - my);
    st.worst_corr = std::min(st.worst_corr, sxy / std::sqrt(sxx * syy));
  }
  return st;
}

// Logits [windows x tokens][n_vocab] of `path` at compute type `ct`, for a
// few 30 s windows of jfk.wav starting at different offsets.
std::vector<float> window_logits(const std::string& path, ComputeType ct, const std::vector<int>& tokens) {
  static const std::vector<float> audio = [] {
    auto a = load_audio(test::shared("audio/jfk.wav"));
    EXPECT_TRUE(a.ok()) << a.message();
    return a.ok() ? *a : std::vector<float>{};
  }();
  CpuBackendOptions bo;
  bo.n_threads = 2;
  bo.compute = ct;
  auto be = make_cpu_backend(bo);
  EXPECT_TRUE(be.ok()) << be.message();
  if (!be.ok()) return {};
  auto model = load_model(path, **be);
  EXPECT_TRUE(model.ok()) << model.message();
  if (!model.ok()) return {};
  std::vector<float> out;
  for (size_t offset : {size_t{0}, size_t{2 * 16000}, size_t{5 * 16000}}) {
    if (audio.size() <= offset) break;
    LogMel lm((*model)->mel_filters, (*model)->hp.n_mels);
    const size_t n = audio.size() - offset;
    auto mel = lm.compute(audio.data() + offset, n);
    Transcriber t(*model, **be);
    Status s = t.encode_window(mel.data(), LogMel::total_frames(n));
    EXPECT_TRUE(s.ok()) << s.message();
    auto l = t.logits_for(tokens);
    EXPECT_TRUE(l.ok()) << l.message();
    if (!l.ok()) return {};
    out.insert(out.end(), l->begin(), l->end());
  }
  return out;
}

TEST(GgmlQuantFidelity, QuantizedModelLogits) {
  // A 256-wide model (k-quants need rows of 256), 2 + 2 layers, the real
  // multilingual vocabulary. AMA_QUANT_FIDELITY_DIMS=S,H,LA,LT measures
  // another shape (the README's base figures: 512,8,6,6).
  int dims[4] = {256, 4, 2, 2};
  if (const char* e = std::getenv("AMA_QUANT_FIDELITY_DIMS")) {
    ASSERT_EQ(std::sscanf(e, "%d,%d,%d,%d", &dims[0], &dims[1], &dims[2], &dims[3]), 4) << e;
  }
  HParams hp = small_hp(dims[0]);
  hp.n_audio_head = hp.n_text_head = dims[1];
  hp.n_audio_layer = dims[2];
  hp.n_text_layer = dims[3];
  hp.n_text_ctx = 448;
  const std::vector<int> tokens = {50258, 50259, 50359, 50363, 400, 370, 452, 7177, 6280, 11, 1029, 406};
  const int V = hp.n_vocab;
  auto write = [&](const std::string& name, std::optional<GgmlType> quant) {
    TestModelOptions o;
    o.hp = hp;
    o.hp.ftype = 0;  // an f32 source: what quantize leaves alone is f32, as in the original
    o.seed = 21;
    o.vocab_source = kVocab;
    o.output = tmp(name);
    o.quant = quant;
    Status s = write_test_model(o);
    EXPECT_TRUE(s.ok()) << s.message();
    return o.output;
  };
  const std::string original = write("fid_f32.bin", std::nullopt);
  const auto ref_orig = window_logits(original, ComputeType::f32, tokens);
  ASSERT_FALSE(ref_orig.empty());
  const auto int8_orig = window_logits(original, ComputeType::int8, tokens);
  const auto base = compare(int8_orig, ref_orig, V);
  std::printf("[quant fidelity %d,%d,%d,%d] unquantized f32 weights, int8 compute vs f32: max abs %.4f, worst row corr %.7f\n",
              dims[0], dims[1], dims[2], dims[3], base.max_abs, base.worst_corr);
  std::printf("type  | int8 vs f32, same weights | f32, quantized vs original weights | int8 quantized vs f32 original\n");
  for (GgmlType t : kQuantTypes) {
    SCOPED_TRACE(info_of(t).name);
    const std::string q = write(std::string("fid_") + info_of(t).name + ".bin", t);
    const std::string deq = tmp(std::string("fid_") + info_of(t).name + "_deq.bin");
    Status s = convert_ggml_model(q, deq, std::nullopt);
    ASSERT_TRUE(s.ok()) << s.message();
    const auto q_int8 = window_logits(q, ComputeType::int8, tokens);
    const auto deq_f32 = window_logits(deq, ComputeType::f32, tokens);
    // The quantized file and its f32 rewrite hold the same weights: f32
    // compute on either gives the same logits, bit for bit.
    EXPECT_TRUE(window_logits(q, ComputeType::f32, tokens) == deq_f32);
    const auto same = compare(q_int8, deq_f32, V), weights = compare(deq_f32, ref_orig, V),
               total = compare(q_int8, ref_orig, V);
    std::printf("%-5s | %.4f / %.7f | %.4f / %.7f | %.4f / %.7f\n", info_of(t).name, same.max_abs, same.worst_corr,
                weights.max_abs, weights.worst_corr, total.max_abs, total.worst_corr);
    if (t == GgmlType::q8_0) {
      // The fast-path bar's row correlation (../shared/oracle: >= 0.9999).
      // Its max abs 0.25 was set on micro (128 wide); at 256 wide the int8
      // path exceeds it on unquantized weights too (0.27), so the check is
      // relative: re-quantizing per channel adds q8_0's own rounding, whose
      // step (amax of 32 / 127) is at most the per-channel one (amax of the
      // row / 127), in quadrature: at most sqrt(2) on the rms error; 1.5
      // leaves room for max abs being one sample (measured: 1.22).
      EXPECT_GE(same.worst_corr, 0.9999);
      EXPECT_LE(same.max_abs, 1.5 * base.max_abs);
    }
  }
}

}  // namespace
}  // namespace ama
