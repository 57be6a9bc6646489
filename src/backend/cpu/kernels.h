// The table of CPU kernels. One table per ISA; a backend picks a table once
// and every op of a forward pass goes through it. Tests and benchmarks walk
// the same tables, so a kernel that is selectable is also tested.
//
// Kernel names state their spec, XNNPACK style: op_input_output_tile__isa.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_features.h"

namespace ama::cpu {

// f32 GEMM weights are packed in panels of 16 output columns:
// panels[p][k][j] = W[16 p + j][k], zero beyond n_out.
inline constexpr int kPanelWidth = 16;
inline constexpr int kGemmMaxRows = 32;  // largest row tile of any variant (AMX: 32)

inline size_t panel_count(int n_out) { return static_cast<size_t>((n_out + kPanelWidth - 1) / kPanelWidth); }
void pack_f32_panels(const float* w, int n_out, int n_in, float* dst);

// bf16 weights: K in pairs, the layout of AVX-512 BF16's vdpbf16ps:
// panels[p][k / 2][j][k % 2] = bf16(W[16 p + j][k]), K padded to even with 0.
// K pairs are padded to a multiple of 16: one AMX tile holds 16 pairs.
inline int bf16_k_pairs(int n_in) { return ((n_in + 1) / 2 + 15) / 16 * 16; }
void pack_bf16_panels(const float* w, int n_out, int n_in, uint16_t* dst);

// int8 weights, one scale per output channel (max |w| / 127), K in groups of
// four, the layout of AVX-512 VNNI's vpdpbusd:
// panels[p][k / 4][j][k % 4] = round(W[16 p + j][k] / scale[n]), K padded with 0.
// col_sum[n] = sum_k q[n][k], for the zero point of the u8 activations.
// K quads are padded to a multiple of 16: one AMX tile holds 16 quads.
inline int i8_k_quads(int n_in) { return ((n_in + 3) / 4 + 15) / 16 * 16; }
void pack_i8_panels(const float* w, int n_out, int n_in, int8_t* dst, float* scale, int32_t* col_sum);

// int10 weights (the decoder's, at the int8 compute type): one scale per
// output channel (max |w| / 511), q = round(W[n][k] / scale[n]) in [-511, 511]
// split as q = 4 hi + lo with hi in [-128, 127] and lo in [0, 3]; 1.25 bytes
// per weight. They are laid out in the order a 32-column tile reads them, so
// that a decoder step streams each matrix as one run of bytes: tile t holds
// panels 2t and 2t+1 (only 2t if it is the last of an odd count), and for
// each group g of 16 K (4 quads) stores, per panel, the 64 lo bytes
// (byte [j][k % 4] holds lo(W[16 p + j][k]) for the 4 quads 4g + u at bits
// 2u, 2u+1), then for u = 0..3, per panel, the 64 hi bytes of quad 4g + u in
// the int8 panels' [j][k % 4] order. K is padded with zeros to
// i8_k_quads(n_in) quads. Tile t starts at byte t * 2 * k_quads * 80.
// col_sum[n] = sum_k q[n][k].
inline size_t i10_bytes(int n_out, int n_in) { return panel_count(n_out) * i8_k_quads(n_in) * 80; }
void pack_i10_panels(const float* w, int n_out, int n_in, uint8_t* dst, float* scale, int32_t* col_sum);

// The usual output of a GEMM tile, for kernels that finish the tile in
// registers (gemm_{i8,bf16,f32}_tile_out): for r < rows, c < cols,
// y[r * ldy + c] (+)= act(v_rc + bias[c]) (y in f32 or bf16), v_rc the dot product (f32, bf16), or
// w_scale[c] (sx[r] dot_rc + lo[r] col_sum[c]) (int8): the arithmetic of
// dequant_tile and epilogue_tile. Per-column arrays start at the tile's
// first column; bias may be null; sx, lo, w_scale and col_sum are for int8.
// The activation of a GEMM epilogue: none, GELU (the erf form, to a few
// ulps), or GELU to within 7.9e-5 + 2^-14 |GELU(x)| for outputs that the
// next GEMM quantizes to 8 bits (kGeluQ8A below; the int8 encoder's conv1
// and MLP up).
enum class Act : uint8_t { none, gelu, gelu_q8 };

struct TileOut {
  const float* sx;
  const float* lo;
  const float* w_scale;
  const int32_t* col_sum;
  const float* bias;
  Act act;
  bool accumulate;
  int cols;  // 1..32
  float* y;           // f32 out, or
  uint16_t* y_bf16;   // bf16 out (round to nearest even, as to_bf16_row; no accumulate)
  size_t ldy;
};

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

