// Flash attention on AVX-512 BF16 (d_head 64; layouts in flash_attention.h).
// Compiled with the AVX-512 flags; the vdpbf16ps kernel carries its own
// target attribute and runs only where cpuid reports AVX512_BF16.
//
// flash_d64_6x64__avx512bf16: per call, 6 query rows against the whole key
// range of one head, in blocks of 64 keys:
//   1. S[6][64] = Q K^T: 24 zmm accumulators (6 rows x 4 panels of 16 keys);
//      per pair of head dims, 4 loads of K (256 contiguous bytes) and 6
//      broadcasts of a Q pair straight from memory (vdpbf16ps's {1to16}
//      operand: a load-port slot, no shuffle), 24 vdpbf16ps.
//   2. The online softmax, in the registers that hold S: the row max (one
//      horizontal max per row and block), the new running max m, 2^(c s - m)
//      with the polynomial below, lane-wise running sums (one horizontal sum
//      per row at the very end), and P rounded to bf16 (vcvtne2ps2bf16, 32
//      values per instruction) into a 768-byte buffer.
//   3. O[6][64] += P V: O (1.5 KB, in L1) loaded into 24 accumulators,
//      rescaled by 2^(m_old - m_new), 32 key pairs x (4 loads of V, 6
//      broadcasts of a P pair, 24 vdpbf16ps), stored back.
// The Q tile stays in L1 (768 bytes) and is read by the broadcasts, which
// leaves all 32 registers to the 24 accumulators and the operands; holding it
// in registers would need a shuffle per broadcast, on the same pipes as the
// dot products.
// Per block: 768 + 768 vdpbf16ps, against about 24 x 10 softmax instructions
// of which ~6 per zmm use the multiply-add pipes (the polynomial, the scale)
// and 24 x 2 loads/stores of O. Block size: 64 keys x 64 dims x 2 (K and V)
// x 2 bytes = 16 KB per block, half of Zen 4's 32 KB L1d next to Q, O and P
// (3 KB); one head's K and V (1500 keys: 384 KB) stay in the 1 MB L2 while
// a thread runs that head's 250 query tiles. 6 rows: 6 x 4 + 4 = 28 of the
// 32 zmm; 7 rows would need 32 and spill, 1500 = 250 x 6 has no tail.
// GCC 12 warns inside its own AVX-512 headers (the masked builtins' undefined
// pass-through operand): a known false positive.
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

