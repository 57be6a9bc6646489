// Scalar (baseline x86-64) variants: plain loops, no ISA flags.
#include <cmath>

#include "backend/cpu/kernels.h"

namespace ama::cpu {
namespace scalar_ns {
#include "backend/cpu/kernels_generic.inc"

// gemm_f32_f32_4x32__scalar: 4 rows by two 16-wide panels.
static void gemm_f32_tile(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride,
                          int n_panels, int k, float* acc) {
  for (int r = 0; r < rows; ++r)
    for (int p = 0; p < n_panels; ++p) {
      float a[16] = {};
      const float* w = panels + p * panel_stride;
      const float* xr = x + r * ldx;
      for (int kk = 0; kk < k; ++kk) {
        const float xv = xr[kk];
        for (int j = 0; j < 16; ++j) a[j] += xv * w[kk * 16 + j];
      }
      for (int j = 0; j < 16; ++j) acc[r * 32 + p * 16 + j] = a[j];
    }
}
}  // namespace scalar_ns

const KernelTable& kernel_table_scalar() {
  static const KernelTable t = {Isa::scalar,
                                "gemm_f32_f32_4x32__scalar",
                                4,
                                scalar_ns::gemm_f32_tile,
                                "gemm_bf16_f32_1x16__scalar",
                                4,
                                scalar_ns::gemm_bf16_tile_generic,
                                "gemm_u8s8_s32_1x16__scalar",
                                4,
                                scalar_ns::gemm_i8_tile_generic,
                                "gemm_u8s10_s32_1x16__scalar",
                                4,
                                scalar_ns::gemm_i10_tile_generic,
                                scalar_ns::epilogue_tile_generic,
                                scalar_ns::to_bf16_row_generic,
                                scalar_ns::quantize_u8_row_generic,
                                scalar_ns::quantize_u16_row_generic,
                                "rowops_f32__scalar",
                                scalar_ns::dot_generic,
                                scalar_ns::axpy_generic,
                                scalar_ns::layer_norm_generic,
                                scalar_ns::gelu_generic,
                                scalar_ns::gelu_q8_generic,
                                scalar_ns::softmax_generic,
                                scalar_ns::exp_sum_generic,
                                scalar_ns::dot_bf16_generic,
                                scalar_ns::axpy_bf16_generic,
                                "attend_row_f32__scalar",
                                scalar_ns::attend_row_f32_generic,
                                scalar_ns::attend_row_bf16_generic,
                                scalar_ns::attend_heads_f32_generic,
                                scalar_ns::attend_heads_bf16_generic,
                                scalar_ns::dequant_tile_generic,
                                nullptr,
                                nullptr,
                                nullptr};
  return t;
}

}  // namespace ama::cpu
