#include "backend/cpu/unpack.h"

#include "backend/cpu/kernels.h"
#include "core/half.h"

namespace ama::cpu {

// Each reader walks k over one column j = n % 16 of panel p = n / 16, at
// the stride the layout puts between consecutive k (16 floats; 16 pairs; 16
// quads): 512 strided loads for a base row, ~1 us, once per decoded token.

void unpack_f32_row(const float* panels, int n_in, int n, float* out) {
  const size_t p = static_cast<size_t>(n) / kPanelWidth, j = static_cast<size_t>(n) % kPanelWidth;
  const float* src = panels + p * n_in * kPanelWidth + j;
  for (int k = 0; k < n_in; ++k) out[k] = src[static_cast<size_t>(k) * kPanelWidth];
}

void unpack_bf16_row(const uint16_t* panels, int n_in, int n, float* out) {
  const size_t p = static_cast<size_t>(n) / kPanelWidth, j = static_cast<size_t>(n) % kPanelWidth;
  const uint16_t* src = panels + p * bf16_k_pairs(n_in) * 2 * kPanelWidth + j * 2;
  for (int k = 0; k < n_in; ++k) out[k] = bf16_to_f32(src[static_cast<size_t>(k / 2) * 2 * kPanelWidth + k % 2]);
}

void unpack_i8_row(const int8_t* panels, const float* scale, int n_in, int n, float* out) {
  const size_t p = static_cast<size_t>(n) / kPanelWidth, j = static_cast<size_t>(n) % kPanelWidth;
  const int8_t* src = panels + p * i8_k_quads(n_in) * 4 * kPanelWidth + j * 4;
  const float s = scale[n];
  for (int k = 0; k < n_in; ++k) out[k] = static_cast<float>(src[static_cast<size_t>(k / 4) * 4 * kPanelWidth + k % 4]) * s;
}

void unpack_i10_row(const uint8_t* data, const float* scale, int n_out, int n_in, int n, float* out) {
  const size_t np = panel_count(n_out);
  const size_t p = static_cast<size_t>(n) / kPanelWidth, j = static_cast<size_t>(n) % kPanelWidth;
  const size_t tile = p / 2, in_tile = p % 2;
  const size_t tile_panels = np - 2 * tile < 2 ? np - 2 * tile : 2;
  const int kq = i8_k_quads(n_in);
  // Tile t starts at t * 2 * kq * 80 bytes; within it, each group of 4
  // quads is tile_panels * 320 bytes: per panel the 64 lo bytes (2 bits
  // per quad u at bits 2u), then per quad u, per panel, the 64 hi bytes.
  const uint8_t* t = data + tile * 2 * static_cast<size_t>(kq) * 80;
  const float s = scale[n];
  for (int k = 0; k < n_in; ++k) {
    const int k4 = k / 4, i = k % 4, u = k4 % 4;
    const uint8_t* g = t + static_cast<size_t>(k4 / 4) * tile_panels * 320;
    const int lo = (g[in_tile * 64 + 4 * j + i] >> (2 * u)) & 3;
    const int hi = static_cast<int8_t>(g[(tile_panels + u * tile_panels + in_tile) * 64 + 4 * j + i]);
    out[k] = static_cast<float>(4 * hi + lo) * s;
  }
}

}  // namespace ama::cpu
