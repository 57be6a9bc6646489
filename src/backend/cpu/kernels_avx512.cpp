// AVX-512 variants. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mfma -mf16c (see CMakeLists.txt); only called when cpu_features() reports them.
// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 headers
// (the masked builtins' undefined pass-through operand): a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/avx512_util.h"
#include "backend/cpu/kernels.h"

namespace ama::cpu {
namespace avx512_ns {

// gelu_f32__avx512: the portable kernel's arithmetic (erf by Abramowitz and
// Stegun 7.1.26, |error| <= 1.5e-7) with cheaper pieces. 1 / (1 + p |z|) is
// vrcp14ps and one Newton step (relative error about 2^-27, against
// vdivps' 2^-24, and a fifth of its cost), and e^(-z^2) = 2^y is
// 2^round(y) by vscalefps times the same degree-7 polynomial in
// (y - round(y)) ln 2, which needs neither the range clamp nor the
// exponent-bit arithmetic and the underflow select of exp_poly. About 31
// instructions per 16 values against about 45 and a division. One core,
// 8 x 1024 values in L1: 4.2 us against 6.0 (2.7 -> 1.9 cycles a value);
// base's 1500 x 2048 MLP activations in memory: 1.84 against 2.43 ms.
static inline __m512 gelu16(__m512 x) {
  const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
  // |z| is capped at 11, where erf is 1 in float (it is from 3.92 on) and
  // e^(-z^2) = 2^-175 is 0, as exp_poly's underflow gives it: the Newton
  // step below sees no infinity (inf * 0), and GELU(-inf) = -inf * 0 is NaN
  // as in the portable kernel. A NaN z becomes 11 and stays NaN through x.
  const __m512 az = _mm512_min_ps(_mm512_abs_ps(z), _mm512_set1_ps(11.0f));
  const __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), az, _mm512_set1_ps(1.0f));
  const __m512 t0 = _mm512_rcp14_ps(d);
  const __m512 t = _mm512_mul_ps(t0, _mm512_fnmadd_ps(d, t0, _mm512_set1_ps(2.0f)));
  __m512 a = _mm512_set1_ps(1.061405429f);
  a = _mm512_fmadd_ps(a, t, _mm512_set1_ps(-1.453152027f));
  a = _mm512_fmadd_ps(a, t, _mm512_set1_ps(1.421413741f));
  a = _mm512_fmadd_ps(a, t, _mm512_set1_ps(-0.284496736f));
  a = _mm512_fmadd_ps(a, t, _mm512_set1_ps(0.254829592f));
  // e^(-z^2) = 2^y, y >= -174.6.
  const __m512 y = _mm512_mul_ps(_mm512_mul_ps(az, az), _mm512_set1_ps(-1.44269504088896341f));
  const __m512 k = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_mul_ps(_mm512_sub_ps(y, k), _mm512_set1_ps(0.693147180559945309f));
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512 e = _mm512_scalef_ps(p, k);
  // q = 1 - erf(|z|); 1 + erf(z) is 2 - q for z >= 0 and q for z < 0.
  const __m512 q = _mm512_mul_ps(_mm512_mul_ps(a, t), e);
  const __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 one_plus_erf = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), q), q);
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), one_plus_erf);
}

// gelu_q8_f32__avx512 (Act::gelu_q8, kernels.h): x sigma(x (a + b x^2 +
// c x^4)), x clamped to [-8, 8] inside sigma by one vrangeps. sigma(t) =
// 1 / (1 + 2^y), y = -t log2(e), |y| <= 47: 2^round(y) by vscalefps times a
// degree-5 polynomial in y - round(y) (relative error 2.4e-6), and the
// reciprocal by vrcp14ps alone (relative 2^-14, so 6e-5 |GELU(x)|; a row's
// 8-bit step is its range / 255). 17 vector instructions against gelu16's
// ~31. Base's 1500 x 2048 at 2 threads (kernels harness, one Zen 4 VM):
// 1.30-1.37 ms against 2.03-2.17; in MLP up's epilogue at one thread
// (+LN, int8): 9.3-9.4 against 9.8-10.0 ms, 8.0 without any GELU.
static inline __m512 gelu_q8_16(__m512 x) {
  // sign(x) min(|x|, 8): vrangeps, absolute minimum, sign from x.
  const __m512 xc = _mm512_range_ps(x, _mm512_set1_ps(8.0f), 0x02);
  const __m512 x2 = _mm512_mul_ps(xc, xc);
  // -(a + b x^2 + c x^4) log2(e)
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kGeluQ8C * -1.44269504088896341f), x2,
                             _mm512_set1_ps(kGeluQ8B * -1.44269504088896341f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(kGeluQ8A * -1.44269504088896341f));
  const __m512 y = _mm512_mul_ps(p, xc);  // |y| <= 47
  const __m512 k = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(y, k);  // [-0.5, 0.5]
  __m512 e = _mm512_set1_ps(1.3333558146428443e-3f);  // ln2^5 / 5!
  e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(9.618129107628477e-3f));
  e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(5.550410866482158e-2f));
  e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(2.402265069591007e-1f));
  e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(6.931471805599453e-1f));
  e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(1.0f));
  const __m512 d = _mm512_add_ps(_mm512_scalef_ps(e, k), _mm512_set1_ps(1.0f));
  return _mm512_mul_ps(x, _mm512_rcp14_ps(d));
}

