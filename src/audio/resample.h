// Band-limited sample-rate conversion (Kaiser-windowed sinc). Audio input
// goes through libswresample's soxr engine (audio_source.cpp); this is our own
// reference resampler, which tests/test_audio_source.cpp measures soxr against.
//
// Filter, with fN = min(in_rate, out_rate) / 2 (the lower Nyquist frequency):
//   passband  0 .. 0.95 fN   flat (ripple < 0.001 dB)
//   -6 dB at  fN
//   stopband  1.05 fN ..     >= 80 dB down (designed for 90 dB)
// For 44.1/48 kHz -> 16 kHz that is flat to 7.6 kHz and >= 80 dB from 8.4 kHz.
// Only input between 8.0 and 8.4 kHz can alias, and it lands in 7.6..8.0 kHz,
// never in the passband; the transition is centred on fN instead of below it
// because a filter that is fully down at fN needs twice the taps.
//
// Timing convention: output sample n is the band-limited input evaluated at
// input time n * in_rate / out_rate (zero delay; output 0 aligns with input 0),
// and the output holds every such instant inside the input:
//   out.size() == ceil(in.size() * out_rate / in_rate).
// Input outside [0, in.size()) is taken as silence, so output within one
// filter half-width of either end fades: 160 input samples (3.6 ms) for
// 44.1 kHz input, 60 (7.5 ms) for 8 kHz input.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

// Resamples `in` from in_rate to out_rate (both in Hz). Returns `in` unchanged
// when the rates are equal, and an empty vector when either rate is <= 0.
// Deterministic: the same input gives bit-identical output.
std::vector<float> resample(const std::vector<float>& in, int in_rate, int out_rate);

namespace detail {
// How resample() computes the filter. `automatic` is what resample() does:
// a precomputed polyphase table when the reduced ratio out/in = L/M has
// L <= kMaxPolyphasePhases, else taps computed per output sample in double.
// Tests force each path to check that they agree.
enum class ResampleMethod { automatic, polyphase, direct };
inline constexpr int kMaxPolyphasePhases = 1000;
std::vector<float> resample_with(const std::vector<float>& in, int in_rate, int out_rate,
                                 ResampleMethod method);
// Filter half-width in input samples (taps per output = 2 * half-width).
int resample_half_width(int in_rate, int out_rate);
}  // namespace detail

}  // namespace ama
