// AVX2 + FMA variants. Compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt);
// only called when cpu_features() reports AVX2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"

namespace ama::cpu {
namespace avx2_ns {

// gelu_f32__avx2 and gelu_q8_f32__avx2: the AVX-512 kernels' arithmetic
// (kernels_avx512.cpp) in 8 lanes, where GCC 12 left the portable loops
// scalar: base's 1500 x 2048 GELU took 11.9 ms at 2 threads on Zen 3 (about
// 25 cycles a value), and GELU was 40% of MLP up's time at the int8 type.
// AVX2 has no vscalefps, so 2^k is built in the exponent bits with k held at
// -127 and up (bits 0: 2^-127 becomes 0, as vscalefps' underflow gives it
// for the k < -149 that matter here), and no vrcp14ps: erf's 1 / (1 + p |z|)
// is a division (exact to half an ulp), and sigma's reciprocal vrcpps (2^-12)
// with one Newton step (about 2^-22).
// e^r for |r| <= 0.35 by the degree-7 Taylor polynomial, as multiply-adds
// (GELU's erf and exp_sum's exp; kernels_generic.inc's exp_poly).
static inline __m256 exp_taylor7(__m256 r) {
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  return _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
}

static inline __m256 pow2_int(__m256 k) {  // 2^k for integral k in [-127, 127]; 0 for k <= -127
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_max_ps(k, _mm256_set1_ps(-127.0f))),
                                     _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}

static inline __m256 gelu8(__m256 x) {
  const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
  // |z| capped at 11 (erf is 1 in float from 3.92; NaN becomes 11 and stays NaN through x).
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 az = _mm256_min_ps(_mm256_and_ps(z, abs_mask), _mm256_set1_ps(11.0f));
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, _mm256_set1_ps(1.0f)));
  __m256 a = _mm256_set1_ps(1.061405429f);
  a = _mm256_fmadd_ps(a, t, _mm256_set1_ps(-1.453152027f));
  a = _mm256_fmadd_ps(a, t, _mm256_set1_ps(1.421413741f));
  a = _mm256_fmadd_ps(a, t, _mm256_set1_ps(-0.284496736f));
  a = _mm256_fmadd_ps(a, t, _mm256_set1_ps(0.254829592f));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(az, az), _mm256_set1_ps(-1.44269504088896341f));  // e^(-z^2) = 2^y
  const __m256 k = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_mul_ps(_mm256_sub_ps(y, k), _mm256_set1_ps(0.693147180559945309f));
  const __m256 p = exp_taylor7(r);
  const __m256 q = _mm256_mul_ps(_mm256_mul_ps(a, t), _mm256_mul_ps(p, pow2_int(k)));  // 1 - erf(|z|)
  const __m256 neg = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 one_plus_erf = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), q), q, neg);
  return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), one_plus_erf);
}

static inline __m256 gelu_q8_8(__m256 x) {
  // x clamped to [-8, 8] (a NaN x clamps to 8 and stays NaN through the product).
  const __m256 xc = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(8.0f)), _mm256_set1_ps(-8.0f));
  const __m256 x2 = _mm256_mul_ps(xc, xc);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kGeluQ8C * -1.44269504088896341f), x2,
                             _mm256_set1_ps(kGeluQ8B * -1.44269504088896341f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(kGeluQ8A * -1.44269504088896341f));
  const __m256 y = _mm256_mul_ps(p, xc);  // |y| <= 47
  const __m256 k = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(y, k);
  __m256 e = _mm256_set1_ps(1.3333558146428443e-3f);
  e = _mm256_fmadd_ps(e, f, _mm256_set1_ps(9.618129107628477e-3f));
  e = _mm256_fmadd_ps(e, f, _mm256_set1_ps(5.550410866482158e-2f));
  e = _mm256_fmadd_ps(e, f, _mm256_set1_ps(2.402265069591007e-1f));
  e = _mm256_fmadd_ps(e, f, _mm256_set1_ps(6.931471805599453e-1f));
  e = _mm256_fmadd_ps(e, f, _mm256_set1_ps(1.0f));
  const __m256 d = _mm256_fmadd_ps(e, pow2_int(k), _mm256_set1_ps(1.0f));
  const __m256 r0 = _mm256_rcp_ps(d);
  const __m256 r = _mm256_mul_ps(r0, _mm256_fnmadd_ps(d, r0, _mm256_set1_ps(2.0f)));
  return _mm256_mul_ps(x, r);
}