// x[i] = f(x[i]) over a row, 16 values at a time, the tail masked.
template <typename F>
static inline void map_row(float* x, int n, const F& f) {
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

static void gelu_avx512(float* x, int n) {
  map_row(x, n, [](__m512 v) { return gelu16(v); });
}
static void gelu_q8_avx512(float* x, int n) {
  map_row(x, n, [](__m512 v) { return gelu_q8_16(v); });
}
#define AMA_GELU_ROW gelu_avx512
#define AMA_GELU_Q8_ROW gelu_q8_avx512
#include "backend/cpu/kernels_generic.inc"
#undef AMA_GELU_ROW
#undef AMA_GELU_Q8_ROW

// to_bf16_row: avx512::to_bf16_rne, the portable rule's bits (NaN quieted,
// round to nearest even) in ~8 instructions per 16 values; the portable
// loop compiled here took 3x as long (helper h1's perf of the attention
// block: 1.15% against 0.39% of its samples).
static void to_bf16_row_avx512(const float* x, int n, uint16_t* out) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), avx512::to_bf16_rne(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(out + i, m, avx512::to_bf16_rne(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// quantize_u{8,16}_row: the portable rule (kernels_generic.inc) in five
// instructions per 16 values: (x - lo) * inv as two roundings, as there;
// vmaxps against 0 (a NaN becomes 0, as the portable cast gives it);
// vcvtps2dq rounding to nearest even (round_even: exact below 2^22); and
// vpmovusdb's unsigned saturation for the clamp at the top (t >= 255.5 and
// +inf, which converts to 0x80000000, give 255 as the portable clamp
// does). Bitwise equal to the portable kernel (RowConversionsMatchThePortableRule,
// test_kernels.cpp). GCC 12's vectorization of the portable loop took ~18
// instructions per 16 values, mostly mask-register moves: base's MLP down
// (1500 x 2048 x 512, int8) spent 11% of its time quantizing its input.
static inline __m512i quantize_steps16(__m512 x, __m512 lo, __m512 inv) {
  const __m512 t = _mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(x, lo), inv), _mm512_setzero_ps());
  return _mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static void quantize_u8_row_avx512(const float* x, int n, uint8_t* out, float* scale, float* lo_out) {
  float lo, hi;
  min_max_generic(x, n, &lo, &hi);
  const float s = hi > lo ? (hi - lo) / 255.0f : 1.0f, inv = 1.0f / s;
  const __m512 vlo = _mm512_set1_ps(lo), vinv = _mm512_set1_ps(inv);
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtusepi32_epi8(quantize_steps16(_mm512_loadu_ps(x + i), vlo, vinv)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm_mask_storeu_epi8(out + i, m, _mm512_cvtusepi32_epi8(quantize_steps16(_mm512_maskz_loadu_ps(m, x + i), vlo, vinv)));
  }
  *scale = s;
  *lo_out = lo;
}

static void quantize_u16_row_avx512(const float* x, int n, uint8_t* hi_digit, uint8_t* lo_digit, float* scale,
                                    float* lo_out) {
  float lo, hi;
  min_max_generic(x, n, &lo, &hi);
  const float s = hi > lo ? (hi - lo) / 65535.0f : 1.0f, inv = 1.0f / s;
  const __m512 vlo = _mm512_set1_ps(lo), vinv = _mm512_set1_ps(inv);
  const __m512i top = _mm512_set1_epi32(65535);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xffff : static_cast<__mmask16>((1u << (n - i)) - 1);
    // Unsigned minimum with 65535: the clamp at the top (+inf's 0x80000000 included).
    const __m512i u = _mm512_min_epu32(quantize_steps16(_mm512_maskz_loadu_ps(m, x + i), vlo, vinv), top);
    const __m128i h = _mm512_cvtepi32_epi8(_mm512_srli_epi32(u, 8));
    const __m128i l = _mm512_cvtepi32_epi8(_mm512_and_si512(u, _mm512_set1_epi32(255)));
    if (m == 0xffff) {  // plain stores where whole: see tile_store
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hi_digit + i), h);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lo_digit + i), l);
    } else {
      _mm_mask_storeu_epi8(hi_digit + i, m, h);
      _mm_mask_storeu_epi8(lo_digit + i, m, l);
    }
  }
  *scale = s;
  *lo_out = lo;
}

// TileOut's epilogue, in registers: the column vectors of a tile (loaded
// once), then each row's two accumulators, as f32 (dequantized for int8).
struct TileCols {
  __mmask16 m[2];
  __m512 ws[2], cs[2], b[2];
  TileCols(const TileOut& o, bool dequant) {
    m[0] = o.cols >= 16 ? 0xffff : static_cast<__mmask16>((1u << o.cols) - 1);
    m[1] = o.cols >= 32 ? 0xffff : o.cols > 16 ? static_cast<__mmask16>((1u << (o.cols - 16)) - 1) : 0;
    for (int p = 0; p < 2; ++p) {
      ws[p] = dequant ? _mm512_maskz_loadu_ps(m[p], o.w_scale + 16 * p) : _mm512_setzero_ps();
      cs[p] = dequant ? _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m[p], o.col_sum + 16 * p)) : _mm512_setzero_ps();
      b[p] = o.bias ? _mm512_maskz_loadu_ps(m[p], o.bias + 16 * p) : _mm512_setzero_ps();
    }
  }
};

