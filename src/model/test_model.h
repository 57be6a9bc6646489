// Deterministic random-weight Whisper models at real (or custom) shapes,
// written as whisper.cpp ggml files. Tests and benchmarks make their models
// with this; real weights cannot be downloaded here.
//
// The distributions follow ../shared/oracle: matrices N(0, 1/fan_in), token
// embedding N(0, 0.25), biases N(0, 0.01), LayerNorm gains 1 + N(0, 0.01),
// the standard sinusoid for the encoder's positions and N(0, 0.25) for the
// decoder's (second arguments are variances).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/ggml_quants.h"
#include "model/hparams.h"

namespace ama {

struct TestModelOptions {
  HParams hp;
  uint64_t seed = 1;
  std::string vocab_source;  // ggml file providing the vocabulary and mel filters
  std::string output;
  // Quantize the way whisper.cpp's quantize does (see whisper_quantizes):
  // the header's ftype becomes 2000 + the type's ggml_ftype, and the tensors
  // it leaves alone keep hp.ftype's f32/f16.
  std::optional<GgmlType> quant;
};

Status write_test_model(const TestModelOptions& options);

// whisper.cpp's quantize (examples/quantize/quantize.cpp) quantizes every
// 2-D tensor except the conv biases ([n, 1]) and the positional embeddings:
// all attention and MLP matrices and the token embedding; the 3-D conv
// weights and all 1-D tensors stay as they are.
bool whisper_quantizes(const std::string& name, const std::vector<int>& shape);

// Rewrites the ggml model at `src` to `dst`: with `quant`, the tensors
// whisper_quantizes names in that type (from their decoded float32 values);
// without, every tensor as float32 (ftype 0), which is how the tests give an
// f32 run exactly the weights a quantized file holds.
Status convert_ggml_model(const std::string& src, const std::string& dst, std::optional<GgmlType> quant);

}  // namespace ama
