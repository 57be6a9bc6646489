// The portable flash-attention kernel (d_head 64, flash_attention.h), plain
// C++ on the same packed layouts as the AVX-512 and AMX kernels, with the
// same arithmetic: bf16 inputs widened exactly to f32, f32 scores and sums,
// the same base-2 polynomial exp, P rounded to bf16 before P V. Included
// inside one namespace per ISA (flash_attention.cpp: baseline x86-64;
// flash_attention_avx2.cpp and _avx512.cpp), so each copy is built for its
// ISA (flash_attention_avx2.cpp uses only its exp2 and constants). The loops
// run over the 16 lanes of a panel innermost, which the compiler turns into
// vector code.
//
// Not a header for general use: it defines functions with internal linkage,
// and the including file first includes <algorithm>, <cmath>, <cstring>,
// flash_attention.h and core/half.h (outside its namespace).
#pragma once

// 2^x on [-0.5, 0.5]: degree-3 polynomial fitted by the Remez exchange for
// relative error, max 7.5e-5 (P is then rounded to bf16, whose half step is
// 2^-9 = 2.0e-3 relative, 26x that; the int8 kernel's u8 P steps are
// coarser still). Degree 4 gave 2.6e-6 for one more multiply-add per 16
// weights; dropping it made flash_d64_6x64__avx512vnni_bf16 ~2% faster
// (base's 8 heads at one thread, AMD EPYC Zen 4, `kernels`, 6 alternated
// pairs of 20 iterations: 20.8-21.2 against 21.1-21.9 ms) and left the
// oracle's logits where they were (int8 max abs 0.204-0.209 on micro,
// 0.214-0.220 on micro.en; bf16 0.150-0.162 and 0.133-0.143).
#define AMA_FLASH_EXP2_C0 0x1.fff692p-1f
#define AMA_FLASH_EXP2_C1 0x1.62f31ap-1f
#define AMA_FLASH_EXP2_C2 0x1.f0de1ap-3f
#define AMA_FLASH_EXP2_C3 0x1.c3f76p-5f

// 2^x for x <= 0: n = round(x) by adding 1.5 * 2^23 (the sum's low mantissa
// bits are then n in two's complement), f = x - n in [-0.5, 0.5], 2^f by the
// polynomial, and 2^n added into the exponent bits. x is clamped at -100:
// the softmax sum always holds a term 2^0 = 1, so 2^-100 (8e-31) instead of
// a true 0 is invisible, and the exponent stays far from denormals.
[[maybe_unused]] static inline float flash_exp2(float x) {
  x = x < -100.0f ? -100.0f : x;
  const float t = x + 12582912.0f;
  const float n = t - 12582912.0f;
  const float f = x - n;
  float p = AMA_FLASH_EXP2_C3;
  p = p * f + AMA_FLASH_EXP2_C2;
  p = p * f + AMA_FLASH_EXP2_C1;
  p = p * f + AMA_FLASH_EXP2_C0;
  uint32_t tb, pb;
  std::memcpy(&tb, &t, 4);
  std::memcpy(&pb, &p, 4);
  pb += tb << 23;
  std::memcpy(&p, &pb, 4);
  return p;
}

// A packed pair of bf16 (element 2 j of the pair in the low half) as two
// floats: a shift and a mask, which the compiler does 4 or 8 lanes at a time.
static inline float flash_lo(uint32_t w) {
  const uint32_t u = w << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
static inline float flash_hi(uint32_t w) {
  const uint32_t u = w & 0xffff0000u;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// 4 query rows. Each product is an accumulator tile of 4 rows x 16 columns
// (one key panel, or one panel of head dims), summed over 32 pairs in
// registers (AVX2: 8 ymm) and written once: 4 x 64 scores and 4 x 64
// outputs (1 KB each) stay in L1 beside the 16 KB K and V block.
[[maybe_unused]] static void flash_d64_generic(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp,
                                               int n_kv, float c, float* out, size_t ld_out) {
  constexpr int R = 4, D = ama::cpu::kFlashDim, KB = ama::cpu::kFlashKeys;
  float qf[R][D] = {}, o[R][D] = {}, s[R][KB], m[R] = {}, l[R] = {};
  float pf[R][KB];
  for (int r = 0; r < rows; ++r) {
    for (int x = 0; x < D; ++x) qf[r][x] = ama::bf16_to_f32(q[r * D + x]);
    m[r] = -INFINITY;
  }
  const int blocks = ama::cpu::flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    const int valid = std::min(KB, n_kv - b * KB);
    const uint16_t* kb = kp + static_cast<size_t>(b) * KB * D;
    const uint16_t* vb = vp + static_cast<size_t>(b) * KB * D;
    for (int i = 0; i < 4; ++i) {  // key panel
      float acc[R][16] = {};
      for (int p = 0; p < D / 2; ++p) {
        uint32_t w[16];
        std::memcpy(w, kb + (p * 4 + i) * 32, sizeof w);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) acc[r][j] += qf[r][2 * p] * flash_lo(w[j]) + qf[r][2 * p + 1] * flash_hi(w[j]);
      }
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < 16; ++j) s[r][16 * i + j] = acc[r][j];
    }
    for (int r = 0; r < rows; ++r) {
      float bm = -INFINITY;
      for (int j = 0; j < valid; ++j) bm = std::max(bm, s[r][j]);
      const float mn = std::max(m[r], c * bm);  // c > 0: max(c s) = c max(s)
      const float alpha = flash_exp2(m[r] - mn);
      m[r] = mn;
      float sum = 0.0f;
      // The sum takes the weights as rounded for P V: the output is an exact
      // weighted average of V under the weights the product used.
      for (int j = 0; j < KB; ++j) {
        const float e = j < valid ? flash_exp2(s[r][j] * c - mn) : 0.0f;
        pf[r][j] = ama::bf16_to_f32(ama::f32_to_bf16(e));
        sum += pf[r][j];
      }
      l[r] = l[r] * alpha + sum;
      for (int x = 0; x < D; ++x) o[r][x] *= alpha;
    }
    for (int r = rows; r < R; ++r)
      for (int j = 0; j < KB; ++j) pf[r][j] = 0.0f;
    for (int cp = 0; cp < 4; ++cp) {  // panel of head dims
      float acc[R][16];
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < 16; ++j) acc[r][j] = o[r][16 * cp + j];
      for (int kq = 0; kq < KB / 2; ++kq) {
        uint32_t w[16];
        std::memcpy(w, vb + (kq * 4 + cp) * 32, sizeof w);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) acc[r][j] += pf[r][2 * kq] * flash_lo(w[j]) + pf[r][2 * kq + 1] * flash_hi(w[j]);
      }
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < 16; ++j) o[r][16 * cp + j] = acc[r][j];
    }
  }
  for (int r = 0; r < rows; ++r) {
    const float inv = 1.0f / l[r];
    for (int x = 0; x < D; ++x) out[r * ld_out + x] = o[r][x] * inv;
  }
}