// A tile's epilogue, on the accumulators in registers: each step is one
// test per tile and then straight-line code over the R x 2 vectors (bias,
// activation, then the stores). Tested per row and half instead, as before,
// the epilogue of an 8-row tile was 16 copies of a chain of branches to
// code laid out far apart. Tiny's 1500 x 384 x 1536 bf16 GEMM at one Zen 5
// thread, the library's gemm_bf16_tile_out against a standalone copy of its
// K loop followed by plain stores (alternated in one process, same
// buffers): 395-408 against 427-440 GFLOP/s before, 404-418 against
// 431-434 with tile_store; what remains of the gap is not explained.
//
// Whole 16-column halves are written with plain stores, only a tail with a
// masked one: on Zen 5 a masked store costs far more than a plain one even
// with every lane set. With masked stores throughout, base's 1500 x 512 x
// 2048 int8 GEMM at one thread took 5.9 ms against oneDNN's 4.3 (0.74x),
// and 4.6 ms (0.97x) when the output went to a small reused buffer
// instead; with plain stores, 4.1 against 4.0 ms (0.95-0.98x). The cross
// K/V (1500 x 512 x 6144, bf16 out) went from 0.72 to 0.93x, f32 mlp up
// from 0.83 to 0.95x (same runs, `amanuensis_bench --onednn-compare`). A
// masked store with an empty mask (the second half of a tile of at most 16
// columns) writes nothing.
//
// The accumulators by reference into an always-inlined function, and every
// loop over them unrolled (#pragma GCC unroll): with a loop indexing them at
// run time, GCC 12 kept the whole array in memory, zeroed on the stack
// before the K loop and stored back after it. Register-only accumulators,
// one Zen 4 core: 1500 x 512 x 1536 bf16 11.60-11.64 -> 10.97 ms (86.6 ->
// 91.6% of peak), int8 5.96-6.38 -> 5.76-5.93 ms.
template <int R>
static inline __attribute__((always_inline)) void tile_store(__m512 (&v)[R][2], const TileOut& o, const TileCols& t) {
  const Act act = o.act;
  const size_t ldy = o.ldy;
  const bool full = t.m[0] == 0xffff && t.m[1] == 0xffff;
  if (o.bias) {
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) v[r][0] = _mm512_add_ps(v[r][0], t.b[0]), v[r][1] = _mm512_add_ps(v[r][1], t.b[1]);
  }
  if (act == Act::gelu) {
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) v[r][0] = gelu16(v[r][0]), v[r][1] = gelu16(v[r][1]);
  } else if (act == Act::gelu_q8) {
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) v[r][0] = gelu_q8_16(v[r][0]), v[r][1] = gelu_q8_16(v[r][1]);
  }
  if (uint16_t* yb = o.y_bf16) {
    if (full) {
#pragma GCC unroll 12
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
        for (int p = 0; p < 2; ++p)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(yb + r * ldy + 16 * p), avx512::to_bf16_rne(v[r][p]));
    } else {
#pragma GCC unroll 12
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
        for (int p = 0; p < 2; ++p) _mm256_mask_storeu_epi16(yb + r * ldy + 16 * p, t.m[p], avx512::to_bf16_rne(v[r][p]));
    }
    return;
  }
  float* y = o.y;
  if (full) {
    if (o.accumulate) {
#pragma GCC unroll 12
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
        for (int p = 0; p < 2; ++p) v[r][p] = _mm512_add_ps(v[r][p], _mm512_loadu_ps(y + r * ldy + 16 * p));
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
      for (int p = 0; p < 2; ++p) _mm512_storeu_ps(y + r * ldy + 16 * p, v[r][p]);
  } else {
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
      for (int p = 0; p < 2; ++p) {
        __m512 x = v[r][p];
        if (o.accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(t.m[p], y + r * ldy + 16 * p));
        _mm512_mask_storeu_ps(y + r * ldy + 16 * p, t.m[p], x);
      }
  }
}

// gemm_f32_f32_6x32__avx512: 6 rows x 2 zmm = 12 accumulators, 2 weight loads
// and 6 broadcasts per k, out of 32 zmm registers.
// Tried and dropped: 6 x 64 (24 accumulators, oneDNN's brgemm tile, seen
// with ONEDNN_JIT_DUMP=1) for the tiles that finish in registers. Against
// oneDNN at one Zen 5 thread it lost at K = 240 (conv1 0.95-0.97 -> 0.91-
// 0.94), was level or 1-2% behind at K = 384-512, gained 1-4% at K = 768-
// 2048 in one alternated pair of runs and lost at K = 4096 (medium MLP down
// 0.96 -> 0.92), where its 64 columns of weights (1 MB) no longer fit the
// L2; the run-to-run spread of the ratios is itself 2-3%.
// One template per row count (dispatch_rows), every loop over rows
// unrolled: with the row count known only at run time GCC 12 kept the
// accumulators in memory (see tile_store); 1500 x 512 x 2048 at one Zen 4
// core: 30.7-31.2 -> 29.2-29.8 ms.
template <int R, bool Out>
static void f32_rows(const float* x, size_t ldx, const float* w0p, const float* w1p, int n_panels, int k, float* acc,
                     const TileOut* o) {
  __m512 c[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = _mm512_setzero_ps();
  for (int kk = 0; kk < k; ++kk) {
    const __m512 w0 = _mm512_loadu_ps(w0p + kk * 16);
    const __m512 w1 = _mm512_loadu_ps(w1p + kk * 16);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * ldx + kk]);
      c[r][0] = _mm512_fmadd_ps(xv, w0, c[r][0]);
      c[r][1] = _mm512_fmadd_ps(xv, w1, c[r][1]);
    }
  }
  if constexpr (Out) {
    tile_store<R>(c, *o, TileCols(*o, false));
  } else {
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(acc + r * 32, c[r][0]);
      if (n_panels > 1) _mm512_storeu_ps(acc + r * 32 + 16, c[r][1]);
    }
  }
}

template <bool Out>
static void f32_tile(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride, int n_panels,
                     int k, float* acc, const TileOut* o) {
  const float* w1p = panels + (n_panels > 1 ? panel_stride : 0);
  avx512::dispatch_rows<6>(rows, [&](auto r) {
    f32_rows<decltype(r)::value, Out>(x, ldx, panels, w1p, n_panels, k, acc, o);
  });
}

