// Reading one row of a packed weight matrix back out of its panels: the
// inverse of kernels.h's pack_*_panels for a single output channel n.
// The decoder looks its token embeddings up this way in the matrix already
// packed for the logits GEMM, instead of keeping a second copy of it (base:
// 51865 x 512, 53 MB as f16).
#pragma once

#include <cstdint>

namespace ama::cpu {

// W[n][0..n_in) from pack_f32_panels: exact.
void unpack_f32_row(const float* panels, int n_in, int n, float* out);
// From pack_bf16_panels: the bf16 value, widened exactly.
void unpack_bf16_row(const uint16_t* panels, int n_in, int n, float* out);
// From pack_i8_panels: q * scale[n].
void unpack_i8_row(const int8_t* panels, const float* scale, int n_in, int n, float* out);
// From pack_i10_panels (n_out needed: the last tile may hold one panel):
// (4 hi + lo) * scale[n].
void unpack_i10_row(const uint8_t* data, const float* scale, int n_out, int n_in, int n, float* out);

}  // namespace ama::cpu
