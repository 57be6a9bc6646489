// Whisper's weights: read once from a ggml file or a Hugging Face checkpoint
// directory, repacked once for the backend, and never modified afterwards,
// so that any number of streams (src/model/encoder.h, decoder.h) can share
// one WhisperModel.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
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
  // attn.query, key and value stacked [3 n][n] (bias: query's, zeros,
  // value's) by stack_projections, which then drops the three: one GEMM
  // with one activation conversion instead of three.
  // (At int8 compute the query and key are int8 and the value int8_bc:
  // one stack, the correction on the value's rows; layer_compute_type.)
  LinearWeights qkv;
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
  // The GELU of conv1 and of the encoder's MLP up: gelu_q8 where the next
  // GEMM (conv2, MLP down) quantizes its input to 8 bits (load_weights).
  Activation conv1_act = Activation::gelu;
  Activation encoder_mlp_act = Activation::gelu;
  std::vector<float> encoder_pos;  // [n_audio_ctx][n_audio_state]
  std::vector<EncoderLayerWeights> encoder;
  NormWeights ln_post;

  // The token embedding [n_vocab][n_text_state], packed for the output
  // GEMM (logits = ln(x) W^T). It is also the only copy kept for the
  // embedding lookups (embed_token), which read rows back out of the panels.
  LinearWeights logits;
  std::vector<float> decoder_pos;      // [n_text_ctx][n_text_state]
  std::vector<DecoderLayerWeights> decoder;
  NormWeights ln;

  // Every decoder layer's cross-attention keys (values) stacked
  // [n_text_layer * n][n] by stack_projections, which then drops the
  // per-layer ones: they all read the same encoder output, so a window's
  // cross-attention K (V) is one GEMM.
  LinearWeights cross_k, cross_v;

  // Cross-attention heads for word timestamps, (layer, head), from a Hugging
  // Face generation_config.json; empty: chosen by shape (decode/timing.h).
  std::vector<std::pair<int, int>> alignment_heads;

  // out[c] = W[token][c] + pos[c], c < n_text_state, W the token embedding
  // as packed in `logits` (backend: one that packs as the loading one did).
  // Exact at f32 compute; at int8 compute the int10 value, (4 hi + lo) *
  // max|row| / 511, and at bf16 the bf16 value (the oracle figures are in
  // whisper_model.cpp).
  void embed_token(const Backend& backend, int token, const float* pos, float* out) const;
};

// The compute type a weight matrix is packed in, given the one requested:
// with int8, plain int8 where it meets the accuracy bar (encoder MLPs and
// convolutions, cross-attention keys), int10 for the decoder's per-token matrices and the
// logits, bf16 elsewhere (the measurements are in whisper_model.cpp).
ComputeType layer_compute_type(const std::string& tensor_name, ComputeType requested);

// Stacks the projections that share an input (see EncoderLayerWeights::qkv
// and WhisperModel::cross_k) once the model is loaded. Where the backend
// cannot stack them (a custom shape whose width does not fill whole
// panels, or parts packed at different compute types) they stay separate
// and the encoder and decoder run them one by one.
void stack_projections(const Backend& backend, WhisperModel& model);

// Loads and validates a model; weights are packed by backend. `path` is a
// whisper.cpp ggml file or a Hugging Face openai/whisper-* directory
// (config.json, model.safetensors, vocab.json, ...; see hf_checkpoint.h).
// Tensors are streamed: each is read as float32, packed and freed before the
// next, so peak memory is the packed model plus the largest tensor.
Result<std::shared_ptr<const WhisperModel>> load_model(const std::string& path, const Backend& backend);

class TensorSource;
// The weights of `model` (hp and tokenizer already set) from `src`, checked
// against expected_tensors(model->hp): every tensor once, with its shape.
Status load_weights(TensorSource& src, const Backend& backend, WhisperModel& model);
// Returns the heap's free memory to the system after a load (glibc).
void release_free_heap();

}  // namespace ama