// The *_tile_out kernels take any number of rows (a row block of the GEMM,
// kernels.h) and step through them in tiles of H rows here: one call per
// block and column pair instead of one per tile saves the driver's
// per-tile dispatch (its std::function and TileOut set-up were ~5% of the
// samples of base's 1500 x 512 x 2048 int8 GEMM at 2 threads; at one Zen 4
// thread that GEMM went from 8.05-8.36 to 7.82-8.00 ms).
template <int H, typename Tile>
static inline void tile_span(int rows, const TileOut& out, const Tile& tile) {
  for (int i0 = 0; i0 < rows; i0 += H) {
    TileOut o = out;
    const size_t at = static_cast<size_t>(i0) * out.ldy;
    if (o.y) o.y += at;
    if (o.y_bf16) o.y_bf16 += at;
    if (o.sx) o.sx += i0, o.lo += i0;
    tile(i0, std::min(H, rows - i0), o);
  }
}

static void gemm_f32_tile(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride,
                          int n_panels, int k, float* acc) {
  f32_tile<false>(x, ldx, rows, panels, panel_stride, n_panels, k, acc, nullptr);
}

static void gemm_f32_tile_out(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride,
                              int n_panels, int k, const TileOut& out) {
  tile_span<6>(rows, out, [&](int i0, int r, const TileOut& o) {
    f32_tile<true>(x + i0 * ldx, ldx, r, panels, panel_stride, n_panels, k, nullptr, &o);
  });
}

// gemm_bf16_f32_8x32__avx512bf16: the f32 tile's structure with K in pairs;
// one vdpbf16ps does two multiply-adds per lane. R (rows) is a template
// parameter so that the accumulators stay in registers for every row count.
template <int R, bool Out>
__attribute__((target("avx512bf16"))) static void bf16_rows(const uint16_t* x, size_t ldx, const uint16_t* w0p,
                                                            const uint16_t* w1p, int k_pairs, float* acc,
                                                            const TileOut* o = nullptr) {
  __m512 c[R][2];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = _mm512_setzero_ps();
  for (int kp = 0; kp < k_pairs; ++kp) {
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(w0p + kp * 32);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(w1p + kp * 32);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      uint32_t pair;
      __builtin_memcpy(&pair, x + r * ldx + 2 * kp, 4);
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
      c[r][0] = _mm512_dpbf16_ps(c[r][0], xv, w0);
      c[r][1] = _mm512_dpbf16_ps(c[r][1], xv, w1);
    }
  }
  if constexpr (Out) {
    tile_store<R>(c, *o, TileCols(*o, false));
  } else {
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(acc + r * 32, c[r][0]);
      _mm512_storeu_ps(acc + r * 32 + 16, c[r][1]);  // see i8_rows
    }
  }
}

template <bool Out>
static void bf16_tile(const uint16_t* x, size_t ldx, int rows, const uint16_t* panels, size_t panel_stride,
                      int n_panels, int k_pairs, float* acc, const TileOut* o) {
  const uint16_t* w1 = panels + (n_panels > 1 ? panel_stride : 0);
  avx512::dispatch_rows<12>(rows, [&](auto r) { bf16_rows<decltype(r)::value, Out>(x, ldx, panels, w1, k_pairs, acc, o); });
}

static void gemm_bf16_tile(const uint16_t* x, size_t ldx, int rows, const uint16_t* panels, size_t panel_stride,
                           int n_panels, int k_pairs, float* acc) {
  bf16_tile<false>(x, ldx, rows, panels, panel_stride, n_panels, k_pairs, acc, nullptr);
}

static void gemm_bf16_tile_out(const uint16_t* x, size_t ldx, int rows, const uint16_t* panels, size_t panel_stride,
                               int n_panels, int k_pairs, const TileOut& out) {
  tile_span<8>(rows, out, [&](int i0, int r, const TileOut& o) {
    bf16_tile<true>(x + i0 * ldx, ldx, r, panels, panel_stride, n_panels, k_pairs, nullptr, &o);
  });
}

// vpdpbusd through inline asm: GCC 12 compiles _mm512_dpbusd_epi32 in a
// register-blocked loop with two vmovdqa32 copies per accumulator per step
// (its pattern ties the output to a fresh register), 24 moves for the 12
// dot products of a 6x32 tile; that loop ran at 60% of the VNNI peak.
// acc += u8(a) . s8(b), four products per 32-bit lane.
__attribute__((target("avx512vnni"), always_inline)) static inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// Four rows of the 8x32 int8 tile at one K quad, as one asm block: 4
// broadcasts of activation quads and 8 vpdpbusd. With dpbusd() per
// instruction GCC 12 still moved one accumulator through a spare register
// twice per quad (the last row's second panel); in one block it cannot.
// The eight accumulators are separate operands (GCC allows 30) so that they
// stay in registers; the "m" operand tells GCC that the block reads memory
// from x on (its broadcasts), so no store to it can move past the block.
__attribute__((target("avx512vnni"), always_inline)) static inline void dot4_rows(
    __m512i& d0, __m512i& d1, __m512i& e0, __m512i& e1, __m512i& f0, __m512i& f1, __m512i& g0, __m512i& g1,
    __m512i w0, __m512i w1, const uint8_t* x, size_t ldx) {
  __m512i t0, t1, t2, t3;
  asm("vpbroadcastd (%[a]), %[t0]\n\t"
      "vpbroadcastd (%[a],%[l1]), %[t1]\n\t"
      "vpbroadcastd (%[a],%[l1],2), %[t2]\n\t"
      "vpbroadcastd (%[a],%[l3]), %[t3]\n\t"
      "vpdpbusd %[w0], %[t0], %[d0]\n\t"
      "vpdpbusd %[w1], %[t0], %[d1]\n\t"
      "vpdpbusd %[w0], %[t1], %[e0]\n\t"
      "vpdpbusd %[w1], %[t1], %[e1]\n\t"
      "vpdpbusd %[w0], %[t2], %[f0]\n\t"
      "vpdpbusd %[w1], %[t2], %[f1]\n\t"
      "vpdpbusd %[w0], %[t3], %[g0]\n\t"
      "vpdpbusd %[w1], %[t3], %[g1]"
      : [d0] "+v"(d0), [d1] "+v"(d1), [e0] "+v"(e0), [e1] "+v"(e1), [f0] "+v"(f0), [f1] "+v"(f1), [g0] "+v"(g0),
        [g1] "+v"(g1), [t0] "=&v"(t0), [t1] "=&v"(t1), [t2] "=&v"(t2), [t3] "=&v"(t3)
      : [w0] "v"(w0), [w1] "v"(w1), [a] "r"(x), [l1] "r"(ldx), [l3] "r"(3 * ldx),
        "m"(*reinterpret_cast<const uint8_t(*)[]>(x)));  // the rows it reads: memory the asm depends on
}

