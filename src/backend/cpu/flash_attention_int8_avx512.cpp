// flash_d64_6x64__avx512vnni: flash attention with both products in int8
// (vpdpbusd), d_head 64, 6 query rows per call (layouts: flash_attention.h).
// Compiled with the AVX-512 flags; the kernel runs only where cpuid reports
// AVX512_VNNI (flash_kernels() lists it only there).
//
// Per block of 64 keys:
//   1. S = Q K^T as flash_d64_6x64__avx512vnni_bf16 (qk_block_i8: 384
//      vpdpbusd; quantization in flash_attention_avx512_shared.h).
//   2. The softmax: per row the block's exact max mb (one horizontal max per
//      row and block), P as u8 with one step per (row, block):
//      q_j = round(255 x 2^(c s_j - mb)) in [0, 255], computed as
//      2^(c s_j - (mb - log2 255)) by the kernels' polynomial, converted by
//      vcvtps2dq and packed to bytes by vpackusdw + vpackuswb (which also
//      send NaN's INT_MIN to 0). The packs work within 128-bit lanes, so P's
//      dword t holds keys 16 (t % 4) + 4 (t / 4) + 0..3; V is packed in that
//      key order (flash_attention.h), so nothing is permuted here. The
//      row's reference m moves lazily as in the other kernels (kLazy), and
//      the block's weights are w_b q_j with w_b = 2^(mb - m) / 255 (both
//      exponentials of the 6 rows, and the rescales 2^(m_old - m), in one
//      16-lane exp2).
//   3. O += P V: 24 s32 accumulators (6 rows x 4 panels of 16 dims) from
//      zero; 16 key quads x (4 loads of V, 6 broadcasts of a P quad, 24
//      vpdpbusd) = 384 vpdpbusd where the bf16 P V takes 768 vdpbf16ps;
//      then O = O alpha + f32(acc) w_b (O, 1.5 KB, in L1). Per lane and
//      block the s32 sum is at most 16 quads x 4 keys x 255 x 127 =
//      2,072,640: no overflow (2^31), and its f32 conversion is exact
//      (< 2^24).
//   4. At the end out = O x sv_x / l: V's per-dim steps sv_x are constant
//      over the keys, so they leave the loop.
// The sum l adds w_b times the bytes as used (one vpdpbusd of P with a
// vector of ones per row), so the output is an exact weighted average of
// the int8 V under the weights used, as in the bf16 kernels.
//
// Errors (what the test bounds, test_attention_kernels.cpp): a key's weight
// is off by at most half a P step, 1/510 of its block's largest weight; in
// a block that holds a sharp peak every key below 1/510 of the peak is
// dropped to 0 (where the other kernels keep it to bf16's 2^-9 relative).
// V is off by at most sv_x / 2 per element, max|V[.][x]| / 254; for
// Gaussian V over 1500 keys (max ~3.4 sigma) an rms error of sv_x / sqrt(12)
// = 0.77% of V's rms, against bf16's 2^-9 relative (~0.1%). Where one key
// holds most of a row's weight these two are the output's error: on a peak
// over a broad tail the rms error is 2.9x the int8 Q K^T kernel's, which is
// why the model does not take this kernel (flash_kernel, flash_attention.cpp).
//
// NaN and infinity, as the contract of flash_attention.h: a query row with
// a NaN or infinity has a NaN step (quantize_q), so its w_b and output are
// NaN; a key with one makes every dim step NaN at packing, so every row is
// NaN; a NaN in V makes its dim step NaN, so its column is NaN in every
// row. Deviation: an infinity in V gives NaN in its column, not +-inf.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/cpu/avx512_util.h"
#include "backend/cpu/flash_attention.h"
#include "core/half.h"

