#include "audio/fft.h"

#include <cmath>

namespace ama {

// Stockham autosort passes, decimation in frequency. A pass of radix r over
// sub-transforms of length r m at stride s reads x[q + s (p + t m)] for
// t < r, takes their r-point DFT b_u, and writes b_u w_(r m)^(p u) to
// y[q + s (r p + u)]; the next pass has m' = m / r', s' = r s, and after
// the last (m = 1) the result is in natural order. Re and im are kept in
// separate arrays so the q loop is plain strided arithmetic, the twiddles
// are read in order from per-pass tables, and radices 2-5 are written out.
// Before, a recursive decimation in time looked each twiddle up with an
// integer modulo and ran radix 5 as a 5 x 5 complex DFT: 23 us per
// 400-point transform, 85% of the log-mel's 34 ms per 30 s window on one
// Zen 5 core (`amanuensis kernels --kernel log_mel -t 1`). With this FFT
// (and log10 in float, mel.cpp) the window takes 6.6-10.8 ms there,
// against 27.9-42.3 for the old binary in the same alternated runs.

Fft::Fft(int n) : n_(n) {
  std::vector<int> factors;
  int rest = n;
  for (int r : {4, 2, 3, 5})
    while (rest % r == 0) {
      factors.push_back(r);
      rest /= r;
    }
  for (int p = 7; rest > 1; p += 2)
    while (rest % p == 0) {
      factors.push_back(p);
      rest /= p;
    }
  root_re_.resize(n);
  root_im_.resize(n);
  for (int k = 0; k < n; ++k) {
    const double a = -2.0 * M_PI * k / n;
    root_re_[k] = std::cos(a);
    root_im_[k] = std::sin(a);
  }
  int len = n, s = 1;
  for (int r : factors) {
    const int m = len / r;
    stages_.push_back({r, m, s, tw_re_.size()});
    // w_len^(p u) = root[(p u n / len) mod n]: p u < len, so the index is p u s (< n).
    for (int p = 0; p < m; ++p)
      for (int u = 0; u < r; ++u) {
        const size_t k = static_cast<size_t>(p) * u * s;
        tw_re_.push_back(root_re_[k]);
        tw_im_.push_back(root_im_[k]);
      }
    len = m;
    s *= r;
  }
}

namespace {

// The r-point forward DFT of (ar, ai) into (br, bi), w = exp(-2 pi i / r).
template <int R>
inline void butterfly(const double* ar, const double* ai, double* br, double* bi) {
  if constexpr (R == 2) {
    br[0] = ar[0] + ar[1], bi[0] = ai[0] + ai[1];
    br[1] = ar[0] - ar[1], bi[1] = ai[0] - ai[1];
  } else if constexpr (R == 3) {
    constexpr double s = 0.86602540378443864676;  // sin(2 pi / 3); cos is -1/2
    const double t1r = ar[1] + ar[2], t1i = ai[1] + ai[2];
    const double t2r = s * (ar[1] - ar[2]), t2i = s * (ai[1] - ai[2]);
    const double cr = ar[0] - 0.5 * t1r, ci = ai[0] - 0.5 * t1i;
    br[0] = ar[0] + t1r, bi[0] = ai[0] + t1i;
    br[1] = cr + t2i, bi[1] = ci - t2r;  // c - i t2
    br[2] = cr - t2i, bi[2] = ci + t2r;  // c + i t2
  } else if constexpr (R == 4) {
    const double sr = ar[0] + ar[2], si = ai[0] + ai[2], dr = ar[0] - ar[2], di = ai[0] - ai[2];
    const double tr = ar[1] + ar[3], ti = ai[1] + ai[3], er = ar[1] - ar[3], ei = ai[1] - ai[3];
    br[0] = sr + tr, bi[0] = si + ti;
    br[1] = dr + ei, bi[1] = di - er;  // d - i e
    br[2] = sr - tr, bi[2] = si - ti;
    br[3] = dr - ei, bi[3] = di + er;  // d + i e
  } else {
    static_assert(R == 5);
    constexpr double c1 = 0.30901699437494742410, c2 = -0.80901699437494742410;  // cos(2 pi / 5), cos(4 pi / 5)
    constexpr double s1 = 0.95105651629515357212, s2 = 0.58778525229247312917;   // sin(2 pi / 5), sin(4 pi / 5)
    const double t1r = ar[1] + ar[4], t1i = ai[1] + ai[4], t2r = ar[2] + ar[3], t2i = ai[2] + ai[3];
    const double t3r = ar[1] - ar[4], t3i = ai[1] - ai[4], t4r = ar[2] - ar[3], t4i = ai[2] - ai[3];
    const double aR = ar[0] + c1 * t1r + c2 * t2r, aI = ai[0] + c1 * t1i + c2 * t2i;
    const double bR = ar[0] + c2 * t1r + c1 * t2r, bI = ai[0] + c2 * t1i + c1 * t2i;
    const double cR = s1 * t3r + s2 * t4r, cI = s1 * t3i + s2 * t4i;
    const double dR = s2 * t3r - s1 * t4r, dI = s2 * t3i - s1 * t4i;
    br[0] = ar[0] + t1r + t2r, bi[0] = ai[0] + t1i + t2i;
    br[1] = aR + cI, bi[1] = aI - cR;  // a - i c
    br[4] = aR - cI, bi[4] = aI + cR;  // a + i c
    br[2] = bR + dI, bi[2] = bI - dR;  // b - i d
    br[3] = bR - dI, bi[3] = bI + dR;  // b + i d
  }
}

struct Pass {
  int m, s;
  const double *twr, *twi;
};

template <int R>
void pass(const Pass& st, const double* xr, const double* xi, double* yr, double* yi) {
  const int m = st.m, s = st.s;
  const size_t ms = static_cast<size_t>(m) * s;
  for (int p = 0; p < m; ++p) {
    const double* wr = st.twr + static_cast<size_t>(p) * R;
    const double* wi = st.twi + static_cast<size_t>(p) * R;
    const double* xr_p = xr + static_cast<size_t>(p) * s;
    const double* xi_p = xi + static_cast<size_t>(p) * s;
    double* yr_p = yr + static_cast<size_t>(R) * p * s;
    double* yi_p = yi + static_cast<size_t>(R) * p * s;
    for (int q = 0; q < s; ++q) {
      double ar[R], ai[R], br[R], bi[R];
      for (int t = 0; t < R; ++t) ar[t] = xr_p[q + t * ms], ai[t] = xi_p[q + t * ms];
      butterfly<R>(ar, ai, br, bi);
      yr_p[q] = br[0], yi_p[q] = bi[0];
      for (int u = 1; u < R; ++u) {
        yr_p[q + u * s] = br[u] * wr[u] - bi[u] * wi[u];
        yi_p[q + u * s] = br[u] * wi[u] + bi[u] * wr[u];
      }
    }
  }
}

// Any radix r by its plain DFT (roots: exp(-2 pi i k / n), whose k = j n / r
// is w_r^j).
void pass_any(int r, const Pass& st, const double* root_re, const double* root_im, int n, const double* xr,
              const double* xi, double* yr, double* yi) {
  const int m = st.m, s = st.s, step = n / r;
  const size_t ms = static_cast<size_t>(m) * s;
  std::vector<double> ar(r), ai(r);
  for (int p = 0; p < m; ++p)
    for (int q = 0; q < s; ++q) {
      for (int t = 0; t < r; ++t) {
        ar[t] = xr[q + static_cast<size_t>(p) * s + t * ms];
        ai[t] = xi[q + static_cast<size_t>(p) * s + t * ms];
      }
      for (int u = 0; u < r; ++u) {
        double sr = 0, si = 0;
        for (int t = 0; t < r; ++t) {
          const size_t k = static_cast<size_t>((t * u) % r) * step;
          sr += ar[t] * root_re[k] - ai[t] * root_im[k];
          si += ar[t] * root_im[k] + ai[t] * root_re[k];
        }
        const double wr = st.twr[static_cast<size_t>(p) * r + u], wi = st.twi[static_cast<size_t>(p) * r + u];
        const size_t o = q + s * (static_cast<size_t>(r) * p + u);
        yr[o] = sr * wr - si * wi;
        yi[o] = sr * wi + si * wr;
      }
    }
}

}  // namespace

void Fft::forward(const std::complex<double>* in, std::complex<double>* out) const {
  // Per-thread scratch: one Fft (inside a shared LogMel) serves several
  // threads at once (the pipeline computes the two halves of a window in parallel).
  thread_local std::vector<double> buf;
  const size_t n = static_cast<size_t>(n_);
  if (buf.size() < 4 * n) buf.resize(4 * n);
  double *xr = buf.data(), *xi = xr + n, *yr = xi + n, *yi = yr + n;
  for (size_t j = 0; j < n; ++j) xr[j] = in[j].real(), xi[j] = in[j].imag();
  for (const Stage& st : stages_) {
    const Pass ps{st.m, st.s, tw_re_.data() + st.tw, tw_im_.data() + st.tw};
    switch (st.r) {
      case 2: pass<2>(ps, xr, xi, yr, yi); break;
      case 3: pass<3>(ps, xr, xi, yr, yi); break;
      case 4: pass<4>(ps, xr, xi, yr, yi); break;
      case 5: pass<5>(ps, xr, xi, yr, yi); break;
      default: pass_any(st.r, ps, root_re_.data(), root_im_.data(), n_, xr, xi, yr, yi); break;
    }
    std::swap(xr, yr);
    std::swap(xi, yi);
  }
  for (size_t k = 0; k < n; ++k) out[k] = {xr[k], xi[k]};
}

}  // namespace ama