// gemm_u8s8_s32_8x32__avx512vnni: vpdpbusd does four u8 x s8 products per
// lane; 8 rows x 2 panels = 16 accumulators, as the bf16 tile.
template <int R, bool Out>
__attribute__((target("avx512vnni"))) static void i8_rows(const uint8_t* x, size_t ldx, const int8_t* w0p,
                                                          const int8_t* w1p, int k_quads, int32_t* acc,
                                                          const TileOut* o = nullptr) {
  __m512i c[R][2];
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = _mm512_setzero_si512();
  if constexpr (R == 8) {
    // Plain variables: an array element bound to an asm operand by
    // reference stays in memory (a store per accumulator per quad).
    __m512i a0 = c[0][0], a1 = c[0][1], b0 = c[1][0], b1 = c[1][1], d0 = c[2][0], d1 = c[2][1], e0 = c[3][0],
            e1 = c[3][1], f0 = c[4][0], f1 = c[4][1], g0 = c[5][0], g1 = c[5][1], h0 = c[6][0], h1 = c[6][1],
            i0 = c[7][0], i1 = c[7][1];
    for (int kq = 0; kq < k_quads; ++kq) {
      const __m512i w0 = _mm512_loadu_si512(w0p + kq * 64);
      const __m512i w1 = _mm512_loadu_si512(w1p + kq * 64);
      dot4_rows(a0, a1, b0, b1, d0, d1, e0, e1, w0, w1, x + 4 * kq, ldx);
      dot4_rows(f0, f1, g0, g1, h0, h1, i0, i1, w0, w1, x + 4 * ldx + 4 * kq, ldx);
    }
    c[0][0] = a0, c[0][1] = a1, c[1][0] = b0, c[1][1] = b1, c[2][0] = d0, c[2][1] = d1, c[3][0] = e0, c[3][1] = e1;
    c[4][0] = f0, c[4][1] = f1, c[5][0] = g0, c[5][1] = g1, c[6][0] = h0, c[6][1] = h1, c[7][0] = i0, c[7][1] = i1;
  } else {
    for (int kq = 0; kq < k_quads; ++kq) {
      const __m512i w0 = _mm512_loadu_si512(w0p + kq * 64);
      const __m512i w1 = _mm512_loadu_si512(w1p + kq * 64);
      for (int r = 0; r < R; ++r) {
        uint32_t quad;
        __builtin_memcpy(&quad, x + r * ldx + 4 * kq, 4);
        const __m512i xv = _mm512_set1_epi32(static_cast<int>(quad));
        c[r][0] = dpbusd(c[r][0], xv, w0);
        c[r][1] = dpbusd(c[r][1], xv, w1);
      }
    }
  }
  if constexpr (Out) {
    // Dequantized: y = w_scale (sx (x . w) + lo col_sum) per row and column.
    const TileCols t(*o, true);
    __m512 v[R][2];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 sx = _mm512_set1_ps(o->sx[r]), lo = _mm512_set1_ps(o->lo[r]);
#pragma GCC unroll 2
      for (int p = 0; p < 2; ++p)
        v[r][p] = _mm512_mul_ps(t.ws[p], _mm512_fmadd_ps(sx, _mm512_cvtepi32_ps(c[r][p]), _mm512_mul_ps(lo, t.cs[p])));
    }
    tile_store<R>(v, *o, t);
  } else {
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_si512(acc + r * 32, c[r][0]);
      // Unconditionally: acc rows hold 32 columns, and with one panel the
      // second half repeats the first and nobody reads it.
      _mm512_storeu_si512(acc + r * 32 + 16, c[r][1]);
    }
  }
}

template <bool Out>
static void i8_tile(const uint8_t* x, size_t ldx, int rows, const int8_t* panels, size_t panel_stride, int n_panels,
                    int k_quads, int32_t* acc, const TileOut* o) {
  const int8_t* w1 = panels + (n_panels > 1 ? panel_stride : 0);
  avx512::dispatch_rows<8>(rows, [&](auto r) { i8_rows<decltype(r)::value, Out>(x, ldx, panels, w1, k_quads, acc, o); });
}

static void gemm_i8_tile(const uint8_t* x, size_t ldx, int rows, const int8_t* panels, size_t panel_stride,
                         int n_panels, int k_quads, int32_t* acc) {
  i8_tile<false>(x, ldx, rows, panels, panel_stride, n_panels, k_quads, acc, nullptr);
}

