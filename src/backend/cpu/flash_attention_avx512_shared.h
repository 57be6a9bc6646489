// The pieces the AVX-512 flash-attention files share (flash_attention_avx512.cpp:
// the bf16 and the int8 Q K^T kernels and the packers; flash_attention_int8_avx512.cpp:
// the all-int8 kernel): the 16-lane exp2, the padding mask, the lazy
// rescaling's threshold, the int8 quantizers of Q and K, the int8 Q K^T block
// and the bf16 row conversion of the packers.
//
// Not a header for general use, as flash_attention_generic.h: it defines
// functions with internal linkage, is included inside namespace
// ama::cpu::avx512_flash after flash_attention_generic.h (whose polynomial
// it uses), from files compiled with the AVX-512 F, BW, VL flags, after
// <immintrin.h>, <algorithm>, <cmath>, <cstring>, <type_traits>,
// avx512_util.h and flash_attention.h.
#pragma once

// flash_exp2 (flash_attention_generic.h), 16 lanes, for kernels whose
// inputs are finite or NaN (the int8 scores: a NaN step makes them NaN)
// except the padding's -inf, whose lanes are zeroed after: vscalefps gives
// 0 for a very negative exponent. The same steps as flash_exp2, with fused
// multiply-adds in the polynomial, n = round(x) by vrndscaleps and 2^n
// applied by vscalefps (2 instructions where the exponent-bits route of the
// portable code takes 4; measured 3% faster over the whole kernel).
// Without the max(-100, x) clamp that exp2v once had: 24 instructions (and
// as many constant loads) fewer per block: flash_d64_6x64__avx512vnni_bf16
// 21.4 -> 20.8 ms CPU time for base's 8 heads on one Zen 4 core (medians of
// 6 runs of 101 calls, cpu-clock samples in the kernel; 1-3% over all our
// A/B runs). Not faster here: exp2v's route below (vreduceps, and vscalefps
// straight from x; one instruction fewer per 16 lanes) was 2% slower than
// vrndscaleps + vsubps on that Zen 4, and within the noise on a Zen 5.
static inline __m512 exp2v_finite(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(AMA_FLASH_EXP2_C3), f, _mm512_set1_ps(AMA_FLASH_EXP2_C2));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(AMA_FLASH_EXP2_C1));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(AMA_FLASH_EXP2_C0));
  return _mm512_scalef_ps(p, n);
}

// 2^x for any input (the bf16 kernel's exp): a -inf that is not padding (a
// bf16 score from an infinite input) must give 0, not NaN, and a NaN must
// stay NaN. f = x - floor(x) in [0, 1) by one vreduceps (0 for x = -inf),
// 2^f by flash_exp2's polynomial moved to [0, 1) (2^f = sqrt(2) 2^(f - 1/2),
// expanded: relative error 7.49e-5 where the [-1/2, 1/2] form has 7.48e-5),
// and vscalefps multiplies by 2^floor(x) straight from x (0 for -inf). 5
// instructions per 16 lanes where exp2v_finite behind a max(-100, x) clamp
// took 7: 48 fewer per block of 6 rows. Below x = -126 the result is
// denormal, then 0 (the clamp gave 2^-100): weights under 2^-126 of the
// row's reference, negligible either way; vcvtne2ps2bf16 makes them 0 in P.
static inline __m512 exp2v(__m512 x) {
  const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0x1.3f96a4p-4f), f, _mm512_set1_ps(0x1.cefc4cp-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.64444ap-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.fff632p-1f));
  return _mm512_scalef_ps(p, x);
}

// Lanes of key panel i (keys 16 i ..) that are real keys, for `valid` keys.
static inline __mmask16 panel_mask(int valid, int i) {
  const int n = std::clamp(valid - 16 * i, 0, 16);
  return static_cast<__mmask16>((1u << n) - 1u);
}

// Lazy rescaling: a row's reference m moves only when a score of the block
// exceeds it by more than kLazy (base-2 exponent units), so weights reach at
// most 2^8 = 256 (f32 and bf16 hold that with their usual relative
// precision; the sum of 1500 such weights is far from overflow). The test is
// a compare of the block's lane-wise max against a threshold, where keeping m
// the exact running max needs a horizontal max, the 2^(m_old - m) of the
// rescale and a multiply of the 24 output registers every block. On random
// scores m settles after the first blocks and later blocks skip all three:
// 78% -> 82% of the bf16 peak on one Zen 4 core (kernel alone, CPU time;
// the exact running max is kLazy = 0). The cost: the block holding a row's
// max no longer gives that key the exact weight 1, and on 1500 x 1500 random
// bf16 inputs the rms error against a double reference grows from 6.4e-5 to
// 6.9e-5 (the rounding of Q, K and V to bf16 alone contributes ~1e-3).
constexpr float kLazy = 8.0f;

