#include "audio/fft.h"

#include <cmath>

namespace ama {

Fft::Fft(int n) : n_(n) {
  int m = n;
  for (int r : {4, 2, 3, 5})
    while (m % r == 0) {
      factors_.push_back(r);
      m /= r;
    }
  for (int p = 7; m > 1; p += 2)
    while (m % p == 0) {
      factors_.push_back(p);
      m /= p;
    }
  twiddle_.resize(n);
  for (int k = 0; k < n; ++k) {
    const double a = -2.0 * M_PI * k / n;
    twiddle_[k] = {std::cos(a), std::sin(a)};
  }
}

void Fft::forward(const std::complex<double>* in, std::complex<double>* out) const {
  if (n_ == 1) {
    out[0] = in[0];
    return;
  }
  // Per-thread scratch: one Fft (inside a shared LogMel) serves several
  // threads at once (the pipeline computes the two halves of a window in parallel).
  thread_local std::vector<std::complex<double>> scratch;
  if (scratch.size() < static_cast<size_t>(n_) * 2) scratch.resize(static_cast<size_t>(n_) * 2);
  recurse(in, 1, out, n_, 0, scratch.data());
}

// Decimation in time: split n = r * m; transform the r interleaved
// subsequences of length m, then combine with butterflies of radix r.
void Fft::recurse(const std::complex<double>* in, size_t stride, std::complex<double>* out, int n,
                  size_t fi, std::complex<double>* scratch) const {
  if (n == 1) {
    out[0] = in[0];
    return;
  }
  const int r = factors_[fi];
  const int m = n / r;
  for (int q = 0; q < r; ++q) recurse(in + q * stride, stride * r, out + q * m, m, fi + 1, scratch);
  // Twiddle step for this level: w_n^(q k) = twiddle_[(q k n_/n) mod n_].
  const size_t tw_step = static_cast<size_t>(n_ / n);
  std::complex<double> t[8];
  std::vector<std::complex<double>> tv;
  std::complex<double>* tmp = t;
  if (r > 8) {
    tv.resize(r);
    tmp = tv.data();
  }
  for (int k = 0; k < m; ++k) {
    for (int q = 0; q < r; ++q) tmp[q] = out[q * m + k] * twiddle_[(tw_step * q * k) % n_];
    if (r == 2) {
      out[k] = tmp[0] + tmp[1];
      out[m + k] = tmp[0] - tmp[1];
    } else if (r == 4) {
      const std::complex<double> a = tmp[0] + tmp[2], b = tmp[0] - tmp[2];
      const std::complex<double> c = tmp[1] + tmp[3];
      const std::complex<double> d = (tmp[1] - tmp[3]) * std::complex<double>(0, -1);
      out[k] = a + c;
      out[m + k] = b + d;
      out[2 * m + k] = a - c;
      out[3 * m + k] = b - d;
    } else {
      // General radix: out[s m + k] = sum_q tmp[q] w_r^(q s).
      const size_t step = static_cast<size_t>(n_ / r);
      for (int s = 0; s < r; ++s) {
        std::complex<double> acc = 0;
        for (int q = 0; q < r; ++q) acc += tmp[q] * twiddle_[(step * q * s) % n_];
        scratch[s] = acc;
      }
      for (int s = 0; s < r; ++s) out[s * m + k] = scratch[s];
    }
  }
}

}  // namespace ama