// x[i] = f(x[i]) over a row, 8 values at a time, the tail masked.
template <typename F>
static inline void map_row(float* x, int n, const F& f) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(x + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

static void gelu_avx2(float* x, int n) {
  map_row(x, n, [](__m256 v) { return gelu8(v); });
}
static void gelu_q8_avx2(float* x, int n) {
  map_row(x, n, [](__m256 v) { return gelu_q8_8(v); });
}
// dot and axpy over bf16 rows (the decoder's attention over its bf16 K/V
// caches), where GCC 12 left the portable loops' bf16 widening scalar: they
// were 31% of `bench` on base (int8) on Zen 3, more than its int10 GEMMs.
// The dot keeps the portable kernel's 16 partial sums (two ymm) and sum16's
// order of adding them.
static inline __m256 bf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

static inline float bf16_scalar(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

static float dot_bf16_avx2(const float* a, const uint16_t* b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), bf16x8(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), bf16x8(b + i + 8), s1);
  }
  if (i < n) {
    alignas(32) float acc[16];
    _mm256_store_ps(acc, s0);
    _mm256_store_ps(acc + 8, s1);
    for (int l = 0; i + l < n; ++l) acc[l] = std::fma(a[i + l], bf16_scalar(b[i + l]), acc[l]);
    s0 = _mm256_load_ps(acc);
    s1 = _mm256_load_ps(acc + 8);
  }
  const __m256 s8 = _mm256_add_ps(s0, s1);                                                    // p[i] + p[i + 8]
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));  // s8[i] + s8[i + 4]
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));  // s4[0] + s4[2], s4[1] + s4[3]
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

static void axpy_bf16_avx2(float a, const uint16_t* x, float* y, int n) {
  const __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, bf16x8(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] = std::fma(a, bf16_scalar(x[i]), y[i]);
}

// exp_sum (softmax rows: the decoder's attention, the f32 encoder
// attention), which GCC 12 left scalar on AVX2: 31% of the f32 flash
// attention's time at base's shape on Zen 3. Defined below, after the
// portable exp_poly and sum16 that it shares.
static float exp_sum_avx2(float* x, int n, float sub);

#define AMA_EXP_SUM_ROW exp_sum_avx2
#define AMA_GELU_ROW gelu_avx2
#define AMA_GELU_Q8_ROW gelu_q8_avx2
#define AMA_DOT_BF16_ROW dot_bf16_avx2
#define AMA_AXPY_BF16_ROW axpy_bf16_avx2
#include "backend/cpu/kernels_generic.inc"
#undef AMA_GELU_ROW
#undef AMA_GELU_Q8_ROW
#undef AMA_DOT_BF16_ROW
#undef AMA_AXPY_BF16_ROW
#undef AMA_EXP_SUM_ROW

// exp_poly, 8 lanes, the same operations (its multiply-adds fused as GCC
// fuses the portable code's): the clamps keep a NaN, below -87.3 gives 0.
static inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(88.3f), _mm256_max_ps(lo, x));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504f), magic), magic);
  const __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc));
  const __m256 p = exp_taylor7(r);
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
}

// The integer GEMMs' activation quantizers (kernels_generic.inc's rule:
// t = (x - lo) / step as a subtraction and a multiplication, clamped, then
// rounded half to even, here by vcvtps2dq in the default rounding mode),
// which GCC 12 left scalar on AVX2: 2-3% of base's `bench` (int8) on Zen
// 3. The clamp's operand order (max(t, 0) returns 0 for a NaN t) gives a
// NaN element code 0, as the portable conversion does on x86.
static inline __m256i quantize8(const float* x, __m256 lo, __m256 inv, __m256 top) {
  const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x), lo), inv);
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), top));
}

static void quantize_u8_row_avx2(const float* x, int n, uint8_t* out, float* scale, float* lo_out) {
  float lo;
  const float s = quant_step(x, n, 255.0f, &lo), inv = 1.0f / s;
  const __m256 vlo = _mm256_set1_ps(lo), vinv = _mm256_set1_ps(inv), top = _mm256_set1_ps(255.0f);
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    // packus works within 128-bit halves: dwords come out as q0 q1 q2 q3
    // (low halves) then the high halves; the permute restores the order.
    const __m256i a = _mm256_packus_epi32(quantize8(x + i, vlo, vinv, top), quantize8(x + i + 8, vlo, vinv, top));
    const __m256i b = _mm256_packus_epi32(quantize8(x + i + 16, vlo, vinv, top), quantize8(x + i + 24, vlo, vinv, top));
    const __m256i c = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), c);
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(quant_code(x[i], lo, inv, 255.0f));
  *scale = s;
  *lo_out = lo;
}

