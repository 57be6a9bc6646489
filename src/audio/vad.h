// Silero VAD v5 (16 kHz): speech probability per 512-sample chunk, and
// silero-vad's rules (`get_speech_timestamps`) that turn probabilities into
// speech segments. The network is described in ../shared/models/README.md.
//
// SileroVad holds the weights, read from a safetensors file and packed once;
// it is immutable, cheap to copy, and shared by any number of VadStreams, on
// any threads (each stream holds a reference to the weights, so it may
// outlive the SileroVad it came from; streams take turns on its thread
// pool). Each stream has its own state: 64 samples of context, the LSTM's h
// and c, and 2.4 MB of scratch for one batch.
//
// Speed: every stage before the LSTM is independent of the recurrent state,
// so a stream batches up to 192 chunks and runs them as an FFT and GEMMs on
// several threads; only W_hh h and the gates run chunk by chunk, overlapped
// with the next batch's GEMMs (see vad.cpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

inline constexpr int kVadSampleRate = 16000;
inline constexpr int kVadChunk = 512;   // samples per probability (32 ms)
inline constexpr int kVadContext = 64;  // samples of the previous chunk prefixed to each chunk

namespace detail {
struct VadNet;
}

class VadStream;

struct VadLoadOptions {
  // Threads for the batched stages (0: all cores; at most 4 are used). The
  // convolutions run on a private one-thread f32 CPU backend per task.
  int n_threads = 0;
  // Tests only: run the STFT as a GEMM on the stored basis even when it is
  // the windowed DFT (see vad.cpp, "The STFT").
  bool force_stft_gemm = false;
};

class SileroVad {
 public:
  // Reads and checks every tensor's name, dtype and shape.
  static Result<SileroVad> load(const std::string& path, const VadLoadOptions& options = {});

  // One probability per 512-sample chunk of 16 kHz audio, the end zero-padded
  // to a whole chunk: ceil(n / 512) values. The same as a VadStream fed the
  // audio in any blocks, then finish(), bit for bit.
  std::vector<float> probabilities(const float* audio, size_t n) const;
  std::vector<float> probabilities(const std::vector<float>& audio) const {
    return probabilities(audio.data(), audio.size());
  }

  VadStream stream() const;
  // True when the STFT runs as an FFT (the stored basis is the periodic-Hann
  // windowed DFT, checked at load); false when it is a GEMM on the stored basis.
  bool stft_by_fft() const;

 private:
  friend class VadStream;
  SileroVad() = default;  // only load() makes one
  std::shared_ptr<const detail::VadNet> net_;
};

class VadStream {
 public:
  explicit VadStream(const SileroVad& vad);
  ~VadStream();
  VadStream(VadStream&&) noexcept;
  VadStream& operator=(VadStream&&) noexcept;

  // Appends 16 kHz mono samples in any block size; appends to `probs` one
  // probability per chunk completed by them (none until 512 samples are in).
  void push(const float* samples, size_t n, std::vector<float>& probs);
  // Ends the audio: a pending partial chunk is zero-padded and its
  // probability appended. The stream is then reset for new audio.
  void finish(std::vector<float>& probs);
  // Back to the start: zero context, zero LSTM state, nothing pending.
  void reset();

  size_t chunks() const;   // probabilities emitted since the last reset
  size_t pending() const;  // samples waiting for their chunk to complete

 private:
  struct State;
  std::unique_ptr<State> s_;
};

struct VadOptions {
  float threshold = 0.5f;        // speech starts at p >= threshold
  float neg_threshold = -1.0f;   // speech ends below this; negative: max(threshold - 0.15, 0.01) as silero
  int min_speech_ms = 250;       // shorter segments are dropped
  int min_silence_ms = 100;      // a segment ends after this much silence
  int speech_pad_ms = 30;        // padding on each side, shared out where neighbours are close
  float max_speech_s = INFINITY; // longer segments are split (at the longest silence > 98 ms if any)
};

struct SpeechSegment {
  size_t start = 0, end = 0;  // samples at 16 kHz, end exclusive
};

// Checks the options for absurd values (NaN, thresholds outside [0, 1],
// durations outside [0, 1 hour], a max_speech_s too short to hold a chunk).
Status validate(const VadOptions& options);

// silero-vad's get_speech_timestamps rules on per-chunk probabilities of
// n_samples samples of audio (probs.size() must be ceil(n_samples / 512)).
Result<std::vector<SpeechSegment>> speech_segments(const std::vector<float>& probs, size_t n_samples,
                                                   const VadOptions& options = {});

}  // namespace ama