static void gemm_i8_tile_out(const uint8_t* x, size_t ldx, int rows, const int8_t* panels, size_t panel_stride,
                             int n_panels, int k_quads, const TileOut& out) {
  tile_span<8>(rows, out, [&](int i0, int r, const TileOut& o) {
    i8_tile<true>(x + i0 * ldx, ldx, r, panels, panel_stride, n_panels, k_quads, nullptr, &o);
  });
}

// gemm_u8s10_s32_4x32__avx512vnni: int10 weights as an int8 high part and a
// 2-bit low part (kernels.h). Per K quad, one vpdpbusd with the high bytes
// and one with the low bits, which a shift and a mask take out of one byte
// shared by four quads; the sums combine as 4 hi + lo at the end, exactly.
// 4 rows x 2 panels x (hi, lo) = 16 accumulators (6 rows, 24 accumulators,
// measured 12-18% slower at 16 tokens). At the int8 compute type the rows
// are the two digits of 16-bit activations, so a decoder step (1 token) is
// one 2-row tile: 8 vpdpbusd per 32 columns x 4 K, for 160 bytes of
// weights. A tile's bytes are one contiguous run, read in order
// (pack_i10_panels); stored as four runs (two panels' high bytes, two
// panels' low bits) the start of every tile waited on memory: at 1 thread,
// from DRAM, a 512 x 512 matrix took 30 us instead of 24.5 and the base
// logits 2.2 ms instead of 1.3.
template <int R, int P>
__attribute__((target("avx512vnni"))) static void i10_rows(const uint8_t* x, size_t ldx, const uint8_t* tile,
                                                           int k_quads, int32_t* acc) {
  __m512i ch[R][P], cl[R][P];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) ch[r][p] = cl[r][p] = _mm512_setzero_si512();
  const __m512i three = _mm512_set1_epi8(3);
  for (int g = 0; g < k_quads / 4; ++g) {
    const uint8_t* gp = tile + static_cast<size_t>(g) * P * 320;
    __m512i lo[P];
    for (int p = 0; p < P; ++p) lo[p] = _mm512_loadu_si512(gp + p * 64);
    for (int u = 0; u < 4; ++u) {
      __m512i wh[P], wl[P];
      for (int p = 0; p < P; ++p) {
        wh[p] = _mm512_loadu_si512(gp + (P + u * P + p) * 64);
        wl[p] = _mm512_and_si512(_mm512_srli_epi16(lo[p], 2 * u), three);
      }
      for (int r = 0; r < R; ++r) {
        uint32_t quad;
        __builtin_memcpy(&quad, x + r * ldx + 4 * (4 * g + u), 4);
        const __m512i xv = _mm512_set1_epi32(static_cast<int>(quad));
        for (int p = 0; p < P; ++p) {
          ch[r][p] = dpbusd(ch[r][p], xv, wh[p]);
          cl[r][p] = dpbusd(cl[r][p], xv, wl[p]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p)
      _mm512_storeu_si512(acc + r * 32 + 16 * p, _mm512_add_epi32(_mm512_slli_epi32(ch[r][p], 2), cl[r][p]));
}

template <int P>
static void i10_tile_panels(const uint8_t* x, size_t ldx, int rows, const uint8_t* tile, int k_quads, int32_t* acc) {
  avx512::dispatch_rows<4>(rows, [&](auto r) { i10_rows<decltype(r)::value, P>(x, ldx, tile, k_quads, acc); });
}

static void gemm_i10_tile(const uint8_t* x, size_t ldx, int rows, const uint8_t* tile, int n_panels, int k_quads,
                          int32_t* acc) {
  if (n_panels > 1)
    i10_tile_panels<2>(x, ldx, rows, tile, k_quads, acc);
  else
    i10_tile_panels<1>(x, ldx, rows, tile, k_quads, acc);
}

// attend_row_f32_d64__avx512: one query over n keys with the query and the
// output held in registers (d <= 128, a multiple of 16; other d fall back).
// Scores go 16 keys at a time: each key's d/16 products are summed lane-wise
// into its own register, and one transposing reduction (hsum16) turns the 16
// registers into the 16 scores, about 3 instructions per key where a
// horizontal sum per key took ~10 and serialized on its latency. Per key that
// leaves d/16 loads and FMAs for the score and d/16 for the value sum. (One
// head of a base row at a time, it still reads memory at under half speed:
// see attend_heads below, which attention() uses.)
static inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
static inline __m512 load16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// s[i] = the sum of the 16 lanes of a[i]: pairs of rows are interleaved and
// added (unpack), then quads (shuffle), then 128-bit lanes (two rounds of
// shuffle_f32x4). Each score is summed in the same fixed order.
static inline __m512 hsum16(const __m512* a) {
  __m512 b[8], c[4];
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 e0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 e1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(c[2], c[3], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(e0, e1, _MM_SHUFFLE(3, 1, 3, 1)));
}

template <typename KV, int D16>
static void attend_fixed(const float* q, const KV* k, const KV* v, int n, int ld, float scale, float* scratch,
                         float* out) {
  __m512 qv[D16];
  for (int c = 0; c < D16; ++c) qv[c] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * c), _mm512_set1_ps(scale));
  __m512 mx16 = _mm512_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 a[16];
    for (int t = 0; t < 16; ++t) {
      const KV* kj = k + static_cast<size_t>(j + t) * ld;
      a[t] = _mm512_mul_ps(qv[0], load16(kj));
      for (int c = 1; c < D16; ++c) a[t] = _mm512_fmadd_ps(qv[c], load16(kj + 16 * c), a[t]);
    }
    const __m512 s = hsum16(a);
    _mm512_storeu_ps(scratch + j, s);
    mx16 = _mm512_max_ps(mx16, s);
  }
  float mx = _mm512_reduce_max_ps(mx16);
  for (; j < n; ++j) {  // the last n % 16 keys
    const KV* kj = k + static_cast<size_t>(j) * ld;
    __m512 acc = _mm512_mul_ps(qv[0], load16(kj));
    for (int c = 1; c < D16; ++c) acc = _mm512_fmadd_ps(qv[c], load16(kj + 16 * c), acc);
    const float s = _mm512_reduce_add_ps(acc);
    scratch[j] = s;
    mx = s > mx ? s : mx;
  }
  const float inv = 1.0f / exp_sum_generic(scratch, n, mx);
  // Two sets of accumulators (even and odd keys) so that consecutive keys'
  // FMAs do not wait on each other's latency.
  __m512 o[2][D16];
  for (int c = 0; c < D16; ++c) o[0][c] = o[1][c] = _mm512_setzero_ps();
  j = 0;
  for (; j + 2 <= n; j += 2)
    for (int u = 0; u < 2; ++u) {
      const KV* vj = v + static_cast<size_t>(j + u) * ld;
      const __m512 p = _mm512_set1_ps(scratch[j + u]);
      for (int c = 0; c < D16; ++c) o[u][c] = _mm512_fmadd_ps(p, load16(vj + 16 * c), o[u][c]);
    }
  if (j < n) {
    const KV* vj = v + static_cast<size_t>(j) * ld;
    const __m512 p = _mm512_set1_ps(scratch[j]);
    for (int c = 0; c < D16; ++c) o[0][c] = _mm512_fmadd_ps(p, load16(vj + 16 * c), o[0][c]);
  }
  for (int c = 0; c < D16; ++c)
    _mm512_storeu_ps(out + 16 * c, _mm512_mul_ps(_mm512_add_ps(o[0][c], o[1][c]), _mm512_set1_ps(inv)));
}