namespace ama::cpu {

namespace avx512_flash_i8 {
#include "backend/cpu/flash_attention_generic.h"
#include "backend/cpu/flash_attention_avx512_shared.h"

constexpr int kVBlockBytes = kFlashKeys * kFlashDim;  // int8 V, one block
constexpr float kLog2Of255 = 7.99435343685885793f;

struct RowState {
  float m;   // reference max (c s units)
  __m512 l;  // lane-wise running sums of the weights as used, w_b q_j
};

static inline __m512 widen_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// The softmax of one block for R rows: s (raw dot products) in, P as u8 out
// to pb, w[r] = the block's weight unit w_b of row r and w[8 + r] its
// output's rescale alpha (exactly 1 where the reference did not move);
// returns whether any row's reference moved.
template <int R, bool kMasked>
static inline __attribute__((always_inline)) bool softmax_block_u8(__m512 (&s)[R][4], int valid, const float (&c)[R],
                                                                   RowState (&st)[R], uint8_t (*pb)[kFlashKeys],
                                                                   float (&w)[16]) {
  alignas(64) float x[16] = {};
  float mb[R];
  bool mv[R];
  bool moved = false;
  __mmask16 mask[4] = {0xffff, 0xffff, 0xffff, 0xffff};
  if constexpr (kMasked)
    for (int i = 0; i < 4; ++i) mask[i] = panel_mask(valid, i);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if constexpr (kMasked)  // the last block's padding: out of the max
      for (int i = 0; i < 4; ++i) s[r][i] = _mm512_mask_blend_ps(mask[i], _mm512_set1_ps(-INFINITY), s[r][i]);
    const __m512 xm = _mm512_max_ps(_mm512_max_ps(s[r][0], s[r][1]), _mm512_max_ps(s[r][2], s[r][3]));
    // c > 0, so max(c s) = c max(s); a NaN c (a non-finite query row) makes
    // mb NaN, the compare below false and the row's w NaN.
    mb[r] = c[r] * _mm512_reduce_max_ps(xm);
    mv[r] = mb[r] > st[r].m + kLazy;
    if (mv[r]) {
      x[8 + r] = st[r].m - mb[r];
      st[r].m = mb[r];
      moved = true;
    }
    x[r] = mb[r] - st[r].m - kLog2Of255;
  }
  _mm512_store_ps(w, exp2v(_mm512_load_ps(x)));
  for (int r = 0; r < R; ++r)
    if (!mv[r]) w[8 + r] = 1.0f;
  const __m512i ones = _mm512_set1_epi8(1);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 cv = _mm512_set1_ps(c[r]), off = _mm512_set1_ps(mb[r] - kLog2Of255);
    __m512i a[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      __m512 e = exp2v_finite(_mm512_fmsub_ps(s[r][i], cv, off));
      if constexpr (kMasked) e = _mm512_maskz_mov_ps(mask[i], e);
      a[i] = _mm512_cvtps_epi32(e);  // round to nearest even; <= 255 (1 + 3e-6) rounds to <= 255
    }
    const __m512i bytes = _mm512_packus_epi16(_mm512_packus_epi32(a[0], a[1]), _mm512_packus_epi32(a[2], a[3]));
    _mm512_store_si512(pb[r], bytes);
    const __m512i isum = dpbusd(_mm512_setzero_si512(), bytes, ones);
    const __m512 l = mv[r] ? _mm512_mul_ps(st[r].l, _mm512_set1_ps(w[8 + r])) : st[r].l;
    st[r].l = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(w[r]), l);
  }
  return moved;
}

