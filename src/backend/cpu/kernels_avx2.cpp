// AVX2 + FMA variants. Compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt);
// only called when cpu_features() reports AVX2.
#include <immintrin.h>

#include <cmath>

#include "backend/cpu/kernels.h"

namespace ama::cpu {
namespace avx2_ns {
#include "backend/cpu/kernels_generic.inc"

// gemm_f32_f32_4x32__avx2: 4 rows x 32 columns = 16 ymm accumulators would
// spill (16 registers total), so a 4x16 register block runs per panel:
// 8 accumulators, 2 weight loads and one broadcast per k.
static void gemm_f32_tile(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride,
                          int n_panels, int k, float* acc) {
  for (int p = 0; p < n_panels; ++p) {
    const float* w = panels + p * panel_stride;
    __m256 c[4][2];
    for (int r = 0; r < 4; ++r) c[r][0] = c[r][1] = _mm256_setzero_ps();
    for (int kk = 0; kk < k; ++kk) {
      const __m256 w0 = _mm256_loadu_ps(w + kk * 16);
      const __m256 w1 = _mm256_loadu_ps(w + kk * 16 + 8);
      for (int r = 0; r < 4; ++r) {
        if (r >= rows) break;
        const __m256 xv = _mm256_broadcast_ss(x + r * ldx + kk);
        c[r][0] = _mm256_fmadd_ps(xv, w0, c[r][0]);
        c[r][1] = _mm256_fmadd_ps(xv, w1, c[r][1]);
      }
    }
    for (int r = 0; r < rows; ++r) {
      _mm256_storeu_ps(acc + r * 32 + p * 16, c[r][0]);
      _mm256_storeu_ps(acc + r * 32 + p * 16 + 8, c[r][1]);
    }
  }
}
}  // namespace avx2_ns

const KernelTable& kernel_table_avx2() {
  static const KernelTable t = {Isa::avx2,
                                "gemm_f32_f32_4x16__avx2",
                                4,
                                avx2_ns::gemm_f32_tile,
                                "gemm_bf16_f32_1x16__avx2",
                                4,
                                avx2_ns::gemm_bf16_tile_generic,
                                "gemm_u8s8_s32_1x16__avx2",
                                4,
                                avx2_ns::gemm_i8_tile_generic,
                                avx2_ns::epilogue_row_generic,
                                avx2_ns::to_bf16_row_generic,
                                avx2_ns::quantize_u8_row_generic,
                                "rowops_f32__avx2",
                                avx2_ns::dot_generic,
                                avx2_ns::axpy_generic,
                                avx2_ns::layer_norm_generic,
                                avx2_ns::gelu_generic,
                                avx2_ns::softmax_generic,
                                avx2_ns::exp_sum_generic,
                                avx2_ns::dot_bf16_generic,
                                avx2_ns::axpy_bf16_generic,
                                "attend_row_f32__avx2",
                                avx2_ns::attend_row_f32_generic,
                                avx2_ns::attend_row_bf16_generic};
  return t;
}

}  // namespace ama::cpu