  // bf16 x bf16 -> f32: x rows in bf16 with ldx >= 2 * k_pairs elements;
  // panel_stride in uint16 elements. Same tile contract as gemm_f32_tile.
  const char* gemm_bf16_name;
  int gemm_bf16_rows;  // row tile; activations are zero-padded to a multiple of it
  void (*gemm_bf16_tile)(const uint16_t* x, size_t ldx, int rows, const uint16_t* panels, size_t panel_stride,
                         int n_panels, int k_pairs, float* acc);
  // u8 x s8 -> s32: x rows as u8 with ldx >= 4 * k_quads bytes.
  // Integer arithmetic, so every ISA gives identical results.
  const char* gemm_i8_name;
  int gemm_i8_rows;
  void (*gemm_i8_tile)(const uint8_t* x, size_t ldx, int rows, const int8_t* panels, size_t panel_stride,
                       int n_panels, int k_quads, int32_t* acc);
  // u8 x int10 -> s32 on one tile of pack_i10_panels (n_panels 1 or 2):
  // acc[r][j] = sum_k x[r][k] (4 hi + lo), exact (below 2^31 for k < 16000);
  // k_quads is a multiple of 16.
  const char* gemm_i10_name;
  int gemm_i10_rows;
  void (*gemm_i10_tile)(const uint8_t* x, size_t ldx, int rows, const uint8_t* tile, int n_panels, int k_quads,
                        int32_t* acc);

  // GEMM epilogue for a tile (acc rows 32 floats apart, as the tiles write
  // them): y[r * ldy + c] (+)= act(acc[r * 32 + c] + bias[c]) for r < rows,
  // c < cols; bias may be null. acc is left modified.
  void (*epilogue_tile)(float* acc, int rows, int cols, const float* bias, Act act, bool accumulate, float* y,
                        size_t ldy);

  // Activation conversion for the bf16 and int8 GEMMs, one row at a time.
  void (*to_bf16_row)(const float* x, int n, uint16_t* out);  // round to nearest even
  // Affine u8: x ~ lo + scale q, scale = (max - min) / 255, q rounded to nearest even.
  void (*quantize_u8_row)(const float* x, int n, uint8_t* out, float* scale, float* lo);
  // Affine 16-bit, as two u8 digits: x ~ lo + scale (256 hi + lo_digit),
  // scale = (max - min) / 65535, rounded to nearest even.
  void (*quantize_u16_row)(const float* x, int n, uint8_t* hi, uint8_t* lo_digit, float* scale, float* lo);