// O[R][64] = O alpha + (P V) w_b for one block (vb: its int8 V, pb: P).
template <int R>
static inline __attribute__((always_inline)) void pv_block_u8(const uint8_t* vb, const uint8_t (*pb)[kFlashKeys],
                                                              bool moved, const float (&w)[16], float (*o)[kFlashDim]) {
  __m512i acc[R][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc[r][i] = _mm512_setzero_si512();
  for (int kq = 0; kq < kFlashKeys / 4; ++kq) {
    __m512i v[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) v[i] = _mm512_loadu_si512(vb + kq * 256 + i * 64);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      uint32_t quad;
      std::memcpy(&quad, pb[r] + 4 * kq, 4);
      const __m512i pv = _mm512_set1_epi32(static_cast<int>(quad));
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[r][i] = dpbusd(acc[r][i], pv, v[i]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 wv = _mm512_set1_ps(w[r]);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      __m512 ov = _mm512_load_ps(o[r] + 16 * i);
      if (moved) ov = _mm512_mul_ps(ov, _mm512_set1_ps(w[8 + r]));
      _mm512_store_ps(o[r] + 16 * i, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][i]), wv, ov));
    }
  }
}

template <int R>
static void flash_rows_i8kv(const uint16_t* q, const uint8_t* kp, const uint8_t* vp, int n_kv, float c, float* out,
                            size_t ld_out) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  alignas(64) float o[R][D] = {};
  alignas(64) uint8_t pb[R][KB];
  alignas(64) int8_t qi[R][D];
  alignas(64) float w[16];
  RowState st[R];
  float cr[R];
  int32_t corr[R];
  quantize_q<R>(q, c, qi, cr, corr);
  for (int r = 0; r < R; ++r) st[r] = {-INFINITY, _mm512_setzero_ps()};
  const int blocks = flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    __m512 s[R][4];
    qk_block_i8<R>(kp + static_cast<size_t>(b) * kFlashI8BlockBytes, qi, corr, s);
    const int valid = std::min(KB, n_kv - b * KB);
    const bool moved =
        valid < KB ? softmax_block_u8<R, true>(s, valid, cr, st, pb, w) : softmax_block_u8<R, false>(s, valid, cr, st, pb, w);
    pv_block_u8<R>(vp + static_cast<size_t>(b) * kVBlockBytes, pb, moved, w, o);
  }
  // out = O sv / l: the dim steps, constant over the keys, applied once.
  const float* sv = reinterpret_cast<const float*>(vp + static_cast<size_t>(blocks) * kVBlockBytes);
  for (int r = 0; r < R; ++r) {
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(st[r].l));
    for (int i = 0; i < 4; ++i)
      _mm512_storeu_ps(out + r * ld_out + 16 * i,
                       _mm512_mul_ps(_mm512_load_ps(o[r] + 16 * i), _mm512_mul_ps(_mm512_loadu_ps(sv + 16 * i), inv)));
  }
}

