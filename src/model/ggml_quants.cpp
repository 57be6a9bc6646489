#include "model/ggml_quants.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/half.h"

namespace ama {

namespace {

// ---- Block layouts (ggml-common.h). Scales are IEEE binary16 bit patterns.
// Sizes are asserted against ggml's: a file is a plain array of these.

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];  // element j in the low nibble of qs[j], element j + 16 in its high nibble
};
struct BlockQ4_1 {
  uint16_t d, m;  // value = d * q + m
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // bit e (of the little-endian u32) = fifth bit of element e
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
// k-quants: 256 elements, 16 sub-blocks of 16 (q2_k, q3_k, q6_k) or 8 of 32
// (q4_k, q5_k), each with its own small integer scale times the f16 d.
struct BlockQ2K {
  uint8_t scales[16];  // low nibble: scale, high nibble: min, per 16 elements
  uint8_t qs[64];      // 2 bits: element 128h + 32s + l in bits 2s of qs[32h + l]
  uint16_t d, dmin;    // value = d * scale * q - dmin * min
};
struct BlockQ3K {
  uint8_t hmask[32];   // bit e / 32 of hmask[e % 32] set: q in 0..3, else q - 4
  uint8_t qs[64];      // low 2 bits, packed as in q2_k
  uint8_t scales[12];  // 16 six-bit scales, offset by 32
  uint16_t d;
};
struct BlockQ4K {
  uint16_t d, dmin;
  uint8_t scales[12];  // 8 six-bit scales and 8 six-bit mins
  uint8_t qs[128];     // element 64k + l in the low nibble of qs[32k + l], 64k + 32 + l in its high nibble
};
struct BlockQ5K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];      // fifth bit: element 64k + l in bit 2k of qh[l], 64k + 32 + l in bit 2k + 1
  uint8_t qs[128];
};
struct BlockQ6K {
  uint8_t ql[128];  // low 4 bits
  uint8_t qh[64];   // high 2 bits
  int8_t scales[16];
  uint16_t d;       // value = d * scale * (q - 32)
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2K) == 84 && sizeof(BlockQ3K) == 110 && sizeof(BlockQ4K) == 144 &&
              sizeof(BlockQ5K) == 176 && sizeof(BlockQ6K) == 210);

constexpr int kQK = 256;

constexpr std::array<GgmlTypeInfo, 12> kTypes = {{
    {GgmlType::f32, "f32", 1, 4, 0},
    {GgmlType::f16, "f16", 1, 2, 1},
    {GgmlType::q4_0, "q4_0", 32, sizeof(BlockQ4_0), 2},
    {GgmlType::q4_1, "q4_1", 32, sizeof(BlockQ4_1), 3},
    {GgmlType::q5_0, "q5_0", 32, sizeof(BlockQ5_0), 8},
    {GgmlType::q5_1, "q5_1", 32, sizeof(BlockQ5_1), 9},
    {GgmlType::q8_0, "q8_0", 32, sizeof(BlockQ8_0), 7},
    {GgmlType::q2_k, "q2_k", kQK, sizeof(BlockQ2K), 10},
    {GgmlType::q3_k, "q3_k", kQK, sizeof(BlockQ3K), 11},
    {GgmlType::q4_k, "q4_k", kQK, sizeof(BlockQ4K), 12},
    {GgmlType::q5_k, "q5_k", kQK, sizeof(BlockQ5K), 13},
    {GgmlType::q6_k, "q6_k", kQK, sizeof(BlockQ6K), 14},
}};

// Blocks are copied in and out with memcpy: file buffers carry no alignment
// promise, and a misaligned struct access is undefined behaviour.
template <typename B>
B load_block(const void* src, uint64_t i) {
  B b;
  std::memcpy(&b, static_cast<const uint8_t*>(src) + i * sizeof(B), sizeof(B));
  return b;
}
template <typename B>
void store_block(void* dst, uint64_t i, const B& b) {
  std::memcpy(static_cast<uint8_t*>(dst) + i * sizeof(B), &b, sizeof(B));
}

float h2f(uint16_t h) { return f16_to_f32(h); }