static void quantize_u16_row_avx2(const float* x, int n, uint8_t* hi_digit, uint8_t* lo_digit, float* scale,
                                  float* lo_out) {
  float lo;
  const float s = quant_step(x, n, 65535.0f, &lo), inv = 1.0f / s;
  const __m256 vlo = _mm256_set1_ps(lo), vinv = _mm256_set1_ps(inv), top = _mm256_set1_ps(65535.0f);
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    // 16 codes as u16 in order, then their high and low bytes: packus_epi16
    // leaves hi 0-7, lo 0-7 | hi 8-15, lo 8-15, which the 64-bit permute
    // turns into hi 0-15 | lo 0-15.
    const __m256i u = _mm256_permute4x64_epi64(
        _mm256_packus_epi32(quantize8(x + i, vlo, vinv, top), quantize8(x + i + 8, vlo, vinv, top)), 0xD8);
    const __m256i d = _mm256_permute4x64_epi64(
        _mm256_packus_epi16(_mm256_srli_epi16(u, 8), _mm256_and_si256(u, _mm256_set1_epi16(0xff))), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi_digit + i), _mm256_castsi256_si128(d));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lo_digit + i), _mm256_extracti128_si256(d, 1));
  }
  for (; i < n; ++i) {
    const int u = quant_code(x[i], lo, inv, 65535.0f);
    hi_digit[i] = static_cast<uint8_t>(u >> 8);
    lo_digit[i] = static_cast<uint8_t>(u & 255);
  }
  *scale = s;
  *lo_out = lo;
}

// The portable exp_sum's 16 partial sums (two ymm), its scalar tail and
// sum16's order.
static float exp_sum_avx2(float* x, int n, float sub) {
  const __m256 s = _mm256_set1_ps(sub);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    const __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), s));
    _mm256_storeu_ps(x + i, e0);
    _mm256_storeu_ps(x + i + 8, e1);
    a0 = _mm256_add_ps(a0, e0);
    a1 = _mm256_add_ps(a1, e1);
  }
  alignas(32) float acc[16];
  _mm256_store_ps(acc, a0);
  _mm256_store_ps(acc + 8, a1);
  for (int l = 0; i + l < n; ++l) {
    x[i + l] = exp_poly(x[i + l] - sub);
    acc[l] += x[i + l];
  }
  return sum16(acc);
}