namespace avx512_flash {
#include "backend/cpu/flash_attention_generic.h"
#include "backend/cpu/flash_attention_avx512_shared.h"

static inline __m512bh bcast_pair(const uint16_t* p) {
  uint32_t pair;
  std::memcpy(&pair, p, 4);
  return (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
}

#pragma GCC push_options
#pragma GCC target("avx512bf16")

struct RowState {
  float m, thr;  // reference max (c s units) and the raw-score threshold (m + kLazy) / c
  float alpha;   // this block's rescale of the row's output and sum
  __m512 l;      // lane-wise running sums of the (bf16-rounded) weights
};

// The online softmax of one block for R rows: s (raw dot products) in, P
// (bf16) out to pb; returns whether any row's reference moved.
// c[r] > 0 (or NaN, which makes the row NaN) scales row r's scores: the
// bf16 kernel passes the same c for every row, the int8 one folds each Q
// row's quantization step into its row's c. kFinite: the scores are finite
// or NaN (the int8 kernel's), so the exponential needs no clamp (exp2v_finite).
template <int R, bool kMasked, bool kFinite>
static inline __attribute__((always_inline)) bool softmax_block(__m512 (&s)[R][4], int valid, const float (&c)[R],
                                                                RowState (&st)[R], uint16_t (*pb)[kFlashKeys]) {
  bool moved = false;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 cv = _mm512_set1_ps(c[r]);
    __mmask16 mask[4] = {0xffff, 0xffff, 0xffff, 0xffff};
    if constexpr (kMasked) {  // the last block's padding: out of the max, weight 0
      for (int i = 0; i < 4; ++i) {
        mask[i] = panel_mask(valid, i);
        s[r][i] = _mm512_mask_blend_ps(mask[i], _mm512_set1_ps(-INFINITY), s[r][i]);
      }
    }
    const __m512 xm = _mm512_max_ps(_mm512_max_ps(s[r][0], s[r][1]), _mm512_max_ps(s[r][2], s[r][3]));
    st[r].alpha = 1.0f;
    const bool moved_r = _mm512_cmp_ps_mask(xm, _mm512_set1_ps(st[r].thr), _CMP_GT_OQ) != 0;
    if (moved_r) {
      // c > 0, so max(c s) = c max(s).
      const float mn = std::max(st[r].m, c[r] * _mm512_reduce_max_ps(xm));
      st[r].alpha = flash_exp2(st[r].m - mn);
      st[r].m = mn;
      st[r].thr = (mn + kLazy) * (1.0f / c[r]);
      moved = true;
    }
    const __m512 mv = _mm512_set1_ps(st[r].m);
    __m512 e[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m512 x = _mm512_fmsub_ps(s[r][i], cv, mv);
      e[i] = kFinite ? exp2v_finite(x) : exp2v(x);
      if constexpr (kMasked) e[i] = _mm512_maskz_mov_ps(mask[i], e[i]);
    }
    // The sum takes the weights as rounded to bf16 for P V (a dot product
    // with ones: 2 vdpbf16ps per row where adding the f32 weights took 4
    // instructions), so the output is an exact weighted average of V under
    // the weights P V used: a key that holds all the weight gives its value
    // exactly, whatever the rounding of its weight 2^(c s - m) <= 2^8.
    const __m512bh p01 = _mm512_cvtne2ps_pbh(e[1], e[0]), p23 = _mm512_cvtne2ps_pbh(e[3], e[2]);
    const __m512bh ones = (__m512bh)_mm512_set1_epi16(0x3f80);
    __m512 l = moved_r ? _mm512_mul_ps(st[r].l, _mm512_set1_ps(st[r].alpha)) : st[r].l;
    st[r].l = _mm512_dpbf16_ps(_mm512_dpbf16_ps(l, p01, ones), p23, ones);
    _mm512_store_si512(pb[r], (__m512i)p01);
    _mm512_store_si512(pb[r] + 32, (__m512i)p23);
  }
  return moved;
}

// O[R][64] += P V for one block of 64 keys (vb: its packed V, pb: P in
// bf16), O first rescaled by each row's alpha when a reference moved.
// first: start from zero, O's memory unread, in place of zeroing O before
// the loop (1.5 KB per call, by GCC's rep stos). Base's 8 heads, one Zen 5
// core, the two versions alternated in one process (15 pairs, median of
// the pairs' ratios): the bf16 kernel 1.5-2.3% faster so, the int8 Q K^T
// kernel 2-4% slower (its code laid out otherwise by GCC), so it zeroes O.
template <int R>
static inline __attribute__((always_inline)) void pv_block(const uint16_t* vb, const uint16_t (*pb)[kFlashKeys],
                                                           bool first, bool moved, const RowState (&st)[R],
                                                           float (*o)[kFlashDim]) {
  constexpr int KB = kFlashKeys;
  __m512 acc[R][4];
  if (first) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[r][i] = _mm512_setzero_ps();
  } else if (moved) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[r][i] = _mm512_mul_ps(_mm512_load_ps(o[r] + 16 * i), _mm512_set1_ps(st[r].alpha));
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[r][i] = _mm512_load_ps(o[r] + 16 * i);
  }
  for (int kq = 0; kq < KB / 2; ++kq) {
    __m512bh v[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) v[i] = (__m512bh)_mm512_loadu_si512(vb + kq * 128 + i * 32);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512bh pv = bcast_pair(pb[r] + 2 * kq);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], pv, v[i]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) _mm512_store_ps(o[r] + 16 * i, acc[r][i]);
}

// out rows = O / (the row's sum of weights).
template <int R>
static inline void finish_rows(const float (*o)[kFlashDim], const RowState (&st)[R], float* out, size_t ld_out) {
  for (int r = 0; r < R; ++r) {
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(st[r].l));
    for (int i = 0; i < 4; ++i) _mm512_storeu_ps(out + r * ld_out + 16 * i, _mm512_mul_ps(_mm512_load_ps(o[r] + 16 * i), inv));
  }
}

template <int R>
static void flash_rows(const uint16_t* q, const uint16_t* kp, const uint16_t* vp, int n_kv, float c, float* out,
                       size_t ld_out) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  alignas(64) float o[R][D];  // written by the first block (pv_block)
  alignas(64) uint16_t pb[R][KB];
  RowState st[R];
  float cr[R];
  for (int r = 0; r < R; ++r) st[r] = {-INFINITY, -INFINITY, 1.0f, _mm512_setzero_ps()}, cr[r] = c;
  const int blocks = flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    const uint16_t* kb = kp + static_cast<size_t>(b) * KB * D;
    const uint16_t* vb = vp + static_cast<size_t>(b) * KB * D;
    __m512 s[R][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) s[r][i] = _mm512_setzero_ps();
    for (int p = 0; p < D / 2; ++p) {
      __m512bh k[4];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) k[i] = (__m512bh)_mm512_loadu_si512(kb + p * 128 + i * 32);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512bh qv = bcast_pair(q + r * D + 2 * p);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) s[r][i] = _mm512_dpbf16_ps(s[r][i], qv, k[i]);
      }
    }
    const int valid = std::min(KB, n_kv - b * KB);
    const bool moved = valid < KB ? softmax_block<R, true, false>(s, valid, cr, st, pb)
                                  : softmax_block<R, false, false>(s, valid, cr, st, pb);
    pv_block<R>(vb, pb, b == 0, moved, st, o);
  }
  finish_rows<R>(o, st, out, ld_out);
}

