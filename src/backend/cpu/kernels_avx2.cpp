// AVX2 + FMA variants. Compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt);
// only called when cpu_features() reports AVX2.
#include <immintrin.h>

#include <cmath>

#include "backend/cpu/kernels.h"

namespace ama::cpu {
namespace avx2_ns {
#include "backend/cpu/kernels_generic.inc"

// gemm_f32_f32_6x16__avx2: per 16-column panel, 6 rows x 2 ymm = 12
// accumulators, 2 weight loads and 6 broadcasts per k, within the 16 ymm
// registers. R is a template parameter so that the accumulators stay in
// registers (a run-time row count made GCC keep them in memory: 62 GFLOP/s).
template <int R>
static void f32_rows(const float* x, size_t ldx, const float* w, int k, float* acc) {
  __m256 c[R][2];
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = _mm256_setzero_ps();
  for (int kk = 0; kk < k; ++kk) {
    const __m256 w0 = _mm256_loadu_ps(w + kk * 16);
    const __m256 w1 = _mm256_loadu_ps(w + kk * 16 + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * ldx + kk);
      c[r][0] = _mm256_fmadd_ps(xv, w0, c[r][0]);
      c[r][1] = _mm256_fmadd_ps(xv, w1, c[r][1]);
    }
  }
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
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = _mm256_setzero_ps();
  for (int kp = 0; kp < k_pairs; ++kp) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32));       // columns 0-7
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32 + 16));  // columns 8-15
    const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
    const __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(w0, hi_mask));
    const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
    const __m256 o1 = _mm256_castsi256_ps(_mm256_and_si256(w1, hi_mask));
    for (int r = 0; r < R; ++r) {
      const uint16_t* xr = x + r * ldx + 2 * kp;
      const __m256 x0 = _mm256_set1_ps(bf16_value(xr[0])), x1 = _mm256_set1_ps(bf16_value(xr[1]));
      c[r][0] = _mm256_fmadd_ps(x1, o0, _mm256_fmadd_ps(x0, e0, c[r][0]));
      c[r][1] = _mm256_fmadd_ps(x1, o1, _mm256_fmadd_ps(x0, e1, c[r][1]));
    }
  }
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
}  // namespace avx2_ns

const KernelTable& kernel_table_avx2() {
  static const KernelTable t = {Isa::avx2,
                                "gemm_f32_f32_6x16__avx2",
                                6,
                                avx2_ns::gemm_f32_tile,
                                "gemm_bf16_f32_4x16__avx2",
                                4,
                                avx2_ns::gemm_bf16_tile,
                                "gemm_u8s8_s32_1x16__avx2",
                                4,
                                avx2_ns::gemm_i8_tile_generic,
                                "gemm_u8s10_s32_1x16__avx2",
                                4,
                                avx2_ns::gemm_i10_tile_generic,
                                avx2_ns::epilogue_tile_generic,
                                avx2_ns::to_bf16_row_generic,
                                avx2_ns::quantize_u8_row_generic,
                                avx2_ns::quantize_u16_row_generic,
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