// gemm_f32_f32_6x16__avx2: per 16-column panel, 6 rows x 2 ymm = 12
// accumulators, 2 weight loads and 6 broadcasts per k, within the 16 ymm
// registers. R is a template parameter so that the accumulators stay in
// registers (a run-time row count made GCC keep them in memory: 62 GFLOP/s).
template <int R>
static void f32_rows(const float* x, size_t ldx, const float* w, int k, float* acc) {
  __m256 c[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = _mm256_setzero_ps();
  for (int kk = 0; kk < k; ++kk) {
    const __m256 w0 = _mm256_loadu_ps(w + kk * 16);
    const __m256 w1 = _mm256_loadu_ps(w + kk * 16 + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * ldx + kk);
      c[r][0] = _mm256_fmadd_ps(xv, w0, c[r][0]);
      c[r][1] = _mm256_fmadd_ps(xv, w1, c[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(acc + r * 32, c[r][0]);
    _mm256_storeu_ps(acc + r * 32 + 8, c[r][1]);
  }
}

static void gemm_f32_tile(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride,
                          int n_panels, int k, float* acc) {
  for (int p = 0; p < n_panels; ++p) {
    const float* w = panels + p * panel_stride;
    float* a = acc + p * 16;
    switch (rows) {
      case 1: f32_rows<1>(x, ldx, w, k, a); break;
      case 2: f32_rows<2>(x, ldx, w, k, a); break;
      case 3: f32_rows<3>(x, ldx, w, k, a); break;
      case 4: f32_rows<4>(x, ldx, w, k, a); break;
      case 5: f32_rows<5>(x, ldx, w, k, a); break;
      default: f32_rows<6>(x, ldx, w, k, a); break;
    }
  }
}

// gemm_bf16_f32_4x16__avx2: AVX2 has no bf16 dot product, so each 32-bit
// lane of a weight row (the pair k, k+1 of one column) is widened to two
// f32 vectors with a shift and a mask (bf16 is the top half of an f32), and
// both are multiply-added: 4 rows x 16 columns = 8 accumulators.
template <int R>
static void bf16_rows(const uint16_t* x, size_t ldx, const uint16_t* w, int k_pairs, float* acc) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  __m256 c[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = _mm256_setzero_ps();
  for (int kp = 0; kp < k_pairs; ++kp) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32));       // columns 0-7
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32 + 16));  // columns 8-15
    const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
    const __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(w0, hi_mask));
    const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
    const __m256 o1 = _mm256_castsi256_ps(_mm256_and_si256(w1, hi_mask));
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      // The row's pair as one 32-bit broadcast (a load), split like the
      // weights: with a scalar widening and broadcast per value (movzx, shl,
      // vmovd, vbroadcastss) the tile ran at 41 GFLOP/s on one Zen 3 core.
      int32_t pr;
      __builtin_memcpy(&pr, x + r * ldx + 2 * kp, 4);
      const __m256i xp = _mm256_set1_epi32(pr);
      const __m256 x0 = _mm256_castsi256_ps(_mm256_slli_epi32(xp, 16));
      const __m256 x1 = _mm256_castsi256_ps(_mm256_and_si256(xp, hi_mask));
      c[r][0] = _mm256_fmadd_ps(x1, o0, _mm256_fmadd_ps(x0, e0, c[r][0]));
      c[r][1] = _mm256_fmadd_ps(x1, o1, _mm256_fmadd_ps(x0, e1, c[r][1]));
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(acc + r * 32, c[r][0]);
    _mm256_storeu_ps(acc + r * 32 + 8, c[r][1]);
  }
}

static void gemm_bf16_tile(const uint16_t* x, size_t ldx, int rows, const uint16_t* panels, size_t panel_stride,
                           int n_panels, int k_pairs, float* acc) {
  for (int p = 0; p < n_panels; ++p) {
    const uint16_t* w = panels + p * panel_stride;
    float* a = acc + p * 16;
    switch (rows) {
      case 1: bf16_rows<1>(x, ldx, w, k_pairs, a); break;
      case 2: bf16_rows<2>(x, ldx, w, k_pairs, a); break;
      case 3: bf16_rows<3>(x, ldx, w, k_pairs, a); break;
      default: bf16_rows<4>(x, ldx, w, k_pairs, a); break;
    }
  }
}

// gemm_u8s8_s32_2x16__avx2: AVX2 has no u8 x s8 dot product that is exact
// (vpmaddubsw adds two u8 x s8 products into a saturating s16: 2 x 255 x 127
// = 64770 overflows), so both sides are widened to s16 and multiplied by
// vpmaddwd, whose pair sums (at most 2 x 255 x 128) go into s32 exactly: the
// same integers as VNNI's vpdpbusd, so every ISA gives the same results.
// The weights keep the VNNI layout (panels[k / 4][j][k % 4]): 16 bytes are 4
// columns x one K quad, widened by one vpmovsxbw; a row's quad, widened once
// per tile into xw (below), is broadcast as 64 bits, so the products pair
// k, k+1 and k+2, k+3 of each column in adjacent s32 lanes, added at the end
// (vphaddd). 2 rows x 4 groups of 4 columns = 8 accumulators; per K quad 2
// broadcasts, 4 widening loads, 8 vpmaddwd and 8 vpaddd for 128 products.
// Zen 3 issues vpmaddwd on 2 pipes (measured: 2 a cycle, like its FMAs) at
// 16 products each: at most 32 products a cycle, 2x the f32 FMA rate.
constexpr int kI8Chunk = 1280;  // K quads widened at a time (large-v3's MLP down): 2 rows x 10 KB on the stack