#pragma GCC pop_options

// flash_d64_6x64__avx512vnni_bf16: Q K^T in int8 (qk_block_i8, with the
// quantization described in flash_attention_avx512_shared.h), the softmax
// and P V in bf16 as above.
// Where its time goes (base's 8 heads, 1500 x 1500, one Zen 4 core, CPU ms
// per call from cpu-clock samples): 20.8 in all; the P V loop alone (O
// load, 32 pairs, O store) 11.4-11.8 against 10.15 at the harness's bf16
// peak; the Q K^T loop alone with its s32 -> f32 epilogue 6.35 against 5.1
// at the int8 peak; the softmax adds the remaining ~2.8, of which the
// exponential 1.3. Tried without gain (within +-1%, or slower): keeping
// the softmax's scores in an L1 buffer so that GCC stops spilling (554 ->
// 381 stack references in flash_rows_i8<6>, same time); the 4 exponentials
// of 2 or 3 rows interleaved step by step; Q's quads broadcast once per
// call into a 6 KB buffer read by plain loads; prefetching the block's V
// during Q K^T (2% slower); one P V pass over two blocks (O loaded and
// stored once per 128 keys; 3% slower); vector stores instead of GCC's
// rep stos for O's zeroing; vdpbf16ps with a {1to16} P operand in place
// of the broadcast (1.7x slower).
#pragma GCC push_options
#pragma GCC target("avx512bf16,avx512vnni")

template <int R>
static void flash_rows_i8(const uint16_t* q, const uint8_t* kp, const uint16_t* vp, int n_kv, float c, float* out,
                          size_t ld_out) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  alignas(64) float o[R][D] = {};  // see pv_block
  alignas(64) uint16_t pb[R][KB];
  alignas(64) int8_t qi[R][D];
  RowState st[R];
  float cr[R];
  int32_t corr[R];
  quantize_q<R>(q, c, qi, cr, corr);
  for (int r = 0; r < R; ++r) st[r] = {-INFINITY, -INFINITY, 1.0f, _mm512_setzero_ps()};
  const int blocks = flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    const uint8_t* kb = kp + static_cast<size_t>(b) * kFlashI8BlockBytes;
    const uint16_t* vb = vp + static_cast<size_t>(b) * KB * D;
    __m512 s[R][4];
    qk_block_i8<R>(kb, qi, corr, s);
    const int valid = std::min(KB, n_kv - b * KB);
    const bool moved = valid < KB ? softmax_block<R, true, true>(s, valid, cr, st, pb)
                                  : softmax_block<R, false, true>(s, valid, cr, st, pb);
    pv_block<R>(vb, pb, false, moved, st, o);
  }
  finish_rows<R>(o, st, out, ld_out);
}

#pragma GCC pop_options

using avx512::to_bf16_rne;
}  // namespace avx512_flash

void flash_d64_avx512bf16(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                          float* out, size_t ld_out) {
  avx512::dispatch_rows<6>(rows, [&](auto r) {
    avx512_flash::flash_rows<decltype(r)::value>(q, kp, vp, n_kv, c, out, ld_out);
  });
}

void flash_d64_avx512vnni_bf16(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv,
                               float c, float* out, size_t ld_out) {
  const uint8_t* k8 = reinterpret_cast<const uint8_t*>(kp);
  avx512::dispatch_rows<6>(rows, [&](auto r) {
    avx512_flash::flash_rows_i8<decltype(r)::value>(q, k8, vp, n_kv, c, out, ld_out);
  });
}

