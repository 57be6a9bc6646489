#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"

namespace ama::cpu {

const KernelTable& kernel_table_scalar();
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();

const KernelTable& kernel_table(Isa isa) {
  switch (isa) {
    case Isa::amx:  // AMX kernels cover the bf16/int8 paths; f32 runs on AVX-512
    case Isa::avx512: return kernel_table_avx512();
    case Isa::avx2: return kernel_table_avx2();
    case Isa::scalar: break;
  }
  return kernel_table_scalar();
}

void pack_f32_panels(const float* w, int n_out, int n_in, float* dst) {
  const size_t np = panel_count(n_out);
  for (size_t p = 0; p < np; ++p)
    for (int k = 0; k < n_in; ++k)
      for (int j = 0; j < kPanelWidth; ++j) {
        const size_t n = p * kPanelWidth + j;
        dst[(p * n_in + k) * kPanelWidth + j] = n < static_cast<size_t>(n_out) ? w[n * n_in + k] : 0.0f;
      }
}

namespace ref {

void gemm_f32(const float* x, int m, int k, const float* w, int n, float* y) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int kk = 0; kk < k; ++kk) s += static_cast<double>(x[i * k + kk]) * w[j * k + kk];
      y[i * n + j] = static_cast<float>(s);
    }
}

float dot(const float* a, const float* b, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

void layer_norm(const float* x, int n, const float* gamma, const float* beta, float eps, float* y) {
  double mean = 0, var = 0;
  for (int i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  for (int i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= n;
  const double inv = 1.0 / std::sqrt(var + eps);
  for (int i = 0; i < n; ++i) y[i] = static_cast<float>((x[i] - mean) * inv * gamma[i] + beta[i]);
}

float gelu(float x) { return static_cast<float>(0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)))); }

void softmax(float* x, int n) {
  double mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = std::fmax(mx, x[i]);
  std::vector<double> e(n);
  double s = 0;
  for (int i = 0; i < n; ++i) s += e[i] = std::exp(x[i] - mx);
  for (int i = 0; i < n; ++i) x[i] = static_cast<float>(e[i] / s);
}

}  // namespace ref
}  // namespace ama::cpu
