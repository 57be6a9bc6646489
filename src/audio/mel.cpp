#include "audio/mel.h"

#include <algorithm>
#include <cmath>
#include <complex>

#include "model/hparams.h"

namespace ama {

namespace {
constexpr int kBins = kNFft / 2 + 1;  // 201
}

LogMel::LogMel(const std::vector<float>& filters, int n_mels) : n_mels_(n_mels), fft_(kNFft) {
  window_.resize(kNFft);
  for (int i = 0; i < kNFft; ++i) window_[i] = 0.5 - 0.5 * std::cos(2.0 * M_PI * i / kNFft);
  bands_.resize(n_mels);
  for (int m = 0; m < n_mels; ++m) {
    const float* f = filters.data() + static_cast<size_t>(m) * kBins;
    int b = 0, e = kBins;
    while (b < kBins && f[b] == 0.0f) ++b;
    while (e > b && f[e - 1] == 0.0f) --e;
    bands_[m].begin = b;
    bands_[m].w.assign(f + b, f + e);
  }
}

int LogMel::total_frames(size_t n_samples) {
  return static_cast<int>((n_samples + kNSamplesPerWindow) / kHopLength);
}

void LogMel::raw_frames(const float* audio, size_t n_samples, int f0, int f1, float* out, int ld) const {
  // The signal is audio followed by 30 s of zeros. Reflect padding at the
  // start reads audio[-i]; at the end it would reflect the zero padding, so
  // anything past the audio is zero.
  auto sample = [&](long i) -> double {
    if (i < 0) i = -i;
    return static_cast<size_t>(i) < n_samples ? audio[i] : 0.0;
  };
  // Two real frames per complex FFT: z = a + i b, then
  // A_k = (Z_k + conj(Z_{n-k})) / 2 and B_k = (Z_k - conj(Z_{n-k})) / 2i.
  std::vector<std::complex<double>> z(kNFft), spec(kNFft);
  std::vector<double> power_a(kBins), power_b(kBins);
  for (int t = f0; t < f1; t += 2) {
    const bool pair = t + 1 < f1;
    const long start_a = static_cast<long>(t) * kHopLength - kNFft / 2;
    const long start_b = start_a + kHopLength;
    for (int j = 0; j < kNFft; ++j)
      z[j] = {sample(start_a + j) * window_[j], pair ? sample(start_b + j) * window_[j] : 0.0};
    fft_.forward(z.data(), spec.data());
    for (int k = 0; k < kBins; ++k) {
      const std::complex<double> zk = spec[k], zn = std::conj(spec[(kNFft - k) % kNFft]);
      const std::complex<double> a = (zk + zn) * 0.5;
      const std::complex<double> b = (zk - zn) * std::complex<double>(0, -0.5);
      power_a[k] = std::norm(a);
      power_b[k] = std::norm(b);
    }
    for (int which = 0; which < (pair ? 2 : 1); ++which) {
      const std::vector<double>& p = which ? power_b : power_a;
      const int col = t + which - f0;
      for (int m = 0; m < n_mels_; ++m) {
        const Band& band = bands_[m];
        double s = 0;
        for (size_t i = 0; i < band.w.size(); ++i) s += band.w[i] * p[band.begin + i];
        // log10 in float: the output is float, and the power rounded to
        // float first moves the log by at most 2.6e-8 (log10f itself is
        // within an ulp). With the double log10 the logarithms were ~25% of
        // the log-mel's time after the FFT got faster (perf, one Zen 5 core).
        out[static_cast<size_t>(m) * ld + col] = std::log10(static_cast<float>(std::max(s, 1e-10)));
      }
    }
  }
}

float LogMel::global_max(const float* audio, size_t n_samples) const {
  const int total = total_frames(n_samples);
  constexpr int kBlock = 1000;
  std::vector<float> buf(static_cast<size_t>(n_mels_) * kBlock);
  float mx = -INFINITY;
  for (int f0 = 0; f0 < total; f0 += kBlock) {
    const int f1 = std::min(total, f0 + kBlock);
    raw_frames(audio, n_samples, f0, f1, buf.data(), kBlock);
    for (int m = 0; m < n_mels_; ++m)
      for (int c = 0; c < f1 - f0; ++c) mx = std::max(mx, buf[static_cast<size_t>(m) * kBlock + c]);
  }
  return mx;
}

void LogMel::normalize(float* mel, int n_mels, int cols, int ld, float gmax) {
  const float floor = gmax - 8.0f;
  for (int m = 0; m < n_mels; ++m)
    for (int c = 0; c < cols; ++c) {
      float& v = mel[static_cast<size_t>(m) * ld + c];
      v = (std::max(v, floor) + 4.0f) / 4.0f;
    }
}

std::vector<float> LogMel::compute(const float* audio, size_t n_samples) const {
  const int total = total_frames(n_samples);
  std::vector<float> mel(static_cast<size_t>(n_mels_) * total);
  raw_frames(audio, n_samples, 0, total, mel.data(), total);
  float gmax = -INFINITY;
  for (float v : mel) gmax = std::max(gmax, v);
  normalize(mel.data(), n_mels_, total, total, gmax);
  return mel;
}

}  // namespace ama

