// AVX-512 variants. Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq
// -mfma -mf16c (see CMakeLists.txt); only called when cpu_features() reports them.
#include <immintrin.h>

#include <cmath>

#include "backend/cpu/kernels.h"

namespace ama::cpu {
namespace avx512_ns {
#include "backend/cpu/kernels_generic.inc"

// gemm_f32_f32_6x32__avx512: 6 rows x 2 zmm = 12 accumulators, 2 weight loads
// and 6 broadcasts per k, out of 32 zmm registers.
static void gemm_f32_tile(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride,
                          int n_panels, int k, float* acc) {
  __m512 c[6][2];
  for (int r = 0; r < 6; ++r) c[r][0] = c[r][1] = _mm512_setzero_ps();
  const float* w0p = panels;
  const float* w1p = panels + (n_panels > 1 ? panel_stride : 0);
  if (rows == 6) {
    for (int kk = 0; kk < k; ++kk) {
      const __m512 w0 = _mm512_loadu_ps(w0p + kk * 16);
      const __m512 w1 = _mm512_loadu_ps(w1p + kk * 16);
      for (int r = 0; r < 6; ++r) {
        const __m512 xv = _mm512_set1_ps(x[r * ldx + kk]);
        c[r][0] = _mm512_fmadd_ps(xv, w0, c[r][0]);
        c[r][1] = _mm512_fmadd_ps(xv, w1, c[r][1]);
      }
    }
  } else {
    for (int kk = 0; kk < k; ++kk) {
      const __m512 w0 = _mm512_loadu_ps(w0p + kk * 16);
      const __m512 w1 = _mm512_loadu_ps(w1p + kk * 16);
      for (int r = 0; r < rows; ++r) {
        const __m512 xv = _mm512_set1_ps(x[r * ldx + kk]);
        c[r][0] = _mm512_fmadd_ps(xv, w0, c[r][0]);
        c[r][1] = _mm512_fmadd_ps(xv, w1, c[r][1]);
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    _mm512_storeu_ps(acc + r * 32, c[r][0]);
    if (n_panels > 1) _mm512_storeu_ps(acc + r * 32 + 16, c[r][1]);
  }
}
}  // namespace avx512_ns

const KernelTable& kernel_table_avx512() {
  static const KernelTable t = {Isa::avx512,
                                "gemm_f32_f32_6x32__avx512",
                                6,
                                avx512_ns::gemm_f32_tile,
                                "rowops_f32__avx512",
                                avx512_ns::dot_generic,
                                avx512_ns::axpy_generic,
                                avx512_ns::layer_norm_generic,
                                avx512_ns::gelu_generic,
                                avx512_ns::softmax_generic};
  return t;
}

}  // namespace ama::cpu