// Q K^T in int8 (flash_d64_6x64__avx512vnni_bf16 and
// flash_d64_6x64__avx512vnni; the bf16 P V of the first is in
// flash_attention_avx512.cpp). vpdpbusd does 64 multiply-adds per instruction where vdpbf16ps
// does 32, so the Q K^T half of the dot products takes half the
// instructions: per block 384 vpdpbusd + 768 vdpbf16ps instead of 2 x 768,
// for 2 x 24 more softmax instructions (the s32 -> f32 conversion and the
// key scales).
// Quantization, symmetric, one step per row: key j as sk_j ik_j (at pack
// time, flash_pack_kv_int8_avx512), query row r as sq_r iq_r (on entry of
// each call: 6 x 64 values against 6 x n_kv x 64 products), steps
// max|x| / 127, ik, iq in [-127, 127]. vpdpbusd multiplies unsigned by
// signed bytes; Q is the signed operand (broadcast, 4 dims of a row, as the
// bf16 kernel's Q pairs), so K is stored as ik + 128 in [1, 255] and
// the accumulators start at -128 sum_x iq_r[x]: the s32 sum is then
// iq_r . ik_j exactly (|.| <= 64 x 127^2 < 2^24, so its f32 conversion is
// exact too). The score is sq_r sk_j (iq_r . ik_j): sk_j multiplies the
// converted sums per key lane, and sq_r joins the row's c in the softmax.
// Q and K are quantized from their bf16 values (what the bf16 kernel uses),
// so f32 and bf16 inputs give the same bytes; bf16's own rounding (2^-9
// relative) is a quarter of the int8 step at a row's largest element.
// A row with a NaN or infinity gets a NaN step: its scores (every score of a
// key, every score of a query row) are NaN, and so are the outputs they
// reach, as with the bf16 kernel for a NaN (for an infinity the bf16 kernel
// gives NaN or, for a score of -inf, drops the key).

// acc += u8(k) . s8(q), through inline asm: GCC 12 compiles
// _mm512_dpbusd_epi32 in register-blocked loops with two register copies per
// dot product (see kernels_avx512.cpp). Q's 4 bytes are broadcast once per
// row into a register that serves the 4 panels (24 accumulators + 4 K + 1 Q
// of 32 registers): 3.5% faster over the whole kernel than vpdpbusd's own
// {1to16} memory operand in each of the 24 instructions (22.7 -> 21.9 ms,
// base's 8 heads, one Zen 4 core).
static inline __attribute__((always_inline)) __m512i dpbusd(__m512i acc, __m512i k, __m512i q) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(k), "v"(q));
  return acc;
}

// One row of 64 bf16 values to int8: out[x] = round(x / step) + offset,
// returns the step (0 for a zero row, NaN for a non-finite one, whose
// bytes are then `offset`) and sets *sum to the sum of the rounded values.
static inline float quantize_row64(const uint16_t* row, int8_t* out, int offset, int32_t* sum) {
  __m512 x[4];
  __m512 amax = _mm512_setzero_ps();
  __mmask16 finite = 0xffff;
  for (int i = 0; i < 4; ++i) {
    x[i] = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 16 * i))), 16));
    const __m512 a = _mm512_abs_ps(x[i]);
    finite &= _mm512_cmp_ps_mask(a, _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
    amax = _mm512_max_ps(amax, a);
  }
  if (finite != 0xffff) {  // cvtps_epi32 would give INT_MIN for NaN x 0, and the sum overflow
    std::memset(out, offset, kFlashDim);
    *sum = 0;
    return NAN;
  }
  const float m = _mm512_reduce_max_ps(amax);
  const float inv = m > 0 ? 127.0f / m : 0.0f;
  __m512i acc = _mm512_setzero_si512();
  for (int i = 0; i < 4; ++i) {
    // Round to nearest even (MXCSR's default); |x inv| <= 127 (1 + 2^-22).
    const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(x[i], _mm512_set1_ps(inv)));
    acc = _mm512_add_epi32(acc, v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16 * i), _mm512_cvtepi32_epi8(_mm512_add_epi32(v, _mm512_set1_epi32(offset))));
  }
  *sum = _mm512_reduce_add_epi32(acc);
  return m / 127.0f;
}

// Quantizes the tile's R query rows (qi, and per row its step folded into
// c, cr, and the accumulators' start -128 sum iq, corr).
template <int R>
static inline void quantize_q(const uint16_t* q, float c, int8_t (*qi)[kFlashDim], float (&cr)[R], int32_t (&corr)[R]) {
  for (int r = 0; r < R; ++r) {
    int32_t sum = 0;
    const float step = quantize_row64(q + r * kFlashDim, qi[r], 0, &sum);
    // A zero row has every score 0: any positive c gives its uniform weights.
    cr[r] = step == 0.0f ? c : c * step;
    corr[r] = -128 * sum;
  }
}

