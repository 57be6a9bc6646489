// Audio input: any audio or video file FFmpeg's libraries can read (WAV, FLAC,
// MP3, AAC/M4A, Ogg Vorbis/Opus, WebM, MKV, MP4, ...), streamed as 16 kHz mono
// float samples. This is the one entry point every caller uses to read audio.
//
// Decoding is a stream: AudioSource holds one decoded frame and the
// resampler's state at a time, so its memory is bounded whatever the length
// of the input (tests/test_audio_source.cpp streams 20 minutes and checks the
// process grows by less than 20 MB).
//
// Conversion, done by libswresample with the soxr engine (see audio_source.cpp
// for the measured quality against our own resample()):
//   channels  downmixed to mono with swr's standard matrix, normalised so the
//             coefficients sum to 1 (stereo -> (L + R) / 2, the same as the WAV
//             reader; 5.1 -> centre-weighted, LFE dropped); layouts without
//             channel positions are averaged
//   rate      16000 Hz: flat (< 0.002 dB) to 7.6 kHz, -0.01 dB at 7.8 kHz,
//             >= 150 dB down from 8.2 kHz (nothing aliases)
//   range     clipped to [-1, 1], as openai/whisper's ffmpeg s16 conversion is
//   timing    output sample 0 is input time 0 (no resampler delay); decoder
//             priming (MP3/AAC/Opus encoder delay) is removed as ffmpeg does
//
// Errors are one line that starts with the file name ("stdin" for "-").
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

inline constexpr int kAudioSampleRate = 16000;

// Streams any audio/video file as 16 kHz mono float samples in [-1, 1].
class AudioSource {
 public:
  // path "-" reads standard input (need not be seekable; formats that need to
  // seek, such as MP4 with its index at the end, fail there). Opening decodes
  // the first frame, so a file that is not audio fails here, not on read().
  // Errors: one line naming the file and the cause ("FILE: no audio stream",
  // "FILE: not an audio or video file (...)", ...).
  static Result<std::unique_ptr<AudioSource>> open(const std::string& path);
  ~AudioSource();
  AudioSource(const AudioSource&) = delete;
  AudioSource& operator=(const AudioSource&) = delete;

  // Fills out[0..max) with the next samples; returns how many (0 at the end
  // of the stream, and on every call after it). Returns fewer than `max` only
  // at the end. A decode error mid-stream is an Error naming the file, except
  // a truncated or damaged tail (no frame decodes after the error), which ends
  // the stream as ffmpeg does: every complete frame before it is returned. A
  // file where nothing decodes at all is an Error. After an Error, read()
  // returns the same Error again. Not caught: damage that the demuxer itself
  // drops without a word (Ogg pages failing their CRC, broken WebM blocks):
  // those samples are simply missing, as in ffmpeg.
  Result<size_t> read(float* out, size_t max);

  // Duration in seconds from the container, or a negative value when unknown
  // (stdin, some streams). A hint only: it can be an estimate (MP3 without a
  // Xing header) and truncated files report the full length.
  double duration_hint() const;

  // The file name used in messages: the path, or "stdin" for "-".
  const std::string& name() const;

  struct Impl;  // FFmpeg state; defined in audio_source.cpp

 private:
  explicit AudioSource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The whole file at 16 kHz mono. Fails with "FILE: no audio samples" when the
// stream is empty, and refuses output longer than 24 hours (5.5 GB of floats).
Result<std::vector<float>> load_audio(const std::string& path);

}  // namespace ama
