// Flash attention on AVX2 + FMA (d_head 64; layouts in flash_attention.h).
// AVX2 has no bf16 dot product, so K and V are packed as f32 (their bf16
// values, flash_pack_kv_f32: twice the bytes, 768 KB a head at 1500 keys)
// and both products are the f32 GEMM's 6 x 16 register tile, one FMA per
// accumulator and k. History, base's 8 heads at one thread on a Zen 3 EPYC:
// the bf16 pairs widened in registers (2 dependent FMAs per pair on each of
// 8 accumulators, 4 rows) ran at 40-45% of the FMA peak, 111-128 ms; each
// block widened to f32 once per call of 24 rows, 78-100 ms, of which the
// widening was 12%; packed once as f32 panels (this kernel), 71-100 ms,
// 53-67% of the peak (`kernels --kernel flash_d64 --isa avx2 -t 1`, min
// times; this VM's speed moved by up to 40% between runs).
//
// flash_d64_24x64__avx2: up to 24 query rows, in groups of 6 over each
// block of 64 keys: scores (4 tiles of 6 x 16), the online softmax 8 lanes
// wide with the polynomial of the other kernels, P rounded to bf16, P V
// (4 tiles of 6 x 16 on the running output).
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

// bf16 rounding (nearest even) kept in f32, a NaN kept a NaN.
static inline __m256 round_bf16(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb),
                                     _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
  return _mm256_blendv_ps(_mm256_castsi256_ps(r), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// acc[r] (2 ymm = 16 columns) += sum over k < 64 of a[r][k] b[k][0..15], a
// at a row stride of 64 floats, b a panel of 16: the f32 GEMM's 6 x 16 register tile
// (12 accumulators, one FMA per k each, so that 12 independent chains hide
// the FMA's 4-cycle latency at 2 a cycle).
template <int R>
static inline void tile16(const float* a, const float* b, __m256 (&acc)[R][2]) {
  for (int k = 0; k < 64; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * 16), b1 = _mm256_loadu_ps(b + k * 16 + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * 64 + k);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
}

// One key block for R query rows: scores, the online softmax, P V.
// qf, o: the rows' f32 query and running output ([R][64]); m, l: running
// max and sum; kf, vf: the block unpacked (unpack_block).
template <int R>
static void block_rows(const float* qf, const float* kf, const float* vf, int valid, float c, float* m, float* l,
                       float* o) {
  constexpr int KB = kFlashKeys;
  alignas(32) float s[R][KB], pf[R][KB];
  for (int i = 0; i < 4; ++i) {  // 16 keys
    __m256 acc[R][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    tile16<R>(qf, kf + 16 * 64 * i, acc);
#pragma GCC unroll 6
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
    for (int x = 0; x < kFlashDim; x += 8)
      _mm256_store_ps(o + r * 64 + x, _mm256_mul_ps(_mm256_load_ps(o + r * 64 + x), _mm256_set1_ps(alpha)));
  }
  for (int cp = 0; cp < 4; ++cp) {  // 16 head dims
    __m256 acc[R][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r)
      acc[r][0] = _mm256_load_ps(o + r * 64 + 16 * cp), acc[r][1] = _mm256_load_ps(o + r * 64 + 16 * cp + 8);
    tile16<R>(&pf[0][0], vf + 16 * 64 * cp, acc);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm256_store_ps(o + r * 64 + 16 * cp, acc[r][0]);
      _mm256_store_ps(o + r * 64 + 16 * cp + 8, acc[r][1]);
    }
  }
}

using BlockFlashAvx2RowsFn = void (*)(const float*, const float*, const float*, int, float, float*, float*, float*);
constexpr BlockFlashAvx2RowsFn kBlockFlashAvx2Rows[7] = {nullptr,         block_rows<1>, block_rows<2>, block_rows<3>,
                                       block_rows<4>, block_rows<5>, block_rows<6>};

// Up to kFlashAvx2Rows query rows, in groups of 6 (the register tile's height). Each
// block of K and V is widened once per call for every group; with 24 rows
// that is 8192 values against 24 x 8192 multiply-adds.
static void flash_rows(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                       float* out, size_t ld_out) {
  constexpr int D = kFlashDim, KB = kFlashKeys;
  alignas(32) float qf[kFlashAvx2Rows][D], o[kFlashAvx2Rows][D] = {};
  float m[kFlashAvx2Rows], l[kFlashAvx2Rows];
  for (int r = 0; r < rows; ++r) {
    for (int x = 0; x < D; ++x) qf[r][x] = bf16_to_f32(q[r * D + x]);
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }
  const int blocks = flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    const int valid = std::min(KB, n_kv - b * KB);
    const float* kf = reinterpret_cast<const float*>(kp) + static_cast<size_t>(b) * KB * D;
    const float* vf = reinterpret_cast<const float*>(vp) + static_cast<size_t>(b) * KB * D;
    for (int g = 0; g < rows; g += 6)
      kBlockFlashAvx2Rows[std::min(6, rows - g)](qf[g], kf, vf, valid, c, m + g, l + g, o[g]);
  }
  for (int r = 0; r < rows; ++r) {
    const float inv = 1.0f / l[r];
    for (int x = 0; x < D; ++x) out[r * ld_out + x] = o[r][x] * inv;
  }
}
}  // namespace avx2_flash

void flash_d64_avx2(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                    float* out, size_t ld_out) {
  avx2_flash::flash_rows(q, rows, kp, vp, n_kv, c, out, ld_out);
}

}  // namespace ama::cpu