// S[R][64] of one block (kb: its int8 K and key steps): the raw dot products
// sq_r (iq_r . ik_j) sk_j without the row's step sq_r, which is in cr.
template <int R>
static inline __attribute__((always_inline)) void qk_block_i8(const uint8_t* kb, const int8_t (*qi)[kFlashDim],
                                                              const int32_t (&corr)[R], __m512 (&s)[R][4]) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  const float* sk = reinterpret_cast<const float*>(kb + KB * D);
  __m512i a[R][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) a[r][i] = _mm512_set1_epi32(corr[r]);
  for (int p = 0; p < D / 4; ++p) {
    __m512i k[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) k[i] = _mm512_loadu_si512(kb + p * 256 + i * 64);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      uint32_t quad;
      std::memcpy(&quad, qi[r] + 4 * p, 4);
      const __m512i qv = _mm512_set1_epi32(static_cast<int>(quad));
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) a[r][i] = dpbusd(a[r][i], k[i], qv);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512 skv = _mm512_loadu_ps(sk + 16 * i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) s[r][i] = _mm512_mul_ps(_mm512_cvtepi32_ps(a[r][i]), skv);
  }
}

template <typename KV>
static void bf16_rows(const KV* src, int n_kv, int key0, size_t ld, uint16_t* dst) {
  for (int kj = 0; kj < kFlashKeys; ++kj) {
    uint16_t* d = dst + kj * kFlashDim;
    const int key = key0 + kj;
    if (key >= n_kv) {
      _mm512_storeu_si512(d, _mm512_setzero_si512());
      _mm512_storeu_si512(d + 32, _mm512_setzero_si512());
      continue;
    }
    const KV* row = src + static_cast<size_t>(key) * ld;
    if constexpr (std::is_same_v<KV, float>) {
      for (int x = 0; x < kFlashDim; x += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + x), avx512::to_bf16_rne(_mm512_loadu_ps(row + x)));
    } else {
      _mm512_storeu_si512(d, _mm512_loadu_si512(row));
      _mm512_storeu_si512(d + 32, _mm512_loadu_si512(row + 32));
    }
  }
}

// out[c] lane j = in[j ld + c], for j, c < 16 (u32 elements): the packers'
// key-panel transpose, in registers. Two rounds of unpacks give each 128-bit
// lane 4 rows of one column, two rounds of vshufi32x4 gather a column's
// lanes: 64 shuffles per 16 x 16 where the packers took 16 gathers of 16
// lanes (Zen's vpgatherdd issues a load per lane). Packing base's 8 heads of
// bf16 K/V (1500 keys, in cache, one Zen 5 core): 0.243 ms with gathers,
// 0.115 ms so (medians of 50, alternated 6 times in one process).
static inline __attribute__((always_inline)) void transpose16_u32(const uint32_t* in, size_t ld, __m512i (&out)[16]) {
  __m512i t[16], u[16];
#pragma GCC unroll 8
  for (int j = 0; j < 16; j += 2) {
    const __m512i a = _mm512_loadu_si512(in + j * ld), b = _mm512_loadu_si512(in + (j + 1) * ld);
    t[j] = _mm512_unpacklo_epi32(a, b), t[j + 1] = _mm512_unpackhi_epi32(a, b);
  }
  // u[4 g + k], 128-bit lane L: column 4 L + k of rows 4 g .. 4 g + 3.
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512i* tg = t + 4 * g;
    u[4 * g + 0] = _mm512_unpacklo_epi64(tg[0], tg[2]), u[4 * g + 1] = _mm512_unpackhi_epi64(tg[0], tg[2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(tg[1], tg[3]), u[4 * g + 3] = _mm512_unpackhi_epi64(tg[1], tg[3]);
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88), w0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xdd);
    const __m512i v1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88), w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xdd);
    out[k] = _mm512_shuffle_i32x4(v0, v1, 0x88), out[8 + k] = _mm512_shuffle_i32x4(v0, v1, 0xdd);
    out[4 + k] = _mm512_shuffle_i32x4(w0, w1, 0x88), out[12 + k] = _mm512_shuffle_i32x4(w0, w1, 0xdd);
  }
}

// The int8 K of one block (layout: flash_attention.h) from its 64 bf16 rows:
// each row quantized into a 4 KB buffer, then transposed into key panels
// (transpose16_u32: key j of panel i at dim quad p is u32 element 16 (16 i
// + j) + p).
static void quantize_k_block(const uint16_t* rows, uint8_t* kb) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  alignas(64) int8_t tmp[KB * D];
  float* sk = reinterpret_cast<float*>(kb + KB * D);
  for (int kj = 0; kj < KB; ++kj) {
    int32_t sum;
    sk[kj] = quantize_row64(rows + kj * D, tmp + kj * D, 128, &sum);
  }
  const uint32_t* t32 = reinterpret_cast<const uint32_t*>(tmp);
  for (int i = 0; i < 4; ++i) {
    __m512i col[16];
    transpose16_u32(t32 + 16 * i * (D / 4), D / 4, col);
    for (int p = 0; p < D / 4; ++p) _mm512_storeu_si512(kb + (p * 4 + i) * 64, col[p]);
  }
}
