// ggml's tensor storage types: f32, f16, the legacy 32-element block
// quantizations (q4_0, q4_1, q5_0, q5_1, q8_0) and the 256-element k-quant
// super-blocks (q2_k ... q6_k), as whisper.cpp's `quantize` tool writes them
// into ggml model files (quantization version 2, the layout since May 2023).
//
// The block layouts are ggml's (ggml-common.h), byte for byte; the code is
// ours. Decoding is exact: every type decodes to the float32 values ggml's own
// dequantize_row_* gives. Encoding is our own round-to-nearest: each scale
// (and each k-quant sub-block scale) is rounded *up* in magnitude, so no value
// is ever clamped past the end of its block's range, and every element's
// error is at most half a step of its (sub-)block. ggml's reference
// quantizers round the scales to nearest and can clamp; ours trade a slightly
// coarser step for that bound. The layout, not the quantizer, is what a
// reader depends on. Checked once against ggml's own code (ggml-quants.c
// built beside ours, 16384 values with outliers): our decoder gives ggml's
// floats bit for bit on bytes from ggml's reference quantizers and on ours,
// for all ten types; our rms error is 1.00x ggml's for the 32-blocks, 0.98x
// for q3_k/q6_k, and 1.20-1.24x for q2_k/q4_k/q5_k (no scale search).
//
// A quantized model is dequantized at load (GgmlReader::read_tensor_data)
// and repacked into each layer's compute type like an f16 model. q8_0 is not
// mapped onto the int8 panels directly: it has one f16 scale per 32 weights
// along the dot product, our int8 kernels one scale per output channel,
// applied once after the s32 dot product over all of K. Block scales would
// mean leaving the VNNI loop every 32 weights (8 vpdpbusd) to convert and
// scale the partial sum, and our int8 covers only some layers anyway
// (layer_compute_type). Re-quantizing costs little: q8_0's step (block amax
// / 127) is at most the per-channel one (row amax / 127), so the two
// roundings add at most sqrt(2) to the int8 error (measured in
// tests/test_ggml_quants.cpp and the README).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace ama {

// Values are ggml.h's enum ggml_type ids (4 and 5 were removed from ggml;
// q8_1 = 9 and q8_k = 15 are never stored in model files).
enum class GgmlType : int32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
};

// whisper.cpp's quantize writes hparams.ftype = kGgmlQntVersion *
// kGgmlQntVersionFactor + ggml_ftype (so q5_0 is 2008); f32 and f16 models
// carry plain 0 and 1.
inline constexpr int32_t kGgmlQntVersion = 2;
inline constexpr int32_t kGgmlQntVersionFactor = 1000;

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;     // "q5_0", "q4_k"
  int block;            // elements per block: 1, 32 or 256
  int block_bytes;      // bytes per block
  int32_t ftype;        // ggml_ftype of a model "mostly" of this type
};

// The type's layout, or nullopt for an id we do not read (unknown, removed,
// or a type that never appears in model files).
std::optional<GgmlTypeInfo> ggml_type_info(int32_t type);
// By name as in whisper.cpp's quantize ("q8_0", "q4_k"; "q4_K" too).
std::optional<GgmlTypeInfo> ggml_type_from_name(std::string_view name);
// The tensor type of a model ftype (the part below kGgmlQntVersionFactor).
std::optional<GgmlTypeInfo> ggml_type_of_ftype(int32_t ftype);
// Name of any ggml type id, including ones we do not read ("q8_1", "type 42").
std::string ggml_type_name(int32_t type);
// The list of quantized types we read and write, for messages.
std::string ggml_quant_type_list();

inline bool ggml_is_quantized(GgmlType t) { return t != GgmlType::f32 && t != GgmlType::f16; }

// Bytes of one row of n elements; n must be a multiple of the block size.
uint64_t ggml_row_bytes(const GgmlTypeInfo& info, uint64_t n);

// Decodes n elements (a multiple of the block size) stored as `type`.
void dequantize_row(GgmlType type, const void* src, uint64_t n, float* dst);
// Encodes n elements (a multiple of the block size). Fails, writing nothing
// useful, on a non-finite value or one whose scale does not fit in f16.
Status quantize_row(GgmlType type, const float* src, uint64_t n, void* dst);

}  // namespace ama
