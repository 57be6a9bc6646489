// WAV (RIFF/WAVE) reading and writing.
//
// The reader accepts what real tools write: PCM 8 (unsigned) / 16 / 24 / 32
// bit, IEEE float 32 / 64 bit, WAVE_FORMAT_EXTENSIBLE headers whose subformat
// is PCM or float, RF64/BW64 (the >4 GiB variant), unknown chunks such as LIST
// anywhere in the file, and data chunks whose size is 0xFFFFFFFF ("unknown",
// written by streaming encoders) or larger than the file (truncated files:
// every complete frame that is present is decoded, as ffmpeg does).
// Any channel count 1..64 is downmixed to mono by averaging, and samples are
// returned as float in [-1, 1] at the file's own sample rate (1..384000 Hz).
// Bad input yields an Error whose message starts with the file name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

struct AudioBuffer {
  int sample_rate = 0;
  std::vector<float> samples;  // mono, float in [-1, 1]
};

// Reads and decodes a whole WAV file.
Result<AudioBuffer> read_wav_file(const std::string& path);

// Decodes a WAV image held in memory; `name` is only used in error messages.
Result<AudioBuffer> read_wav_memory(const uint8_t* data, size_t size, const std::string& name);

enum class WavSampleFormat { pcm16, pcm24, pcm32, float32 };

// Writes interleaved samples (frames of `channels` values) as a WAV file.
// PCM values are rounded to the nearest step of 1/2^(bits-1) and clipped to the
// representable range; float32 is written unchanged. Like ffmpeg and sox, the
// header is WAVE_FORMAT_EXTENSIBLE when channels > 2 or PCM bits > 16, the
// plain PCM/float header otherwise. Used by tests to make inputs.
Status write_wav_file(const std::string& path, const std::vector<float>& interleaved,
                      int channels, int sample_rate, WavSampleFormat fmt);

}  // namespace ama