// Packing: K as flash_pack_kv_int8_avx512 does; V in two passes over the
// head, the per-dim max |bf16(V)| over its n_kv keys, then per block the
// rows quantized to s32 (16 KB buffer) and each output dword (4 keys of one
// dim) assembled from 4 of them by mask, shift and or: 12 instructions per
// 64 bytes, ~0.1 ms for base's 8 heads (the K packing: 0.9 ms).
template <typename KV>
static void pack_kv_i8(const KV* k, const KV* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  const int blocks = flash_blocks(n_kv);
  alignas(64) uint16_t tmp[KB * D];
  alignas(64) int32_t iv[KB * D];
  uint8_t* k8 = reinterpret_cast<uint8_t*>(kp);
  uint8_t* v8 = reinterpret_cast<uint8_t*>(vp);
  float* sv = reinterpret_cast<float*>(v8 + static_cast<size_t>(blocks) * kVBlockBytes);
  __m512 amax[4];
  __mmask16 finite[4];
  for (int i = 0; i < 4; ++i) amax[i] = _mm512_setzero_ps(), finite[i] = 0xffff;
  for (int b = 0; b < blocks; ++b) {
    bf16_rows(v, n_kv, b * KB, ld, tmp);  // padding rows are zeros
    for (int kj = 0; kj < KB; ++kj)
      for (int i = 0; i < 4; ++i) {
        const __m512 a = _mm512_abs_ps(widen_bf16(tmp + kj * D + 16 * i));
        finite[i] &= _mm512_cmp_ps_mask(a, _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
        amax[i] = _mm512_max_ps(amax[i], a);
      }
  }
  __m512 inv[4];
  for (int i = 0; i < 4; ++i) {
    // A non-finite dim: step NaN, bytes 0. A zero dim: step 0, bytes 0.
    const __mmask16 nz = finite[i] & _mm512_cmp_ps_mask(amax[i], _mm512_setzero_ps(), _CMP_GT_OQ);
    inv[i] = _mm512_maskz_div_ps(nz, _mm512_set1_ps(127.0f), amax[i]);
    _mm512_storeu_ps(sv + 16 * i, _mm512_mask_blend_ps(finite[i], _mm512_set1_ps(NAN),
                                                       _mm512_div_ps(amax[i], _mm512_set1_ps(127.0f))));
  }
  bool k_nonfinite = false;
  for (int b = 0; b < blocks; ++b) {
    uint8_t* kb = k8 + static_cast<size_t>(b) * kFlashI8BlockBytes;
    bf16_rows(k, n_kv, b * KB, ld, tmp);
    quantize_k_block(tmp, kb);
    const float* sk = reinterpret_cast<const float*>(kb + KB * D);
    for (int j = 0; j < KB; ++j) k_nonfinite |= std::isnan(sk[j]);
    bf16_rows(v, n_kv, b * KB, ld, tmp);
    for (int kj = 0; kj < KB; ++kj)
      for (int i = 0; i < 4; ++i)
        // Round to nearest even; |x inv| <= 127 (1 + 2^-22).
        _mm512_store_si512(iv + kj * D + 16 * i,
                           _mm512_maskz_cvtps_epi32(finite[i], _mm512_mul_ps(widen_bf16(tmp + kj * D + 16 * i), inv[i])));
    uint8_t* vb = v8 + static_cast<size_t>(b) * kVBlockBytes;
    const __m512i lo = _mm512_set1_epi32(0xff);
    for (int kq = 0; kq < KB / 4; ++kq) {
      const int key0 = 16 * (kq % 4) + 4 * (kq / 4);  // the order of the kernel's packed P
      for (int i = 0; i < 4; ++i) {
        const int32_t* col = iv + key0 * D + 16 * i;
        __m512i d = _mm512_and_si512(_mm512_load_si512(col), lo);
        d = _mm512_or_si512(d, _mm512_slli_epi32(_mm512_and_si512(_mm512_load_si512(col + D), lo), 8));
        d = _mm512_or_si512(d, _mm512_slli_epi32(_mm512_and_si512(_mm512_load_si512(col + 2 * D), lo), 16));
        d = _mm512_or_si512(d, _mm512_slli_epi32(_mm512_load_si512(col + 3 * D), 24));
        _mm512_storeu_si512(vb + (kq * 4 + i) * 64, d);
      }
    }
  }
  if (k_nonfinite)
    for (int i = 0; i < 4; ++i) _mm512_storeu_ps(sv + 16 * i, _mm512_set1_ps(NAN));
}
}  // namespace avx512_flash_i8

void flash_d64_avx512vnni(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                          float* out, size_t ld_out) {
  const uint8_t* k8 = reinterpret_cast<const uint8_t*>(kp);
  const uint8_t* v8 = reinterpret_cast<const uint8_t*>(vp);
  avx512::dispatch_rows<6>(rows, [&](auto r) {
    avx512_flash_i8::flash_rows_i8kv<decltype(r)::value>(q, k8, v8, n_kv, c, out, ld_out);
  });
}

void flash_pack_kv_int8kv_avx512(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp) {
  avx512_flash_i8::pack_kv_i8(k, v, n_kv, ld, kp, vp);
}
void flash_pack_kv_int8kv_avx512(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp,
                                 uint16_t* vp) {
  avx512_flash_i8::pack_kv_i8(k, v, n_kv, ld, kp, vp);
}

}  // namespace ama::cpu
