#include <algorithm>
#include "core/half.h"
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"

namespace ama::cpu {

const KernelTable& kernel_table_scalar();
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();
const KernelTable& kernel_table_amx();

const KernelTable& kernel_table(Isa isa) {
  switch (isa) {
    case Isa::amx: return kernel_table_amx();  // bf16/int8 GEMMs on tiles; the rest on AVX-512
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

float gelu_q8(float x) {
  const double xc = std::isnan(x) ? x : std::clamp(static_cast<double>(x), -8.0, 8.0), x2 = xc * xc;
  const double t = xc * (kGeluQ8A + x2 * (kGeluQ8B + x2 * static_cast<double>(kGeluQ8C)));
  return static_cast<float>(x / (1.0 + std::exp(-t)));
}

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

namespace ama::cpu {

void pack_bf16_panels(const float* w, int n_out, int n_in, uint16_t* dst) {
  const size_t np = panel_count(n_out);
  const int kp = bf16_k_pairs(n_in);
  for (size_t p = 0; p < np; ++p)
    for (int k2 = 0; k2 < kp; ++k2)
      for (int j = 0; j < kPanelWidth; ++j)
        for (int t = 0; t < 2; ++t) {
          const size_t n = p * kPanelWidth + j;
          const int k = 2 * k2 + t;
          const float v = n < static_cast<size_t>(n_out) && k < n_in ? w[n * n_in + k] : 0.0f;
          dst[((p * kp + k2) * kPanelWidth + j) * 2 + t] = f32_to_bf16(v);
        }
}

void pack_i8_panels(const float* w, int n_out, int n_in, int8_t* dst, float* scale, int32_t* col_sum) {
  const size_t np = panel_count(n_out);
  const int kq = i8_k_quads(n_in);
  for (int n = 0; n < n_out; ++n) {
    float mx = 0;
    for (int k = 0; k < n_in; ++k) mx = std::max(mx, std::fabs(w[static_cast<size_t>(n) * n_in + k]));
    scale[n] = mx > 0 ? mx / 127.0f : 1.0f;
  }
  for (size_t p = 0; p < np; ++p)
    for (int j = 0; j < kPanelWidth; ++j) {
      const size_t n = p * kPanelWidth + j;
      int32_t sum = 0;
      for (int k4 = 0; k4 < kq; ++k4)
        for (int t = 0; t < 4; ++t) {
          const int k = 4 * k4 + t;
          int q = 0;
          if (n < static_cast<size_t>(n_out) && k < n_in)
            q = static_cast<int>(std::lrint(w[n * n_in + k] / scale[n]));
          q = std::clamp(q, -127, 127);
          dst[((p * kq + k4) * kPanelWidth + j) * 4 + t] = static_cast<int8_t>(q);
          sum += q;
        }
      if (n < static_cast<size_t>(n_out)) col_sum[n] = sum;
    }
}

void pack_i10_panels(const float* w, int n_out, int n_in, uint8_t* dst, float* scale, int32_t* col_sum) {
  const size_t np = panel_count(n_out);
  const int kq = i8_k_quads(n_in);  // a multiple of 16, so of 4: whole groups
  for (int n = 0; n < n_out; ++n) {
    float mx = 0;
    for (int k = 0; k < n_in; ++k) mx = std::max(mx, std::fabs(w[static_cast<size_t>(n) * n_in + k]));
    scale[n] = mx > 0 ? mx / 511.0f : 1.0f;
  }
  std::fill(dst, dst + i10_bytes(n_out, n_in), uint8_t{0});
  for (size_t p = 0; p < np; ++p) {
    const size_t tile = p / 2, in_tile = p % 2;
    const size_t tile_panels = std::min<size_t>(2, np - 2 * tile);
    uint8_t* t = dst + tile * 2 * static_cast<size_t>(kq) * 80;
    for (int j = 0; j < kPanelWidth; ++j) {
      const size_t n = p * kPanelWidth + j;
      int32_t sum = 0;
      for (int k4 = 0; k4 < kq; ++k4) {
        uint8_t* g = t + static_cast<size_t>(k4 / 4) * tile_panels * 320;  // group: lo bytes, then 4 hi quads
        for (int i = 0; i < 4; ++i) {
          const int k = 4 * k4 + i;
          int q = 0;
          if (n < static_cast<size_t>(n_out) && k < n_in) q = static_cast<int>(std::lrint(w[n * n_in + k] / scale[n]));
          q = std::clamp(q, -511, 511);
          const int l = q & 3;  // q mod 4 (two's complement), so hi = floor(q / 4) in [-128, 127]
          g[in_tile * 64 + 4 * j + i] |= static_cast<uint8_t>(l << (2 * (k4 % 4)));
          g[(tile_panels + (k4 % 4) * tile_panels + in_tile) * 64 + 4 * j + i] =
              static_cast<uint8_t>(static_cast<int8_t>((q - l) / 4));
          sum += q;
        }
      }
      if (n < static_cast<size_t>(n_out)) col_sum[n] = sum;
    }
  }
}

}  // namespace ama::cpu