// The smallest f16 whose magnitude is >= |v|, with v's sign. Rounding scales
// up keeps every value inside its block's range (see the header).
uint16_t f16_away(float v) {
  uint16_t h = f32_to_f16(v);
  if (std::fabs(h2f(h)) < std::fabs(v)) ++h;  // the next magnitude up (same sign bit)
  return h;
}
// The largest f16 <= v (for q4_1/q5_1's offset, which must not exceed the block's minimum).
uint16_t f16_down(float v) {
  uint16_t h = f32_to_f16(v);
  if (h2f(h) > v) {
    if (h & 0x8000u) ++h;        // negative: one more magnitude
    else if (h == 0) h = 0x8001;  // +0 above a tiny negative: the smallest negative subnormal
    else --h;
  }
  return h;
}

int round_clamp(float v, int lo, int hi) {
  const float r = std::nearbyint(v);
  return static_cast<int>(std::clamp(r, static_cast<float>(lo), static_cast<float>(hi)));
}

// Value with the largest magnitude (its sign matters for the 0/_k symmetric types).
float signed_absmax(const float* x, int n) {
  float m = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(m)) m = x[i];
  return m;
}

// ---- Decoding: one block at a time, element order as in ggml's dequantize_row_*.

void dequant_q4_0(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ4_0>(src, i);
    const float d = h2f(b.d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * ((b.qs[j] & 0xF) - 8);
      y[j + 16] = d * ((b.qs[j] >> 4) - 8);
    }
  }
}
void dequant_q4_1(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ4_1>(src, i);
    const float d = h2f(b.d), m = h2f(b.m);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * (b.qs[j] & 0xF) + m;
      y[j + 16] = d * (b.qs[j] >> 4) + m;
    }
  }
}
template <typename B>
int q5_quant(const B& b, uint32_t qh, int e) {
  const int low = e < 16 ? (b.qs[e] & 0xF) : (b.qs[e - 16] >> 4);
  return low | static_cast<int>(((qh >> e) & 1u) << 4);
}
template <typename B>
uint32_t q5_high_bits(const B& b) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  return qh;
}
void dequant_q5_0(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ5_0>(src, i);
    const float d = h2f(b.d);
    const uint32_t qh = q5_high_bits(b);
    for (int e = 0; e < 32; ++e) y[e] = d * (q5_quant(b, qh, e) - 16);
  }
}
void dequant_q5_1(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ5_1>(src, i);
    const float d = h2f(b.d), m = h2f(b.m);
    const uint32_t qh = q5_high_bits(b);
    for (int e = 0; e < 32; ++e) y[e] = d * q5_quant(b, qh, e) + m;
  }
}
void dequant_q8_0(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += 32) {
    const auto b = load_block<BlockQ8_0>(src, i);
    const float d = h2f(b.d);
    for (int e = 0; e < 32; ++e) y[e] = d * b.qs[e];
  }
}

// q2_k/q3_k's 2-bit fields: element e = 128h + 32g + l (halves h, groups g
// of 32) sits in qs[32h + l] at bits 2g..2g+1. q3_k's third bit: hmask[l] bit 4h + g.

