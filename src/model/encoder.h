// Whisper's audio encoder (openai/whisper model.py AudioEncoder): two conv
// layers with GELU, the sinusoidal positional embedding, pre-LayerNorm
// residual blocks, and ln_post. Holds only scratch buffers; the weights
// belong to the shared WhisperModel.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "core/huge_pages.h"
#include "model/whisper_model.h"

namespace ama {

class Encoder {
 public:
  Encoder(const WhisperModel& model, Backend& backend) : m_(model), be_(backend) {}

  // mel: one window [n_mels][ld] of 3000 frames. out: [n_audio_ctx][n_audio_state].
  void run(const float* mel, int ld, std::vector<float>& out);

 private:
  const WhisperModel& m_;
  Backend& be_;
  // In huge pages (core/huge_pages.h), as are the backend's scratch buffers.
  HugeVector<float> conv_, h_, qkv_, att_;  // h_: unstacked projections only; att_: f32 compute only
  HugeVector<uint16_t> qkv16_, att16_;      // the attention's bf16 operands and output (bf16, int8 compute)
};

}  // namespace ama