// Packing (layouts: flash_attention.h), the scalar packer's result with
// vector moves: per block of 64 keys, the rows are converted to bf16 into an
// 8 KB buffer, K is transposed into pair-major panels in registers
// (transpose16_u32), and each pair of V rows is interleaved by vpermt2w. The
// scalar packer took 3.0 ms for base's 8 heads at one thread, 11% of the
// attention; this one with gathers for K 0.9 ms (CPU time, one Zen 4 core,
// n_kv 1500, f32 rows).
namespace avx512_flash {
template <typename KV, bool kInt8K>
static void pack_kv(const KV* k, const KV* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  alignas(64) uint16_t tmp[KB * D];
  // vpermt2w: element 2 j from the first row, 2 j + 1 from the second, for
  // dims 0-15 (lo) and 16-31 (hi) of a 32-dim half row.
  alignas(64) uint16_t ilo[32], ihi[32];
  for (int j = 0; j < 16; ++j) ilo[2 * j] = j, ilo[2 * j + 1] = 32 + j, ihi[2 * j] = 16 + j, ihi[2 * j + 1] = 48 + j;
  const __m512i lo = _mm512_load_si512(ilo), hi = _mm512_load_si512(ihi);
  const int blocks = flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    uint16_t* kb = kp + static_cast<size_t>(b) * KB * D;
    uint16_t* vb = vp + static_cast<size_t>(b) * KB * D;
    bf16_rows(k, n_kv, b * KB, ld, tmp);
    if constexpr (kInt8K) {
      quantize_k_block(tmp, reinterpret_cast<uint8_t*>(kp) + static_cast<size_t>(b) * kFlashI8BlockBytes);
    } else {
      // Key j of panel i at dim pair p is u32 element 32 (16 i + j) + p.
      const uint32_t* t32 = reinterpret_cast<const uint32_t*>(tmp);
      for (int i = 0; i < 4; ++i)
        for (int half = 0; half < 2; ++half) {
          __m512i col[16];
          transpose16_u32(t32 + 16 * i * (D / 2) + 16 * half, D / 2, col);
          for (int c = 0; c < 16; ++c) _mm512_storeu_si512(kb + ((16 * half + c) * 4 + i) * 32, col[c]);
        }
    }
    bf16_rows(v, n_kv, b * KB, ld, tmp);
    for (int kq = 0; kq < KB / 2; ++kq) {
      const uint16_t* r0 = tmp + (2 * kq) * D;
      const uint16_t* r1 = r0 + D;
      for (int half = 0; half < 2; ++half) {
        const __m512i a = _mm512_load_si512(r0 + 32 * half), c = _mm512_load_si512(r1 + 32 * half);
        _mm512_storeu_si512(vb + (kq * 4 + 2 * half) * 32, _mm512_permutex2var_epi16(a, lo, c));
        _mm512_storeu_si512(vb + (kq * 4 + 2 * half + 1) * 32, _mm512_permutex2var_epi16(a, hi, c));
      }
    }
  }
}
}  // namespace avx512_flash

void flash_pack_kv_avx512(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp) {
  avx512_flash::pack_kv<float, false>(k, v, n_kv, ld, kp, vp);
}

void flash_store_bf16_avx512(const float* tile, int rows, uint16_t* out, size_t ld_out) {
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < kFlashDim / 16; ++i)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * ld_out + 16 * i),
                          avx512_flash::to_bf16_rne(_mm512_loadu_ps(tile + r * kFlashDim + 16 * i)));
}
void flash_pack_kv_avx512(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp) {
  avx512_flash::pack_kv<uint16_t, false>(k, v, n_kv, ld, kp, vp);
}
void flash_pack_kv_int8_avx512(const float* k, const float* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp) {
  avx512_flash::pack_kv<float, true>(k, v, n_kv, ld, kp, vp);
}
void flash_pack_kv_int8_avx512(const uint16_t* k, const uint16_t* v, int n_kv, size_t ld, uint16_t* kp, uint16_t* vp) {
  avx512_flash::pack_kv<uint16_t, true>(k, v, n_kv, ld, kp, vp);
}

void flash_exp2_avx512(const float* x, int n, float* y) {
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, avx512_flash::exp2v(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, k, avx512_flash::exp2v(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

void flash_softmax_block_avx512(const float* s, int rows, int valid, float c, float* m, float* l, float* o,
                                uint16_t* p) {
  using namespace avx512_flash;
  constexpr int D = kFlashDim, KB = kFlashKeys;
  const __m512 cv = _mm512_set1_ps(c);
  for (int r = 0; r < rows; ++r) {
    const float* sr = s + r * KB;
    __m512 x[4];
    __mmask16 mask[4];
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < 4; ++i) {
      mask[i] = panel_mask(valid, i);
      x[i] = _mm512_mask_blend_ps(mask[i], _mm512_set1_ps(-INFINITY), _mm512_loadu_ps(sr + 16 * i));
      mx = _mm512_max_ps(mx, x[i]);
    }
    const float mn = std::max(m[r], c * _mm512_reduce_max_ps(mx));
    const float alpha = flash_exp2(m[r] - mn);
    m[r] = mn;
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      const __m512 e = _mm512_maskz_mov_ps(mask[i], exp2v(_mm512_fmsub_ps(x[i], cv, _mm512_set1_ps(mn))));
      const __m256i eb = to_bf16_rne(e);
      // The sum takes the weights as rounded for P V (as the other kernels).
      sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(eb), 16)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + r * KB + 16 * i), eb);
    }
    l[r] = l[r] * alpha + _mm512_reduce_add_ps(sum);
    for (int i = 0; i < 4; ++i)
      _mm512_storeu_ps(o + r * D + 16 * i, _mm512_mul_ps(_mm512_loadu_ps(o + r * D + 16 * i), _mm512_set1_ps(alpha)));
  }
}

}  // namespace ama::cpu