// Six-bit scale and min j of q4_k/q5_k: 0-3 in the low 6 bits of bytes 0-3
// (scales) and 4-7 (mins); 4-7 in the nibbles of bytes 8-11, with their top
// 2 bits in the spare top bits of bytes 0-7.
void k4_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}
void k4_set_scale_min(uint8_t* s, int j, int sc, int m) {
  if (j < 4) {
    s[j] = static_cast<uint8_t>((s[j] & 0xC0) | sc);
    s[j + 4] = static_cast<uint8_t>((s[j + 4] & 0xC0) | m);
  } else {
    s[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
    s[j - 4] = static_cast<uint8_t>((s[j - 4] & 63) | ((sc >> 4) << 6));
    s[j] = static_cast<uint8_t>((s[j] & 63) | ((m >> 4) << 6));
  }
}

// q3_k's 16 six-bit scales: low nibbles in bytes 0-7 (scales 0-7 low, 8-15
// high nibble), the top 2 bits of scale j in byte 8 + j % 4 at bit 2 * (j / 4).
int q3k_scale(const uint8_t* s, int j) {
  const int low = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// q6_k: element e = 128h + 32g + l; ql[64h + l + 32 (g odd)] holds its low 4
// bits (low nibble for g < 2, high for g >= 2), qh[32h + l] its top 2 bits at bit 2g.

// The k-quant decoders take the scales once per sub-block (a per-element
// lookup made them ~8 ns per weight: 13 s for large-v3's 1.5 G weights).
// q2_k, q3_k and q6_k walk element e = 128h + 32g + l in (h, g, l) order,
// so that the bytes they read (index 32h + l) are contiguous.
void dequant_q2_k(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ2K>(src, i);
    const float d = h2f(b.d), dmin = h2f(b.dmin);
    for (int h = 0; h < 2; ++h)
      for (int g = 0; g < 4; ++g)
        for (int half = 0; half < 2; ++half) {
          const uint8_t sm = b.scales[8 * h + 2 * g + half];
          const float dl = d * (sm & 0xF), ml = dmin * (sm >> 4);
          for (int l = 16 * half; l < 16 * half + 16; ++l)
            y[128 * h + 32 * g + l] = dl * ((b.qs[32 * h + l] >> (2 * g)) & 3) - ml;
        }
  }
}
void dequant_q3_k(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ3K>(src, i);
    const float d = h2f(b.d);
    for (int h = 0; h < 2; ++h)
      for (int g = 0; g < 4; ++g)
        for (int half = 0; half < 2; ++half) {
          const float dl = d * q3k_scale(b.scales, 8 * h + 2 * g + half);
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int q = ((b.qs[32 * h + l] >> (2 * g)) & 3) - ((b.hmask[l] >> (4 * h + g)) & 1 ? 0 : 4);
            y[128 * h + 32 * g + l] = dl * q;
          }
        }
  }
}
void dequant_q6_k(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ6K>(src, i);
    const float d = h2f(b.d);
    for (int h = 0; h < 2; ++h)
      for (int g = 0; g < 4; ++g)
        for (int half = 0; half < 2; ++half) {
          const float dl = d * b.scales[8 * h + 2 * g + half];
          const uint8_t* ql = b.ql + 64 * h + 32 * (g & 1);
          const int shift = g < 2 ? 0 : 4;
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int q = ((ql[l] >> shift) & 0xF) | (((b.qh[32 * h + l] >> (2 * g)) & 3) << 4);
            y[128 * h + 32 * g + l] = dl * (q - 32);
          }
        }
  }
}
template <bool kFifthBit, typename B>
void dequant_q45_k(const B& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    k4_scale_min(b.scales, j, &sc, &m);
    const float dl = d * sc, ml = dmin * m;
    const uint8_t* qs = b.qs + 32 * (j / 2);
    const int shift = j % 2 == 0 ? 0 : 4;
    for (int l = 0; l < 32; ++l) {
      int q = (qs[l] >> shift) & 0xF;
      if constexpr (kFifthBit) q |= ((b.qh[l] >> j) & 1) << 4;
      y[32 * j + l] = dl * q - ml;
    }
  }
}
void dequant_q4_k(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += kQK) dequant_q45_k<false>(load_block<BlockQ4K>(src, i), y);
}
void dequant_q5_k(const void* src, uint64_t nb, float* y) {
  for (uint64_t i = 0; i < nb; ++i, y += kQK) dequant_q45_k<true>(load_block<BlockQ5K>(src, i), y);
}
// ---- Encoding.

Status scale_fits(uint16_t h) {
  if ((h & 0x7c00u) == 0x7c00u) return make_error("a block's scale does not fit in f16 (values above ~8e6)");
  return Status::Ok();
}

// q4_0 / q5_0 / q8_0, symmetric: q in [-neg, pos]. For q4_0 and q5_0 (pos =
// neg - 1) the value of largest magnitude maps to -neg, as in ggml, which
// buys one more level than a +-pos range. The caller packs the codes.
Status symmetric_codes(const float* x, int n, int neg, int pos, uint16_t* d16, int* q) {
  const float mx = signed_absmax(x, n);
  *d16 = f16_away(neg == pos ? std::fabs(mx) / pos : mx / -neg);
  AMA_TRY(scale_fits(*d16));
  const float d = h2f(*d16);
  for (int j = 0; j < n; ++j) q[j] = d != 0 ? round_clamp(x[j] / d, -neg, pos) : 0;
  return Status::Ok();
}
// q4_1 / q5_1, affine: value = d * q + m, q in [0, nmax].
Status affine_codes(const float* x, int n, int nmax, uint16_t* d16, uint16_t* m16, int* q) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < n; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
  *m16 = f16_down(lo);
  AMA_TRY(scale_fits(*m16));
  const float m = h2f(*m16);
  *d16 = f16_away((hi - m) / nmax);
  AMA_TRY(scale_fits(*d16));
  const float d = h2f(*d16);
  for (int j = 0; j < n; ++j) q[j] = d != 0 ? round_clamp((x[j] - m) / d, 0, nmax) : 0;
  return Status::Ok();
}