template <typename KV>
static void attend_row(const float* q, const KV* k, const KV* v, int n, int ld, int d, float scale, float* scratch,
                       float* out) {
  switch (d) {
    case 64: return attend_fixed<KV, 4>(q, k, v, n, ld, scale, scratch, out);
    case 128: return attend_fixed<KV, 8>(q, k, v, n, ld, scale, scratch, out);
    case 32: return attend_fixed<KV, 2>(q, k, v, n, ld, scale, scratch, out);
    case 16: return attend_fixed<KV, 1>(q, k, v, n, ld, scale, scratch, out);
    case 80: return attend_fixed<KV, 5>(q, k, v, n, ld, scale, scratch, out);
    case 96: return attend_fixed<KV, 6>(q, k, v, n, ld, scale, scratch, out);
    default: return attend_row_generic<KV>(q, k, v, n, ld, d, scale, scratch, out);
  }
}
// attend_heads: several adjacent heads (a decoder step's cross-attention:
// all 8 heads of base) over a chunk of keys, in one pass over the key rows
// and one over the value rows, each row's heads read one after another. The
// order of reads is what matters: reading 16 rows head by head (128 bytes
// of every 1024-byte base row at a time) streams 11.5 GB/s on one Zen 4
// core, reading them row by row 23.4 GB/s (same bytes, same loads), and
// even 2 or 4 rows interleaved head by head stay near 10.5. So the scores go
// 16 (row, head) pairs at a time in row order into one hsum16, and the
// value sums row by row, with the running sums in out (L1). hsum16 sums
// every slot in the same order, so a head's result does not depend on the
// other heads in the call.
static constexpr int kMaxHeads = 32;
template <typename KV, int D16>
static void attend_heads_fixed(const float* q, const KV* k, const KV* v, int n, int ld, int n_heads, float scale,
                               float* scratch, float* m, float* l, float* out) {
  constexpr int d = 16 * D16;
  const int H = n_heads;
  alignas(64) float qs[kMaxHeads * d];  // scaled copy (out may alias q)
  float mx[kMaxHeads];
  for (int h = 0; h < H; ++h) {
    for (int c = 0; c < D16; ++c)
      _mm512_store_ps(qs + h * d + 16 * c, _mm512_mul_ps(_mm512_loadu_ps(q + h * d + 16 * c), _mm512_set1_ps(scale)));
    mx[h] = -INFINITY;
  }
  auto score = [&](int h, const KV* kp) {
    const float* qh = qs + h * d;
    __m512 acc = _mm512_mul_ps(_mm512_load_ps(qh), load16(kp));
    for (int c = 1; c < D16; ++c) acc = _mm512_fmadd_ps(_mm512_load_ps(qh + 16 * c), load16(kp + 16 * c), acc);
    return acc;
  };
  // Scores into scratch[h][j], pair p = j * H + h.
  const int pairs = n * H;
  int j = 0, h = 0;  // the next pair's row and head
  for (int p0 = 0; p0 < pairs; p0 += 16) {
    const int np = std::min(16, pairs - p0);
    __m512 a[16];
    int pj[16], ph[16];
    for (int t = 0; t < 16; ++t) {
      if (t < np) {
        a[t] = score(h, k + static_cast<size_t>(j) * ld + h * d);
        pj[t] = j, ph[t] = h;
        if (++h == H) h = 0, ++j;
      } else {
        a[t] = _mm512_setzero_ps();
      }
    }
    alignas(64) float sc[16];
    _mm512_store_ps(sc, hsum16(a));
    for (int t = 0; t < np; ++t) {
      scratch[static_cast<size_t>(ph[t]) * n + pj[t]] = sc[t];
      mx[ph[t]] = std::max(mx[ph[t]], sc[t]);
    }
  }
  for (h = 0; h < H; ++h) {
    m[h] = mx[h];
    l[h] = exp_sum_generic(scratch + static_cast<size_t>(h) * n, n, mx[h]);
    for (int c = 0; c < D16; ++c) _mm512_storeu_ps(out + h * d + 16 * c, _mm512_setzero_ps());
  }
  // Value sums, row by row.
  for (j = 0; j < n; ++j) {
    const KV* vr = v + static_cast<size_t>(j) * ld;
    for (h = 0; h < H; ++h) {
      const __m512 pv = _mm512_set1_ps(scratch[static_cast<size_t>(h) * n + j]);
      float* oh = out + h * d;
      for (int c = 0; c < D16; ++c)
        _mm512_storeu_ps(oh + 16 * c, _mm512_fmadd_ps(pv, load16(vr + h * d + 16 * c), _mm512_loadu_ps(oh + 16 * c)));
    }
  }
}