// One K quad of the 2 x 16 tile, as one asm block: with intrinsics GCC 12
// added each product into a fresh register and copied it back (8 vmovdqa a
// quad) and kept an accumulator on the stack: 14 products a cycle on Zen 3.
static inline void i8_quad_2x16(const int16_t* x0, const int16_t* x1, const int8_t* w, __m256i& c00, __m256i& c01,
                                __m256i& c02, __m256i& c03, __m256i& c10, __m256i& c11, __m256i& c12, __m256i& c13) {
  __m256i a0, a1, b, t;
  asm("vpbroadcastq %[x0], %[a0]\n\t"
      "vpbroadcastq %[x1], %[a1]\n\t"
      "vpmovsxbw 0(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c00], %[c00]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c10], %[c10]\n\t"
      "vpmovsxbw 16(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c01], %[c01]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c11], %[c11]\n\t"
      "vpmovsxbw 32(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c02], %[c02]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c12], %[c12]\n\t"
      "vpmovsxbw 48(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c03], %[c03]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c13], %[c13]"
      : [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02), [c03] "+x"(c03), [c10] "+x"(c10), [c11] "+x"(c11),
        [c12] "+x"(c12), [c13] "+x"(c13), [a0] "=&x"(a0), [a1] "=&x"(a1), [b] "=&x"(b), [t] "=&x"(t)
      : [x0] "m"(*reinterpret_cast<const int64_t*>(x0)), [x1] "m"(*reinterpret_cast<const int64_t*>(x1)),
        [w] "r"(w), "m"(*reinterpret_cast<const int8_t(*)[64]>(w)));
}

// c[g] lane l holds column 4 g + l / 2, K pair l % 2 of each quad: vphaddd
// sums the pairs within 128-bit halves (columns 0 1 4 5 | 2 3 6 7 for
// g = 0, 1), and the 64-bit permute puts them in order.
static inline void i8_store_row(__m256i c0, __m256i c1, __m256i c2, __m256i c3, bool add, int32_t* acc) {
  __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(c0, c1), 0xD8);
  __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(c2, c3), 0xD8);
  if (add) {
    lo = _mm256_add_epi32(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc)));
    hi = _mm256_add_epi32(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + 8)));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc), lo);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + 8), hi);
}

// u8 rows r0 and r0 + 1 (or r0 twice when it is the last) of K quads
// k0..k0+kn, widened to s16 into xw, for the broadcasts of the tiles above
// and below.
static void widen_pair(const uint8_t* x, size_t ldx, int r0, int pair, int k0, int kn, int16_t (*xw)[kI8Chunk * 4]) {
  for (int r = 0; r < 2; ++r) {
    const uint8_t* xr = x + (r0 + std::min(r, pair - 1)) * ldx + 4 * k0;
    int e = 0;
    for (; e + 16 <= 4 * kn; e += 16)
      _mm256_store_si256(reinterpret_cast<__m256i*>(&xw[r][e]),
                         _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xr + e))));
    for (; e < 4 * kn; ++e) xw[r][e] = xr[e];
  }
}

static void gemm_i8_tile(const uint8_t* x, size_t ldx, int rows, const int8_t* panels, size_t panel_stride,
                         int n_panels, int k_quads, int32_t* acc) {
  alignas(32) int16_t xw[2][kI8Chunk * 4];
  for (int i = 0; i < rows; i += 2) {
    const int pair = std::min(2, rows - i);  // a single last row runs as a pair with itself, stored once
    for (int k0 = 0; k0 < k_quads; k0 += kI8Chunk) {
      const int kn = std::min(kI8Chunk, k_quads - k0);
      widen_pair(x, ldx, i, pair, k0, kn, xw);
      for (int p = 0; p < n_panels; ++p) {
        const int8_t* w = panels + p * panel_stride + static_cast<size_t>(k0) * 64;
        __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
                c13 = c00;
        for (int kq = 0; kq < kn; ++kq)
          i8_quad_2x16(&xw[0][4 * kq], &xw[1][4 * kq], w + kq * 64, c00, c01, c02, c03, c10, c11, c12, c13);
        int32_t* a = acc + i * 32 + p * 16;
        i8_store_row(c00, c01, c02, c03, k0 > 0, a);
        if (pair == 2) i8_store_row(c10, c11, c12, c13, k0 > 0, a + 32);
      }
    }
  }
}

