// Whisper's hyper-parameters, the standard architectures, and the list of
// tensors (name and shape) that a model of given hparams must hold.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

struct HParams {
  int n_vocab = 0;
  int n_audio_ctx = 0;
  int n_audio_state = 0;
  int n_audio_head = 0;
  int n_audio_layer = 0;
  int n_text_ctx = 0;
  int n_text_state = 0;
  int n_text_head = 0;
  int n_text_layer = 0;
  int n_mels = 0;
  int ftype = 0;  // 0 = f32 matrices, 1 = f16 matrices

  bool multilingual() const { return n_vocab >= 51865; }
  bool operator==(const HParams&) const = default;
};

// Whisper's fixed audio geometry: 16 kHz, hop 160, 30 s windows of 3000 mel
// frames, which the conv stem halves to 1500 audio positions.
inline constexpr int kSampleRate = 16000;
inline constexpr int kNFft = 400;
inline constexpr int kHopLength = 160;
inline constexpr int kChunkSeconds = 30;
inline constexpr int kNSamplesPerWindow = kSampleRate * kChunkSeconds;  // 480000
inline constexpr int kNFramesPerWindow = kNSamplesPerWindow / kHopLength;  // 3000
inline constexpr int kAudioCtx = kNFramesPerWindow / 2;                    // 1500

// Rejects values that would make no sense or overflow: the message names the field.
Status validate_hparams(const HParams& hp);

// tiny, tiny.en, base, base.en, small, small.en, medium, medium.en,
// large-v1, large-v2, large-v3, large-v3-turbo (alias turbo).
Result<HParams> standard_hparams(const std::string& arch);
std::vector<std::string> standard_arch_names();
// The standard name matching hp, or "custom".
std::string arch_name(const HParams& hp);

enum class TensorKind { matrix, vector, conv_bias, positional };

struct TensorSpec {
  std::string name;
  std::vector<int> shape;  // PyTorch order (outermost first)
  TensorKind kind;
};

// Every tensor of a model with these hparams, in whisper.cpp's file order.
std::vector<TensorSpec> expected_tensors(const HParams& hp);

}  // namespace ama