template <typename KV>
static void attend_heads(const float* q, const KV* k, const KV* v, int n, int ld, int n_heads, int d, float scale,
                         float* scratch, float* m, float* l, float* out) {
  if (n_heads <= kMaxHeads) switch (d) {
      case 64: return attend_heads_fixed<KV, 4>(q, k, v, n, ld, n_heads, scale, scratch, m, l, out);
      case 128: return attend_heads_fixed<KV, 8>(q, k, v, n, ld, n_heads, scale, scratch, m, l, out);
      case 32: return attend_heads_fixed<KV, 2>(q, k, v, n, ld, n_heads, scale, scratch, m, l, out);
      case 16: return attend_heads_fixed<KV, 1>(q, k, v, n, ld, n_heads, scale, scratch, m, l, out);
      case 80: return attend_heads_fixed<KV, 5>(q, k, v, n, ld, n_heads, scale, scratch, m, l, out);
      case 96: return attend_heads_fixed<KV, 6>(q, k, v, n, ld, n_heads, scale, scratch, m, l, out);
      default: break;
    }
  attend_heads_generic<KV>(q, k, v, n, ld, n_heads, d, scale, scratch, m, l, out);
}
static void attend_heads_f32(const float* q, const float* k, const float* v, int n, int ld, int n_heads, int d,
                             float scale, float* scratch, float* m, float* l, float* out) {
  attend_heads<float>(q, k, v, n, ld, n_heads, d, scale, scratch, m, l, out);
}
static void attend_heads_bf16(const float* q, const uint16_t* k, const uint16_t* v, int n, int ld, int n_heads, int d,
                              float scale, float* scratch, float* m, float* l, float* out) {
  attend_heads<uint16_t>(q, k, v, n, ld, n_heads, d, scale, scratch, m, l, out);
}

static void attend_row_f32(const float* q, const float* k, const float* v, int n, int ld, int d, float scale,
                           float* scratch, float* out) {
  attend_row<float>(q, k, v, n, ld, d, scale, scratch, out);
}
static void attend_row_bf16(const float* q, const uint16_t* k, const uint16_t* v, int n, int ld, int d, float scale,
                            float* scratch, float* out) {
  attend_row<uint16_t>(q, k, v, n, ld, d, scale, scratch, out);
}
}  // namespace avx512_ns

const KernelTable& kernel_table_avx512() {
  // BF16 and VNNI are separate cpuid bits; without them the portable
  // quantized tiles (compiled for AVX-512F here) run instead.
  static const KernelTable t = {
      Isa::avx512,
      "gemm_f32_f32_6x32__avx512",
      6,
      avx512_ns::gemm_f32_tile,
      cpu_features().avx512_bf16 ? "gemm_bf16_f32_8x32__avx512bf16" : "gemm_bf16_f32_1x16__avx512",
      cpu_features().avx512_bf16 ? 8 : 6,
      cpu_features().avx512_bf16 ? avx512_ns::gemm_bf16_tile : avx512_ns::gemm_bf16_tile_generic,
      cpu_features().avx512_vnni ? "gemm_u8s8_s32_8x32__avx512vnni" : "gemm_u8s8_s32_1x16__avx512",
      cpu_features().avx512_vnni ? 8 : 6,
      cpu_features().avx512_vnni ? avx512_ns::gemm_i8_tile : avx512_ns::gemm_i8_tile_generic,
      cpu_features().avx512_vnni ? "gemm_u8s10_s32_4x32__avx512vnni" : "gemm_u8s10_s32_1x16__avx512",
      4,
      cpu_features().avx512_vnni ? avx512_ns::gemm_i10_tile : avx512_ns::gemm_i10_tile_generic,
      avx512_ns::epilogue_tile_generic,
      avx512_ns::to_bf16_row_avx512,
      avx512_ns::quantize_u8_row_avx512,
      avx512_ns::quantize_u16_row_avx512,
      "rowops_f32__avx512",
      avx512_ns::dot_generic,
      avx512_ns::axpy_generic,
      avx512_ns::layer_norm_generic,
      avx512_ns::gelu_generic,
      avx512_ns::gelu_q8_generic,
      avx512_ns::softmax_generic,
                                avx512_ns::exp_sum_generic,
                                avx512_ns::dot_bf16_generic,
                                avx512_ns::axpy_bf16_generic,
      "attend_row_f32_d64__avx512",
      avx512_ns::attend_row_f32,
      avx512_ns::attend_row_bf16,
      avx512_ns::attend_heads_f32,
      avx512_ns::attend_heads_bf16,
      avx512_ns::dequant_tile_generic,
      cpu_features().avx512_vnni ? avx512_ns::gemm_i8_tile_out : nullptr,
      cpu_features().avx512_bf16 ? avx512_ns::gemm_bf16_tile_out : nullptr,
      avx512_ns::gemm_f32_tile_out};
  return t;
}

}  // namespace ama::cpu