// gemm_u8s10_s32_2x16__avx2: the decoder's int10 weights (kernels.h,
// pack_i10_panels) by the int8 tile's method: each weight 4 hi + lo is
// rebuilt as an s16 (|q| <= 511) from its hi byte (vpmovsxbw, shifted by 2)
// and its 2-bit digit of the lo bytes, then vpmaddwd with the widened u8
// rows: pair sums at most 2 x 255 x 512, exact in s32 like the other ISAs.
// One K quad of the 2 x 16 tile on weights already widened to s16 (64 per
// quad, 4 groups of 4 columns x 4 K, as vpmovsxbw leaves the int8 ones).
static inline void i16_quad_2x16(const int16_t* x0, const int16_t* x1, const int16_t* w, __m256i& c00, __m256i& c01,
                                 __m256i& c02, __m256i& c03, __m256i& c10, __m256i& c11, __m256i& c12,
                                 __m256i& c13) {
  __m256i a0, a1, b, t;
  asm("vpbroadcastq %[x0], %[a0]\n\t"
      "vpbroadcastq %[x1], %[a1]\n\t"
      "vmovdqa 0(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c00], %[c00]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c10], %[c10]\n\t"
      "vmovdqa 32(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c01], %[c01]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c11], %[c11]\n\t"
      "vmovdqa 64(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c02], %[c02]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c12], %[c12]\n\t"
      "vmovdqa 96(%[w]), %[b]\n\t"
      "vpmaddwd %[b], %[a0], %[t]\n\tvpaddd %[t], %[c03], %[c03]\n\t"
      "vpmaddwd %[b], %[a1], %[t]\n\tvpaddd %[t], %[c13], %[c13]"
      : [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02), [c03] "+x"(c03), [c10] "+x"(c10), [c11] "+x"(c11),
        [c12] "+x"(c12), [c13] "+x"(c13), [a0] "=&x"(a0), [a1] "=&x"(a1), [b] "=&x"(b), [t] "=&x"(t)
      : [x0] "m"(*reinterpret_cast<const int64_t*>(x0)), [x1] "m"(*reinterpret_cast<const int64_t*>(x1)),
        [w] "r"(w), "m"(*reinterpret_cast<const int16_t(*)[64]>(w)));
}

// The s16 weight of each of 16 columns x 4 K per quad, for K quads
// k0..k0+kn (kn a multiple of 4) of panel p: 4 hi + lo (kernels.h).
static void widen_i10(const uint8_t* tile, int n_panels, int p, int k0, int kn, int16_t* wd) {
  const __m256i three = _mm256_set1_epi16(3);
  for (int kg = 0; kg < kn; kg += 4) {
    const uint8_t* g = tile + static_cast<size_t>((k0 + kg) / 4) * n_panels * 320;
    for (int c = 0; c < 4; ++c) {
      const __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + p * 64 + 16 * c)));
      for (int u = 0; u < 4; ++u) {
        const __m128i* hp = reinterpret_cast<const __m128i*>(g + (n_panels + u * n_panels + p) * 64 + 16 * c);
        const __m256i w = _mm256_add_epi16(_mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(hp)), 2),
                                           _mm256_and_si256(_mm256_srli_epi16(lo, 2 * u), three));
        _mm256_store_si256(reinterpret_cast<__m256i*>(wd + (kg + u) * 64 + 16 * c), w);
      }
    }
  }
}

// More than one row pair (batched decoding, the prompt): each panel's
// weights are widened once per chunk into wd and every pair reads them as
// they are; widening them again for every pair, as the one-pair path below
// does, cost about as many instructions as the products.
constexpr int kI10Chunk = 256;  // K quads: 32 KB of widened weights on the stack

static void gemm_i10_tile_rows(const uint8_t* x, size_t ldx, int rows, const uint8_t* tile, int n_panels,
                               int k_quads, int32_t* acc) {
  alignas(32) int16_t wd[kI10Chunk * 64];
  alignas(32) int16_t xw[2][kI8Chunk * 4];
  for (int k0 = 0; k0 < k_quads; k0 += kI10Chunk) {
    const int kn = std::min(kI10Chunk, k_quads - k0);  // a multiple of 4 quads (k_quads is of 16)
    for (int p = 0; p < n_panels; ++p) {
      widen_i10(tile, n_panels, p, k0, kn, wd);
      for (int i = 0; i < rows; i += 2) {
        const int pair = std::min(2, rows - i);
        widen_pair(x, ldx, i, pair, k0, kn, xw);
        __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
                c13 = c00;
        for (int kq = 0; kq < kn; ++kq)
          i16_quad_2x16(&xw[0][4 * kq], &xw[1][4 * kq], wd + kq * 64, c00, c01, c02, c03, c10, c11, c12, c13);
        int32_t* a = acc + i * 32 + p * 16;
        i8_store_row(c00, c01, c02, c03, k0 > 0, a);
        if (pair == 2) i8_store_row(c10, c11, c12, c13, k0 > 0, a + 32);
      }
    }
  }
}