Status quant_q4_0(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += 32) {
    BlockQ4_0 b{};
    int q[32];
    AMA_TRY(symmetric_codes(x, 32, 8, 7, &b.d, q));
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>((q[j] + 8) | ((q[j + 16] + 8) << 4));
    store_block(dst, i, b);
  }
  return Status::Ok();
}
Status quant_q4_1(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += 32) {
    BlockQ4_1 b{};
    int q[32];
    AMA_TRY(affine_codes(x, 32, 15, &b.d, &b.m, q));
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    store_block(dst, i, b);
  }
  return Status::Ok();
}
template <typename B>
void pack_q5(B& b, const int* q) {  // q in 0..31
  uint32_t qh = 0;
  for (int e = 0; e < 32; ++e) qh |= static_cast<uint32_t>(q[e] >> 4) << e;
  std::memcpy(b.qh, &qh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}
Status quant_q5_0(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += 32) {
    BlockQ5_0 b{};
    int q[32];
    AMA_TRY(symmetric_codes(x, 32, 16, 15, &b.d, q));
    for (int& v : q) v += 16;
    pack_q5(b, q);
    store_block(dst, i, b);
  }
  return Status::Ok();
}
Status quant_q5_1(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += 32) {
    BlockQ5_1 b{};
    int q[32];
    AMA_TRY(affine_codes(x, 32, 31, &b.d, &b.m, q));
    pack_q5(b, q);
    store_block(dst, i, b);
  }
  return Status::Ok();
}
Status quant_q8_0(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += 32) {
    BlockQ8_0 b{};
    int q[32];
    AMA_TRY(symmetric_codes(x, 32, 127, 127, &b.d, q));
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(q[j]);
    store_block(dst, i, b);
  }
  return Status::Ok();
}

// k-quants with a min (q2_k, q4_k, q5_k): value = d*sc_j * q - dmin*m_j,
// q in [0, nmax], sc_j and m_j in [0, smax]. The scale search is one pass:
// each sub-block's min is rounded up to dmin's grid first (so it covers the
// sub-block's lowest value), then its scale is rounded up to d's grid so that
// (max + min) / nmax fits. ggml's reference instead searches a few candidate
// scales per sub-block for the least weighted squared error; the layout is
// the same.
struct KAffine {
  uint16_t d16 = 0, dmin16 = 0;
  int sc[16] = {}, mn[16] = {};
  uint8_t q[kQK] = {};
};
Status k_affine(const float* x, int sub, int nmax, int smax, KAffine* k) {
  const int ns = kQK / sub;
  float lo_need[16], hi[16];
  float max_min = 0;
  for (int j = 0; j < ns; ++j) {
    float lo = x[j * sub], h = x[j * sub];
    for (int l = 1; l < sub; ++l) lo = std::min(lo, x[j * sub + l]), h = std::max(h, x[j * sub + l]);
    lo_need[j] = std::max(0.f, -lo);  // mins are subtracted and non-negative: a positive sub-block uses 0
    hi[j] = h;
    max_min = std::max(max_min, lo_need[j]);
  }
  k->dmin16 = f16_away(max_min / smax);
  AMA_TRY(scale_fits(k->dmin16));
  const float dmin = h2f(k->dmin16);
  float s[16], max_s = 0;
  for (int j = 0; j < ns; ++j) {
    k->mn[j] = dmin > 0 ? std::min(smax, static_cast<int>(std::ceil(lo_need[j] / dmin))) : 0;
    s[j] = std::max(0.f, (hi[j] + dmin * k->mn[j]) / nmax);
    max_s = std::max(max_s, s[j]);
  }
  k->d16 = f16_away(max_s / smax);
  AMA_TRY(scale_fits(k->d16));
  const float d = h2f(k->d16);
  for (int j = 0; j < ns; ++j) {
    k->sc[j] = d > 0 ? std::min(smax, static_cast<int>(std::ceil(s[j] / d))) : 0;
    const float dj = d * k->sc[j], mj = dmin * k->mn[j];
    for (int l = 0; l < sub; ++l)
      k->q[j * sub + l] = static_cast<uint8_t>(dj > 0 ? round_clamp((x[j * sub + l] + mj) / dj, 0, nmax) : 0);
  }
  return Status::Ok();
}