namespace ama {

namespace {
// Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz,
// logarithmic above.
double hz_to_mel(double f) {
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return f < min_log_hz ? f / f_sp : min_log_mel + std::log(f / min_log_hz) / logstep;
}
double mel_to_hz(double m) {
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return m < min_log_mel ? f_sp * m : min_log_hz * std::exp(logstep * (m - min_log_mel));
}
}  // namespace

void log_mel_frame_reference(const float* audio, size_t n_samples, int t, const std::vector<float>& filters,
                             int n_mels, double* out) {
  std::vector<double> x(kNFft), power(kBins);
  for (int j = 0; j < kNFft; ++j) {
    long i = static_cast<long>(t) * kHopLength - kNFft / 2 + j;
    if (i < 0) i = -i;  // reflect padding at the start; zeros past the end
    const double v = static_cast<size_t>(i) < n_samples ? audio[i] : 0.0;
    x[j] = v * (0.5 - 0.5 * std::cos(2.0 * M_PI * j / kNFft));
  }
  for (int k = 0; k < kBins; ++k) {
    double re = 0, im = 0;
    for (int j = 0; j < kNFft; ++j) {
      const double a = -2.0 * M_PI * static_cast<double>((j * k) % kNFft) / kNFft;
      re += x[j] * std::cos(a), im += x[j] * std::sin(a);
    }
    power[k] = re * re + im * im;
  }
  for (int m = 0; m < n_mels; ++m) {
    double sum = 0;
    for (int k = 0; k < kBins; ++k) sum += static_cast<double>(filters[static_cast<size_t>(m) * kBins + k]) * power[k];
    out[m] = std::log10(std::max(sum, 1e-10));
  }
}

std::vector<float> slaney_mel_filters(int n_mels) {
  const int bins = kNFft / 2 + 1;
  std::vector<double> fft_hz(bins), mel_hz(n_mels + 2);
  for (int b = 0; b < bins; ++b) fft_hz[b] = static_cast<double>(kSampleRate) / 2 * b / (bins - 1);
  const double mel_max = hz_to_mel(kSampleRate / 2.0);
  for (int i = 0; i < n_mels + 2; ++i) mel_hz[i] = mel_to_hz(mel_max * i / (n_mels + 1));
  std::vector<float> w(static_cast<size_t>(n_mels) * bins);
  for (int m = 0; m < n_mels; ++m) {
    const double lo = mel_hz[m], mid = mel_hz[m + 1], hi = mel_hz[m + 2];
    const double norm = 2.0 / (hi - lo);  // Slaney normalization: equal area
    for (int b = 0; b < bins; ++b) {
      const double rising = (fft_hz[b] - lo) / (mid - lo), falling = (hi - fft_hz[b]) / (hi - mid);
      w[static_cast<size_t>(m) * bins + b] = static_cast<float>(std::max(0.0, std::min(rising, falling)) * norm);
    }
  }
  return w;
}

}  // namespace ama
