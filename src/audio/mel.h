// Whisper's log-mel spectrogram, exactly as openai/whisper's audio.py:
// 30 s of zeros appended, reflect padding of n_fft/2, periodic Hann window,
// |rfft|^2 with the last frame dropped, mel filterbank, log10(max(x, 1e-10)),
// then max(x, global_max - 8) and (x + 4) / 4.
//
// The global max couples every frame, so long audio takes two passes: one
// that only tracks the max, then one window of frames at a time. Neither
// holds more than one window of spectrogram.
#pragma once

#include <vector>

#include "audio/fft.h"

namespace ama {

class LogMel {
 public:
  // filters: [n_mels][n_fft/2 + 1] as stored in the model file.
  LogMel(const std::vector<float>& filters, int n_mels);

  int n_mels() const { return n_mels_; }

  // Frames in openai's log_mel_spectrogram(audio, padding=30 s).
  static int total_frames(size_t n_samples);

  // Raw log10 mel values of frames [f0, f1) into out[n_mels][ld] (column t - f0).
  void raw_frames(const float* audio, size_t n_samples, int f0, int f1, float* out, int ld) const;

  // max over all total_frames() frames of the raw log10 values.
  float global_max(const float* audio, size_t n_samples) const;

  // Applies max(x, gmax - 8) and (x + 4) / 4 in place to [n_mels][ld] with cols columns.
  static void normalize(float* mel, int n_mels, int cols, int ld, float gmax);

  // The whole normalized spectrogram [n_mels][total_frames].
  std::vector<float> compute(const float* audio, size_t n_samples) const;

 private:
  int n_mels_;
  std::vector<double> window_;  // periodic Hann, 400
  // Sparse filterbank: for each mel bin, its nonzero frequency range and weights.
  struct Band {
    int begin = 0;
    std::vector<double> w;
  };
  std::vector<Band> bands_;
  Fft fft_;
};

// The plain reference of LogMel::raw_frames for one frame t: a direct
// 400-point DFT of the windowed frame, the dense filterbank and log10, all
// in double; out[m] for m < n_mels. For tests and the kernel harness.
void log_mel_frame_reference(const float* audio, size_t n_samples, int t, const std::vector<float>& filters,
                             int n_mels, double* out);

// Whisper's mel filterbank, [n_mels][201]: librosa.filters.mel(sr=16000,
// n_fft=400, n_mels) with Slaney's scale and normalization, which is how
// openai/whisper made mel_filters.npz (80 and 128 bins). Used where no model
// file supplies filters (e.g. 128-bin test models).
std::vector<float> slaney_mel_filters(int n_mels);

}  // namespace ama
