// Flash attention on AVX2 + FMA (d_head 64; layouts in flash_attention.h).
// AVX2 has no bf16 dot product, so the packed bf16 pairs are widened in
// registers: a 32-bit word holds a pair, and its two floats are the word
// shifted left by 16 and the word with its low half cleared (2 integer
// instructions per 8 pairs, no shuffles). The portable kernel
// (flash_attention_generic.h) compiled for AVX2 took 254 ms for base's 8
// heads on one Zen 4 core, where GCC deinterleaved the pairs with 128-bit
// shuffles; the GEMM-tile flash it replaces took 133 ms.
//
// flash_d64_4x64__avx2: 4 query rows; per 16-key panel (or 16-dim panel of
// the output), 4 rows x 2 ymm accumulators, summed over the block's 32 pairs
// (16 FMAs, 2 loads and 4 integer instructions per pair) and written once.
// The softmax is 8 lanes wide with the same polynomial as the others.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/flash_attention.h"
#include "core/half.h"

namespace ama::cpu {

namespace avx2_flash {
#include "backend/cpu/flash_attention_generic.h"

// flash_exp2, 8 lanes (the magic-number rounding and the exponent bits of
// the portable code, with fused multiply-adds). max(-100, x) keeps a NaN.
static inline __m256 exp2v(__m256 x) {
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  x = _mm256_max_ps(_mm256_set1_ps(-100.0f), x);
  const __m256 t = _mm256_add_ps(x, magic);
  const __m256 f = _mm256_sub_ps(x, _mm256_sub_ps(t, magic));
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(AMA_FLASH_EXP2_C3), f, _mm256_set1_ps(AMA_FLASH_EXP2_C2));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(AMA_FLASH_EXP2_C1));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(AMA_FLASH_EXP2_C0));
  return _mm256_castsi256_ps(
      _mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23)));
}

// The floats of 8 packed pairs: element 2 j (low halves) and 2 j + 1.
static inline __m256 pair_lo(__m256i w) { return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)); }
static inline __m256 pair_hi(__m256i w) {
  return _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

// bf16 rounding (nearest even) kept in f32, a NaN kept a NaN.
static inline __m256 round_bf16(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb),
                                     _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
  return _mm256_blendv_ps(_mm256_castsi256_ps(r), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// acc[r] (2 ymm = 16 columns) += sum over 32 pairs of x[r][pair] . w[pair],
// w: 32 pairs x 16 columns at a stride of 128 uint16 (the packed layouts).
template <int R>
static inline void tile16(const float (*x)[kFlashKeys], const uint16_t* w, __m256 (&acc)[R][2]) {
  for (int p = 0; p < 32; ++p) {
    const __m256i wa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 128));
    const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 128 + 16));
    const __m256 la = pair_lo(wa), ha = pair_hi(wa), lb = pair_lo(wb), hb = pair_hi(wb);
    for (int r = 0; r < R; ++r) {
      const __m256 x0 = _mm256_broadcast_ss(&x[r][2 * p]), x1 = _mm256_broadcast_ss(&x[r][2 * p + 1]);
      acc[r][0] = _mm256_fmadd_ps(x1, ha, _mm256_fmadd_ps(x0, la, acc[r][0]));
      acc[r][1] = _mm256_fmadd_ps(x1, hb, _mm256_fmadd_ps(x0, lb, acc[r][1]));
    }
  }
}

template <int R>
static void flash_rows(const uint16_t* q, const uint16_t* kp, const uint16_t* vp, int n_kv, float c, float* out,
                       size_t ld_out) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  static_assert(D == KB, "tile16 serves Q (64 dims) and P (64 keys) alike");
  alignas(32) float qf[R][D], s[R][KB], pf[R][KB], o[R][D] = {};
  float m[R], l[R];
  for (int r = 0; r < R; ++r) {
    for (int x = 0; x < D; ++x) qf[r][x] = bf16_to_f32(q[r * D + x]);
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }
  const int blocks = flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    const int valid = std::min(KB, n_kv - b * KB);
    const uint16_t* kb = kp + static_cast<size_t>(b) * KB * D;
    const uint16_t* vb = vp + static_cast<size_t>(b) * KB * D;
    for (int i = 0; i < 4; ++i) {  // key panel: pairs of head dims x 16 keys
      __m256 acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
      tile16<R>(qf, kb + i * 32, acc);
      for (int r = 0; r < R; ++r) {
        _mm256_store_ps(s[r] + 16 * i, acc[r][0]);
        _mm256_store_ps(s[r] + 16 * i + 8, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int j = valid; j < KB; ++j) s[r][j] = -INFINITY;  // padding: out of the max, weight 0
      __m256 mx = _mm256_load_ps(s[r]);
      for (int j = 8; j < KB; j += 8) mx = _mm256_max_ps(mx, _mm256_load_ps(s[r] + j));
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, mx);
      float bm = lanes[0];
      for (int j = 1; j < 8; ++j) bm = std::max(bm, lanes[j]);
      const float mn = std::max(m[r], c * bm);  // c > 0: max(c s) = c max(s)
      const float alpha = flash_exp2(m[r] - mn);
      m[r] = mn;
      // The sum takes the weights as rounded for P V (as the other kernels).
      __m256 sum = _mm256_setzero_ps();
      for (int j = 0; j < KB; j += 8) {
        const __m256 e = round_bf16(exp2v(_mm256_fmsub_ps(_mm256_load_ps(s[r] + j), _mm256_set1_ps(c), _mm256_set1_ps(mn))));
        // -inf (padding) gives 2^-100 from exp2v: masked to exactly 0.
        const __m256 pe = _mm256_and_ps(e, _mm256_cmp_ps(_mm256_load_ps(s[r] + j), _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ));
        _mm256_store_ps(pf[r] + j, pe);
        sum = _mm256_add_ps(sum, pe);
      }
      _mm256_store_ps(lanes, sum);
      float bl = 0.0f;
      for (int j = 0; j < 8; ++j) bl += lanes[j];
      l[r] = l[r] * alpha + bl;
      for (int x = 0; x < D; x += 8)
        _mm256_store_ps(o[r] + x, _mm256_mul_ps(_mm256_load_ps(o[r] + x), _mm256_set1_ps(alpha)));
    }
    for (int cp = 0; cp < 4; ++cp) {  // panel of head dims: key pairs x 16 dims
      __m256 acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = _mm256_load_ps(o[r] + 16 * cp), acc[r][1] = _mm256_load_ps(o[r] + 16 * cp + 8);
      tile16<R>(pf, vb + cp * 32, acc);
      for (int r = 0; r < R; ++r) {
        _mm256_store_ps(o[r] + 16 * cp, acc[r][0]);
        _mm256_store_ps(o[r] + 16 * cp + 8, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const float inv = 1.0f / l[r];
    for (int x = 0; x < D; ++x) out[r * ld_out + x] = o[r][x] * inv;
  }
}
}  // namespace avx2_flash

void flash_d64_avx2(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                            float* out, size_t ld_out) {
  switch (rows) {
    case 1: return avx2_flash::flash_rows<1>(q, kp, vp, n_kv, c, out, ld_out);
    case 2: return avx2_flash::flash_rows<2>(q, kp, vp, n_kv, c, out, ld_out);
    case 3: return avx2_flash::flash_rows<3>(q, kp, vp, n_kv, c, out, ld_out);
    default: return avx2_flash::flash_rows<4>(q, kp, vp, n_kv, c, out, ld_out);
  }
}

}  // namespace ama::cpu