  const char* vector_name;  // the row ops below
  float (*dot)(const float* a, const float* b, int n);
  void (*axpy)(float a, const float* x, float* y, int n);                 // y += a x
  void (*layer_norm)(const float* x, int n, const float* gamma, const float* beta, float eps, float* y);
  void (*gelu)(float* x, int n);                                           // exact, erf-based
  void (*gelu_q8)(float* x, int n);  // Act::gelu_q8: within 2^-13 |y| + 1e-6 |x| of ref::gelu_q8
  float (*softmax)(float* x, int n);                                       // in place; returns the max
  float (*exp_sum)(float* x, int n, float sub);                            // x = exp(x - sub); returns sum
  // Attention over bf16 K/V caches: q . bf16(k), and y += a bf16(x).
  float (*dot_bf16)(const float* q, const uint16_t* k, int n);
  void (*axpy_bf16)(float a, const uint16_t* x, float* y, int n);
  // One query row of one head over n keys: scores into scratch[n], softmax,
  // out[d] = sum_j p_j v_j. Keys and values are rows of stride ld starting
  // at the head's slice. (The benchmarks' kernel; attention() runs
  // attend_heads below.)
  const char* attend_name;
  void (*attend_row_f32)(const float* q, const float* k, const float* v, int n, int ld, int d, float scale,
                         float* scratch, float* out);
  void (*attend_row_bf16)(const float* q, const uint16_t* k, const uint16_t* v, int n, int ld, int d, float scale,
                          float* scratch, float* out);
  // n_heads adjacent heads at once (q, k, v and out at the first head's
  // slice, the others d apart) over a run of n keys, as a partial softmax,
  // so that a long attention can be split into chunks of keys and merged:
  // m[h] = the largest score s_j, l[h] = sum_j exp(s_j - m[h]), and
  // out[h d + c] = sum_j exp(s_j - m[h]) v_j[c], not divided by l[h].
  // scratch holds n_heads * n. A head's result does not depend on the other
  // heads in the call. Reading each key row's heads together streams K and
  // V at memory speed; one head alone reads 2 of every 16 cache lines of a
  // base row, at less than half the speed.
  void (*attend_heads_f32)(const float* q, const float* k, const float* v, int n, int ld, int n_heads, int d,
                           float scale, float* scratch, float* m, float* l, float* out);
  void (*attend_heads_bf16)(const float* q, const uint16_t* k, const uint16_t* v, int n, int ld, int n_heads, int d,
                            float scale, float* scratch, float* m, float* l, float* out);
  // The integer GEMMs' output for a tile: out[r * 32 + c] = w_scale[c]
  // (sx[r] dot_rc + lo[r] col_sum[c]), dot_rc = acc[r * 32 + c] with digits
  // 1 (u8 activations), 256 acc[r * 64 + c] + acc[r * 64 + 32 + c] with
  // digits 2 (16-bit ones: a row's two digit rows are consecutive).
  void (*dequant_tile)(const int32_t* acc, int rows, int digits, int cols, const float* sx, const float* lo,
                       const float* w_scale, const int32_t* col_sum, float* out);
  // gemm_i8_tile, gemm_bf16_tile and gemm_f32_tile with dequant_tile (int8) and
  // epilogue_tile applied to the accumulators in registers, into f32 or
  // bf16 y (TileOut), for any number of rows (the kernel steps through them
  // in its tile height; TileOut's rows and sx, lo start at the first). Null where the ISA has no such kernel; the GEMM then runs
  // the steps one after another. Saves the tile's round trips through
  // memory: ~8% of base's 1500 x 512 x 512 int8 GEMM at one thread went to
  // the separate dequantization and epilogue.
  void (*gemm_i8_tile_out)(const uint8_t* x, size_t ldx, int rows, const int8_t* panels, size_t panel_stride,
                           int n_panels, int k_quads, const TileOut& out);
  void (*gemm_bf16_tile_out)(const uint16_t* x, size_t ldx, int rows, const uint16_t* panels, size_t panel_stride,
                             int n_panels, int k_pairs, const TileOut& out);
  void (*gemm_f32_tile_out)(const float* x, size_t ldx, int rows, const float* panels, size_t panel_stride,
                            int n_panels, int k, const TileOut& out);
};

const KernelTable& kernel_table(Isa isa);  // isa must be supported
// The AMX table with the tile instructions replaced by a scalar model of
// them: lets tests check the AMX kernels' data movement on any CPU.
const KernelTable& kernel_table_amx_emulated();

// GELU for outputs that the next GEMM quantizes to 8 bits (Act::gelu_q8):
// x sigma(x (a + b x^2 + c x^4)) with x clamped to [-8, 8] inside sigma (the
// polynomial turns back down past |x| = 11.7; sigma(8 (a + 64 b + 4096 c))
// is 1 - 8e-15). a, b, c are a minimax fit to the erf form (Nelder-Mead on
// the max error over [-12, 12] at steps of 0.005): within 7.9e-5 of it for
// every x, where the tanh form (a = 2 sqrt(2/pi), b = 0.044715 a, c = 0)
// is within 4.7e-4.
inline constexpr float kGeluQ8A = 1.596538541603909f, kGeluQ8B = 0.07282316329296615f,
                       kGeluQ8C = -0.0005347184390897056f;

// Plain scalar references, the baseline every variant is tested against.
namespace ref {
void gemm_f32(const float* x, int m, int k, const float* w, int n, float* y);  // y = x W^T, double accumulation
float dot(const float* a, const float* b, int n);
void layer_norm(const float* x, int n, const float* gamma, const float* beta, float eps, float* y);
float gelu(float x);
float gelu_q8(float x);  // the Act::gelu_q8 formula in double (kGeluQ8*)
void softmax(float* x, int n);
}  // namespace ref

}  // namespace ama::cpu
