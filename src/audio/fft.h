// A mixed-radix complex FFT for the small sizes of audio front ends
// (Whisper: 400 = 2^4 * 5^2, not a power of two). Double precision, because
// log-mel bins 8 decades below a frame's peak must keep 1e-4 accuracy.
#pragma once

#include <complex>
#include <vector>

namespace ama {

class Fft {
 public:
  explicit Fft(int n);  // any n >= 1; radices 2, 3, 4, 5 are direct, other primes by plain DFT
  int size() const { return n_; }
  // out[k] = sum_j in[j] exp(-2 pi i j k / n). in and out must not overlap.
  // Thread-safe: any number of threads may call it at once.
  void forward(const std::complex<double>* in, std::complex<double>* out) const;

 private:
  void recurse(const std::complex<double>* in, size_t stride, std::complex<double>* out, int n, size_t factor_index,
               std::complex<double>* scratch) const;
  int n_;
  std::vector<int> factors_;
  std::vector<std::complex<double>> twiddle_;  // exp(-2 pi i k / n), k < n
};

}  // namespace ama
