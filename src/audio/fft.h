// A mixed-radix complex FFT for the small sizes of audio front ends
// (Whisper: 400 = 4^2 * 5^2, not a power of two). Double precision, because
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
  // One Stockham pass: sub-transforms of length r m at stride s (r m s = n).
  struct Stage {
    int r, m, s;
    size_t tw;  // offset of its twiddles w_(r m)^(p u), p < m, u < r, p-major
  };
  int n_;
  std::vector<Stage> stages_;
  std::vector<double> tw_re_, tw_im_;
  std::vector<double> root_re_, root_im_;  // exp(-2 pi i k / n), k < n: the plain DFT's roots for radices >= 7
};

}  // namespace ama
