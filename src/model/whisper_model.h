// Whisper's weights: read once from a ggml file, repacked once for the
// backend, and never modified afterwards, so that any number of streams
// (src/model/encoder.h, decoder.h) can share one WhisperModel.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/result.h"
#include "model/hparams.h"
#include "text/tokenizer.h"

namespace ama {

struct LinearWeights {
  std::unique_ptr<PackedMatrix> w;
  std::vector<float> b;  // empty when the layer has no bias (attention keys)
  const float* bias() const { return b.empty() ? nullptr : b.data(); }
};

struct NormWeights {
  std::vector<float> gamma, beta;
};

struct AttentionWeights {
  LinearWeights query, key, value, out;
};

struct EncoderLayerWeights {
  NormWeights attn_ln;
  AttentionWeights attn;
  NormWeights mlp_ln;
  LinearWeights mlp0, mlp2;
};

struct DecoderLayerWeights {
  NormWeights attn_ln;
  AttentionWeights attn;
  NormWeights cross_ln;
  AttentionWeights cross;
  NormWeights mlp_ln;
  LinearWeights mlp0, mlp2;
};

struct WhisperModel {
  explicit WhisperModel(Tokenizer tok) : tokenizer(std::move(tok)) {}
  std::string path;
  HParams hp;
  std::vector<float> mel_filters;  // [n_mels][201]
  Tokenizer tokenizer;

  LinearWeights conv1, conv2;  // as GEMMs over [c_in * 3] windows
  std::vector<float> encoder_pos;  // [n_audio_ctx][n_audio_state]
  std::vector<EncoderLayerWeights> encoder;
  NormWeights ln_post;

  std::vector<float> token_embedding;  // [n_vocab][n_text_state], for lookups
  LinearWeights logits;                // the same matrix packed for the output GEMM
  std::vector<float> decoder_pos;      // [n_text_ctx][n_text_state]
  std::vector<DecoderLayerWeights> decoder;
  NormWeights ln;
};

// The compute type a weight matrix is packed in, given the one requested:
// with int8, plain int8 where it meets the accuracy bar (encoder MLPs,
// cross-attention keys), int10 for the decoder's per-token matrices and the
// logits, bf16 elsewhere (the measurements are in whisper_model.cpp).
ComputeType layer_compute_type(const std::string& tensor_name, ComputeType requested);

// Loads and validates a whisper.cpp ggml model; weights are packed by backend.
Result<std::shared_ptr<const WhisperModel>> load_model(const std::string& path, const Backend& backend);

}  // namespace ama
