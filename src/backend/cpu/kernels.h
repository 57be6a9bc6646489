// The table of CPU kernels. One table per ISA; a backend picks a table once
// and every op of a forward pass goes through it. Tests and benchmarks walk
// the same tables, so a kernel that is selectable is also tested.
//
// Kernel names state their spec, XNNPACK style: op_input_output_tile__isa.
#pragma once

#include <cstddef>

#include "backend/cpu/cpu_features.h"

namespace ama::cpu {

// f32 GEMM weights are packed in panels of 16 output columns:
// panels[p][k][j] = W[16 p + j][k], zero beyond n_out.
inline constexpr int kPanelWidth = 16;
inline constexpr int kGemmMaxRows = 6;  // largest row tile of any variant

inline size_t panel_count(int n_out) { return static_cast<size_t>((n_out + kPanelWidth - 1) / kPanelWidth); }
void pack_f32_panels(const float* w, int n_out, int n_in, float* dst);

struct KernelTable {
  Isa isa;
  const char* gemm_f32_name;
  int gemm_rows;  // row tile (MR) of the gemm kernel
  // acc[r][j] = sum_k x[r * ldx + k] * panels[(j / 16) * panel_stride + k * 16 + j % 16]
  // for r < rows (<= gemm_rows) and j < 16 * n_panels (n_panels 1 or 2).
  // acc has a row stride of 32. Each element is one fused multiply-add chain
  // over k in order, so tiling never changes a result.
  void (*gemm_f32_tile)(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride, int n_panels,
                        int k, float* acc);

  const char* vector_name;  // the row ops below
  float (*dot)(const float* a, const float* b, int n);
  void (*axpy)(float a, const float* x, float* y, int n);                 // y += a x
  void (*layer_norm)(const float* x, int n, const float* gamma, const float* beta, float eps, float* y);
  void (*gelu)(float* x, int n);                                           // exact, erf-based
  float (*softmax)(float* x, int n);                                       // in place; returns the max
};

const KernelTable& kernel_table(Isa isa);  // isa must be supported

// Plain scalar references, the baseline every variant is tested against.
namespace ref {
void gemm_f32(const float* x, int m, int k, const float* w, int n, float* y);  // y = x W^T, double accumulation
float dot(const float* a, const float* b, int n);
void layer_norm(const float* x, int n, const float* gamma, const float* beta, float eps, float* y);
float gelu(float x);
void softmax(float* x, int n);
}  // namespace ref

}  // namespace ama::cpu