// k-quants without a min (q3_k, q6_k): value = d*sc_j * q, q in [-neg, neg-1],
// sc_j signed in [-smax, smax]. As in q4_0, each sub-block's largest-magnitude
// value maps to -neg; the sub-block scales are rounded away from zero.
struct KSymmetric {
  uint16_t d16 = 0;
  int sc[16] = {};
  int q[kQK] = {};
};
Status k_symmetric(const float* x, int neg, int smax, KSymmetric* k) {
  float s[16], max_abs = 0;
  for (int j = 0; j < 16; ++j) {
    s[j] = signed_absmax(x + 16 * j, 16) / -neg;
    max_abs = std::max(max_abs, std::fabs(s[j]));
  }
  k->d16 = f16_away(max_abs / smax);
  AMA_TRY(scale_fits(k->d16));
  const float d = h2f(k->d16);
  for (int j = 0; j < 16; ++j) {
    const int mag = d > 0 ? std::min(smax, static_cast<int>(std::ceil(std::fabs(s[j]) / d))) : 0;
    k->sc[j] = s[j] < 0 ? -mag : mag;
    const float dj = d * k->sc[j];
    for (int l = 0; l < 16; ++l) k->q[16 * j + l] = dj != 0 ? round_clamp(x[16 * j + l] / dj, -neg, neg - 1) : 0;
  }
  return Status::Ok();
}

void put_2bit(uint8_t* qs, int e, int v) { qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(v << (2 * ((e % 128) / 32))); }

Status quant_q2_k(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += kQK) {
    KAffine k;
    AMA_TRY(k_affine(x, 16, 3, 15, &k));
    BlockQ2K b{};
    b.d = k.d16;
    b.dmin = k.dmin16;
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(k.sc[j] | (k.mn[j] << 4));
    for (int e = 0; e < kQK; ++e) put_2bit(b.qs, e, k.q[e]);
    store_block(dst, i, b);
  }
  return Status::Ok();
}
Status quant_q3_k(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += kQK) {
    KSymmetric k;
    AMA_TRY(k_symmetric(x, 4, 31, &k));
    BlockQ3K b{};
    b.d = k.d16;
    for (int j = 0; j < 16; ++j) {
      const int code = k.sc[j] + 32;  // 1..63
      if (j < 8) b.scales[j] |= static_cast<uint8_t>(code & 0xF);
      else b.scales[j - 8] |= static_cast<uint8_t>((code & 0xF) << 4);
      b.scales[8 + j % 4] |= static_cast<uint8_t>((code >> 4) << (2 * (j / 4)));
    }
    for (int e = 0; e < kQK; ++e) {
      const int u = k.q[e] + 4;  // 0..7: bit 2 goes to hmask, the low 2 bits to qs
      if (u & 4) b.hmask[e % 32] |= static_cast<uint8_t>(1u << (e / 32));
      put_2bit(b.qs, e, u & 3);
    }
    store_block(dst, i, b);
  }
  return Status::Ok();
}
template <typename B>
Status quant_q45_k(const float* x, uint64_t nb, void* dst, int nmax) {
  for (uint64_t i = 0; i < nb; ++i, x += kQK) {
    KAffine k;
    AMA_TRY(k_affine(x, 32, nmax, 63, &k));
    B b{};
    b.d = k.d16;
    b.dmin = k.dmin16;
    for (int j = 0; j < 8; ++j) k4_set_scale_min(b.scales, j, k.sc[j], k.mn[j]);
    for (int e = 0; e < kQK; ++e) {
      const int v = k.q[e];
      b.qs[32 * (e / 64) + e % 32] |= static_cast<uint8_t>((v & 0xF) << ((e / 32) % 2 == 0 ? 0 : 4));
      if constexpr (std::is_same_v<B, BlockQ5K>) b.qh[e % 32] |= static_cast<uint8_t>((v >> 4) << (e / 32));
    }
    store_block(dst, i, b);
  }
  return Status::Ok();
}
Status quant_q6_k(const float* x, uint64_t nb, void* dst) {
  for (uint64_t i = 0; i < nb; ++i, x += kQK) {
    KSymmetric k;
    AMA_TRY(k_symmetric(x, 32, 127, &k));
    BlockQ6K b{};
    b.d = k.d16;
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(k.sc[j]);
    for (int e = 0; e < kQK; ++e) {
      const int u = k.q[e] + 32, h = e / 128, g = (e % 128) / 32, l = e % 32;
      b.ql[64 * h + l + 32 * (g & 1)] |= static_cast<uint8_t>((u & 0xF) << (g < 2 ? 0 : 4));
      b.qh[32 * h + l] |= static_cast<uint8_t>((u >> 4) << (2 * g));
    }
    store_block(dst, i, b);
  }
  return Status::Ok();
}

}  // namespace

