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
#include <string>

#include "core/result.h"
#include "model/hparams.h"

namespace ama {

struct TestModelOptions {
  HParams hp;
  uint64_t seed = 1;
  std::string vocab_source;  // ggml file providing the vocabulary and mel filters
  std::string output;
};

Status write_test_model(const TestModelOptions& options);

}  // namespace ama