static void gemm_i10_tile(const uint8_t* x, size_t ldx, int rows, const uint8_t* tile, int n_panels, int k_quads,
                          int32_t* acc) {
  if (rows > 2) return gemm_i10_tile_rows(x, ldx, rows, tile, n_panels, k_quads, acc);
  alignas(32) int16_t xw[2][kI8Chunk * 4];
  const __m256i three = _mm256_set1_epi16(3);
  for (int i = 0; i < rows; i += 2) {
    const int pair = std::min(2, rows - i);
    for (int k0 = 0; k0 < k_quads; k0 += kI8Chunk) {
      const int kn = std::min(kI8Chunk, k_quads - k0);  // a multiple of 4 quads (k_quads is of 16)
      widen_pair(x, ldx, i, pair, k0, kn, xw);
      for (int p = 0; p < n_panels; ++p) {
        __m256i c0[4], c1[4];
        for (int c = 0; c < 4; ++c) c0[c] = c1[c] = _mm256_setzero_si256();
        for (int kg = 0; kg < kn; kg += 4) {
          const uint8_t* g = tile + static_cast<size_t>((k0 + kg) / 4) * n_panels * 320;
          for (int c = 0; c < 4; ++c) {
            const __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + p * 64 + 16 * c)));
            for (int u = 0; u < 4; ++u) {
              const __m128i* hp = reinterpret_cast<const __m128i*>(g + (n_panels + u * n_panels + p) * 64 + 16 * c);
              const __m256i w = _mm256_add_epi16(_mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(hp)), 2),
                                                 _mm256_and_si256(_mm256_srli_epi16(lo, 2 * u), three));
              int64_t q0, q1;
              __builtin_memcpy(&q0, &xw[0][4 * (kg + u)], 8);
              __builtin_memcpy(&q1, &xw[1][4 * (kg + u)], 8);
              c0[c] = _mm256_add_epi32(c0[c], _mm256_madd_epi16(_mm256_set1_epi64x(q0), w));
              c1[c] = _mm256_add_epi32(c1[c], _mm256_madd_epi16(_mm256_set1_epi64x(q1), w));
            }
          }
        }
        int32_t* a = acc + i * 32 + p * 16;
        i8_store_row(c0[0], c0[1], c0[2], c0[3], k0 > 0, a);
        if (pair == 2) i8_store_row(c1[0], c1[1], c1[2], c1[3], k0 > 0, a + 32);
      }
    }
  }
}
}  // namespace avx2_ns

const KernelTable& kernel_table_avx2() {
  static const KernelTable t = {Isa::avx2,
                                "gemm_f32_f32_6x16__avx2",
                                6,
                                avx2_ns::gemm_f32_tile,
                                "gemm_bf16_f32_4x16__avx2",
                                4,
                                avx2_ns::gemm_bf16_tile,
                                "gemm_u8s8_s32_2x16__avx2",
                                4,
                                avx2_ns::gemm_i8_tile,
                                "gemm_u8s10_s32_2x16__avx2",
                                16,  // 8 rows of 16-bit activations: each tile's weights widened once for 8 rows
                                avx2_ns::gemm_i10_tile,
                                avx2_ns::epilogue_tile_generic,
                                avx2_ns::to_bf16_row_generic,
                                avx2_ns::quantize_u8_row_avx2,
                                avx2_ns::quantize_u16_row_avx2,
                                "rowops_f32__avx2",
                                avx2_ns::dot_generic,
                                avx2_ns::axpy_generic,
                                avx2_ns::layer_norm_generic,
                                avx2_ns::gelu_generic,
                                avx2_ns::gelu_q8_generic,
                                avx2_ns::softmax_generic,
                                avx2_ns::exp_sum_generic,
                                avx2_ns::dot_bf16_generic,
                                avx2_ns::axpy_bf16_generic,
                                "attend_row_f32__avx2",
                                avx2_ns::attend_row_f32_generic,
                                avx2_ns::attend_row_bf16_generic,
                                avx2_ns::attend_heads_f32_generic,
                                avx2_ns::attend_heads_bf16_generic,
                                avx2_ns::dequant_tile_generic,
                                nullptr,
                                nullptr,
                                nullptr};
  return t;
}

}  // namespace ama::cpu