std::optional<GgmlTypeInfo> ggml_type_info(int32_t type) {
  for (const auto& t : kTypes)
    if (static_cast<int32_t>(t.type) == type) return t;
  return std::nullopt;
}

std::optional<GgmlTypeInfo> ggml_type_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& t : kTypes)
    if (lower == t.name) return t;
  return std::nullopt;
}

std::optional<GgmlTypeInfo> ggml_type_of_ftype(int32_t ftype) {
  for (const auto& t : kTypes)
    if (t.ftype == ftype) return t;
  return std::nullopt;
}

std::string ggml_type_name(int32_t type) {
  if (auto t = ggml_type_info(type)) return t->name;
  switch (type) {
    case 9: return "q8_1";
    case 15: return "q8_k";
    default: return "type " + std::to_string(type);
  }
}

std::string ggml_quant_type_list() {
  std::string s;
  for (const auto& t : kTypes)
    if (ggml_is_quantized(t.type)) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

uint64_t ggml_row_bytes(const GgmlTypeInfo& info, uint64_t n) {
  return n / static_cast<uint64_t>(info.block) * static_cast<uint64_t>(info.block_bytes);
}

void dequantize_row(GgmlType type, const void* src, uint64_t n, float* dst) {
  switch (type) {
    case GgmlType::f32: std::memcpy(dst, src, n * 4); return;
    case GgmlType::f16: {
      const auto* p = static_cast<const uint8_t*>(src);
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    }
    case GgmlType::q4_0: return dequant_q4_0(src, n / 32, dst);
    case GgmlType::q4_1: return dequant_q4_1(src, n / 32, dst);
    case GgmlType::q5_0: return dequant_q5_0(src, n / 32, dst);
    case GgmlType::q5_1: return dequant_q5_1(src, n / 32, dst);
    case GgmlType::q8_0: return dequant_q8_0(src, n / 32, dst);
    case GgmlType::q2_k: return dequant_q2_k(src, n / kQK, dst);
    case GgmlType::q3_k: return dequant_q3_k(src, n / kQK, dst);
    case GgmlType::q4_k: return dequant_q4_k(src, n / kQK, dst);
    case GgmlType::q5_k: return dequant_q5_k(src, n / kQK, dst);
    case GgmlType::q6_k: return dequant_q6_k(src, n / kQK, dst);
  }
}

Status quantize_row(GgmlType type, const float* src, uint64_t n, void* dst) {
  const auto info = ggml_type_info(static_cast<int32_t>(type));
  if (!info) return make_error("cannot encode ggml type " + ggml_type_name(static_cast<int32_t>(type)));
  if (n % static_cast<uint64_t>(info->block) != 0)
    return make_error("row of " + std::to_string(n) + " elements is not a multiple of " + info->name +
                      "'s block size " + std::to_string(info->block));
  for (uint64_t i = 0; i < n; ++i)
    if (!std::isfinite(src[i])) return make_error("non-finite value at element " + std::to_string(i));
  switch (type) {
    case GgmlType::f32: std::memcpy(dst, src, n * 4); return Status::Ok();
    case GgmlType::f16: {
      auto* p = static_cast<uint8_t*>(dst);
      for (uint64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return Status::Ok();
    }
    case GgmlType::q4_0: return quant_q4_0(src, n / 32, dst);
    case GgmlType::q4_1: return quant_q4_1(src, n / 32, dst);
    case GgmlType::q5_0: return quant_q5_0(src, n / 32, dst);
    case GgmlType::q5_1: return quant_q5_1(src, n / 32, dst);
    case GgmlType::q8_0: return quant_q8_0(src, n / 32, dst);
    case GgmlType::q2_k: return quant_q2_k(src, n / kQK, dst);
    case GgmlType::q3_k: return quant_q3_k(src, n / kQK, dst);
    case GgmlType::q4_k: return quant_q45_k<BlockQ4K>(src, n / kQK, dst, 15);
    case GgmlType::q5_k: return quant_q45_k<BlockQ5K>(src, n / kQK, dst, 31);
    case GgmlType::q6_k: return quant_q6_k(src, n / kQK, dst);
  }
  return make_error("cannot encode ggml type " + ggml_type_name(static_cast<int32_t>(type)));
}

}  // namespace ama
