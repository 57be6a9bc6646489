#include "reference_whisper.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>
#include <utility>

#include "model/ggml_file.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ama::test {

namespace {

#define REF_ALWAYS_INLINE inline __attribute__((always_inline))

// ---------------------------------------------------------------------------
// Threads: f(i) for i in [0, n), split into n_threads contiguous chunks; the
// calling thread takes the first chunk.
template <typename F>
void parallel_for(int n, int n_threads, F&& f) {
  n_threads = std::max(1, std::min(n_threads, n));
  auto chunk = [&](int t) {
    const int b = static_cast<int>(static_cast<long long>(n) * t / n_threads);
    const int e = static_cast<int>(static_cast<long long>(n) * (t + 1) / n_threads);
    for (int i = b; i < e; ++i) f(i);
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < n_threads; ++t) workers.emplace_back(chunk, t);
  chunk(0);
  for (auto& w : workers) w.join();
}

// ---------------------------------------------------------------------------
// GEMM. B is packed into panels of NR columns, [ceil(N/NR)][K][NR] (zero
// padded), and C is computed in MR x NR tiles whose accumulators stay in
// registers; the k loop is blocked by KC so a panel slice stays in L1, and
// rows by MC so the A block stays in L2. Each element of C is
// bias + sum over K blocks (in order) of that block's in-order sum, whatever
// the threads or the tile an element falls in.

constexpr int kKC = 256;  // k block
constexpr int kMC = 64;   // row block
constexpr int kNC = 256;  // column block (a multiple of every NR)

// Micro-kernels: acc[MR][NR] = sum over k < kc of a[r][k] * bp[k][c], in k order.
// The portable one uses GCC/Clang vector extensions (SSE2 on x86-64); the
// AVX2 one uses FMA, which rounds once per step instead of twice.
typedef double v2d __attribute__((vector_size(16)));

struct KernelGeneric {
  static constexpr int MR = 4, NR = 4;
  static REF_ALWAYS_INLINE void run(int kc, const double* const* a, const double* bp, double (&acc)[MR][NR]) {
    v2d c[MR][2] = {};
    for (int k = 0; k < kc; ++k) {
      v2d b0, b1;
      __builtin_memcpy(&b0, bp + k * NR, sizeof b0);
      __builtin_memcpy(&b1, bp + k * NR + 2, sizeof b1);
      for (int r = 0; r < MR; ++r) {
        const double av = a[r][k];
        const v2d va = {av, av};
        c[r][0] += va * b0;
        c[r][1] += va * b1;
      }
    }
    for (int r = 0; r < MR; ++r)
      for (int x = 0; x < NR; ++x) acc[r][x] = c[r][x / 2][x % 2];
  }
};

template <typename Kernel>
REF_ALWAYS_INLINE void gemm_rows(int m0, int m1, int N, int K, const double* A, int lda, const double* bp,
                                 const double* bias, double* C, int ldc) {
  constexpr int MR = Kernel::MR, NR = Kernel::NR;
  const int np = (N + NR - 1) / NR;
  constexpr int kPanelsPerBlock = kNC / NR;
  for (int jc = 0; jc < np; jc += kPanelsPerBlock) {
    const int jp_end = std::min(np, jc + kPanelsPerBlock);
    for (int k0 = 0; k0 < K; k0 += kKC) {
      const int kc = std::min(kKC, K - k0);
      for (int i0 = m0; i0 < m1; i0 += kMC) {
        const int i_end = std::min(m1, i0 + kMC);
        for (int jp = jc; jp < jp_end; ++jp) {
          const double* b = bp + (static_cast<size_t>(jp) * K + k0) * NR;
          const int j0 = jp * NR, nr = std::min(NR, N - j0);
          for (int i = i0; i < i_end; i += MR) {
            const int mr = std::min(MR, i_end - i);
            const double* a[MR];
            for (int r = 0; r < MR; ++r) a[r] = A + static_cast<size_t>(i + std::min(r, mr - 1)) * lda + k0;
            double acc[MR][NR];
            Kernel::run(kc, a, b, acc);
            for (int r = 0; r < mr; ++r) {
              double* c = C + static_cast<size_t>(i + r) * ldc + j0;
              if (k0 == 0) {
                for (int x = 0; x < nr; ++x) c[x] = (bias ? bias[j0 + x] : 0.0) + acc[r][x];
              } else {
                for (int x = 0; x < nr; ++x) c[x] += acc[r][x];
              }
            }
          }
        }
      }
    }
  }
}

using GemmRowsFn = void (*)(int, int, int, int, const double*, int, const double*, const double*, double*, int);

void gemm_rows_generic(int m0, int m1, int N, int K, const double* A, int lda, const double* bp, const double* bias,
                       double* C, int ldc) {
  gemm_rows<KernelGeneric>(m0, m1, N, K, A, lda, bp, bias, C, ldc);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define REF_HAVE_AVX2_PATH 1
struct KernelAvx2 {
  static constexpr int MR = 6, NR = 8;
  __attribute__((target("avx2,fma"))) static inline void run(int kc, const double* const* a,
                                                                         const double* bp, double (&acc)[MR][NR]) {
    __m256d c[MR][2];
    for (int r = 0; r < MR; ++r) c[r][0] = c[r][1] = _mm256_setzero_pd();
    for (int k = 0; k < kc; ++k) {
      const __m256d b0 = _mm256_loadu_pd(bp + k * NR), b1 = _mm256_loadu_pd(bp + k * NR + 4);
      for (int r = 0; r < MR; ++r) {
        const __m256d va = _mm256_broadcast_sd(a[r] + k);
        c[r][0] = _mm256_fmadd_pd(va, b0, c[r][0]);
        c[r][1] = _mm256_fmadd_pd(va, b1, c[r][1]);
      }
    }
    for (int r = 0; r < MR; ++r) {
      _mm256_storeu_pd(acc[r], c[r][0]);
      _mm256_storeu_pd(acc[r] + 4, c[r][1]);
    }
  }
};

__attribute__((target("avx2,fma"))) void gemm_rows_avx2(int m0, int m1, int N, int K, const double* A, int lda,
                                                        const double* bp, const double* bias, double* C, int ldc) {
  gemm_rows<KernelAvx2>(m0, m1, N, K, A, lda, bp, bias, C, ldc);
}
#endif

struct GemmImpl {
  GemmRowsFn fn;
  int nr;
};

const GemmImpl& gemm_impl() {
  static const GemmImpl impl = [] {
#ifdef REF_HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GemmImpl{&gemm_rows_avx2, KernelAvx2::NR};
#endif
    return GemmImpl{&gemm_rows_generic, KernelGeneric::NR};
  }();
  return impl;
}

double dot(const double* a, const double* b, int K) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int k = 0;
  for (; k + 4 <= K; k += 4) {
    s0 += a[k] * b[k];
    s1 += a[k + 1] * b[k + 1];
    s2 += a[k + 2] * b[k + 2];
    s3 += a[k + 3] * b[k + 3];
  }
  for (; k < K; ++k) s0 += a[k] * b[k];
  return (s0 + s1) + (s2 + s3);
}

// ---------------------------------------------------------------------------
// Elementwise pieces.

double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

void gelu_inplace(std::vector<double>& v, int n_threads) {
  const int rows = 64;
  const size_t n = v.size(), per = (n + rows - 1) / rows;
  parallel_for(rows, n_threads, [&](int r) {
    for (size_t i = r * per; i < std::min(n, (r + 1) * per); ++i) v[i] = gelu(v[i]);
  });
}

// y[t] = (x[t] - mean) / sqrt(var + 1e-5) * g + b per row, population variance.
void layer_norm(const double* x, int T, int S, const double* g, const double* b, double* y) {
  for (int t = 0; t < T; ++t) {
    const double* xr = x + static_cast<size_t>(t) * S;
    double* yr = y + static_cast<size_t>(t) * S;
    double mean = 0;
    for (int i = 0; i < S; ++i) mean += xr[i];
    mean /= S;
    double var = 0;
    for (int i = 0; i < S; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= S;
    const double inv = 1.0 / std::sqrt(var + 1e-5);
    for (int i = 0; i < S; ++i) yr[i] = (xr[i] - mean) * inv * g[i] + b[i];
  }
}

void softmax_row(double* x, int n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  for (int i = 0; i < n; ++i) x[i] /= sum;
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "reference_whisper: %s\n", msg.c_str());
  std::abort();
}

// Every tensor the forward pass reads, with its PyTorch shape. Written out
// here from openai/whisper's module names rather than taken from the engine.
std::vector<std::pair<std::string, std::vector<int>>> required_tensors(const HParams& hp) {
  std::vector<std::pair<std::string, std::vector<int>>> r;
  const int a = hp.n_audio_state, s = hp.n_text_state;
  auto attn = [&](const std::string& p, int n) {
    r.push_back({p + ".query.weight", {n, n}});
    r.push_back({p + ".query.bias", {n}});
    r.push_back({p + ".key.weight", {n, n}});
    r.push_back({p + ".value.weight", {n, n}});
    r.push_back({p + ".value.bias", {n}});
    r.push_back({p + ".out.weight", {n, n}});
    r.push_back({p + ".out.bias", {n}});
  };
  auto ln = [&](const std::string& p, int n) {
    r.push_back({p + ".weight", {n}});
    r.push_back({p + ".bias", {n}});
  };
  auto mlp = [&](const std::string& p, int n) {
    r.push_back({p + ".mlp.0.weight", {4 * n, n}});
    r.push_back({p + ".mlp.0.bias", {4 * n}});
    r.push_back({p + ".mlp.2.weight", {n, 4 * n}});
    r.push_back({p + ".mlp.2.bias", {n}});
  };
  r.push_back({"encoder.conv1.weight", {a, hp.n_mels, 3}});
  r.push_back({"encoder.conv1.bias", {a, 1}});
  r.push_back({"encoder.conv2.weight", {a, a, 3}});
  r.push_back({"encoder.conv2.bias", {a, 1}});
  r.push_back({"encoder.positional_embedding", {hp.n_audio_ctx, a}});
  for (int l = 0; l < hp.n_audio_layer; ++l) {
    const std::string p = "encoder.blocks." + std::to_string(l);
    attn(p + ".attn", a);
    ln(p + ".attn_ln", a);
    mlp(p, a);
    ln(p + ".mlp_ln", a);
  }
  ln("encoder.ln_post", a);
  r.push_back({"decoder.token_embedding.weight", {hp.n_vocab, s}});
  r.push_back({"decoder.positional_embedding", {hp.n_text_ctx, s}});
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const std::string p = "decoder.blocks." + std::to_string(l);
    attn(p + ".attn", s);
    ln(p + ".attn_ln", s);
    attn(p + ".cross_attn", s);
    ln(p + ".cross_attn_ln", s);
    mlp(p, s);
    ln(p + ".mlp_ln", s);
  }
  ln("decoder.ln", s);
  return r;
}

std::string shape_str(const std::vector<int>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

constexpr int kThreads = 2;

// ---------------------------------------------------------------------------
// Model pieces.

// y[T][n] = x[T][k] W^T + b for the Linear layer named p ([n][k] weight).
std::vector<double> linear(const RefWhisper& m, const std::string& p, const double* x, int T, int n, int k,
                           bool has_bias = true) {
  std::vector<double> y(static_cast<size_t>(T) * n);
  ref_gemm(T, n, k, x, k, m.get(p + ".weight", {n, k}), k, true, has_bias ? m.get(p + ".bias", {n}) : nullptr,
           y.data(), n, kThreads);
  return y;
}

std::vector<double> norm(const RefWhisper& m, const std::string& p, const std::vector<double>& x, int T, int S) {
  std::vector<double> y(x.size());
  layer_norm(x.data(), T, S, m.get(p + ".weight", {S}), m.get(p + ".bias", {S}), y.data());
  return y;
}

// openai MultiHeadAttention: q from xq [Tq][S]; k, v from xkv [Tk][S].
// Returns out(softmax((q d^-1/4)(k d^-1/4)^T + mask) v), [Tq][S].
std::vector<double> attention(const RefWhisper& m, const std::string& p, const std::vector<double>& xq, int Tq,
                              const std::vector<double>& xkv, int Tk, int S, int n_head, bool causal) {
  std::vector<double> q = linear(m, p + ".query", xq.data(), Tq, S, S);
  std::vector<double> k = linear(m, p + ".key", xkv.data(), Tk, S, S, false);
  std::vector<double> v = linear(m, p + ".value", xkv.data(), Tk, S, S);
  const int d = S / n_head;
  const double scale = std::pow(static_cast<double>(d), -0.25);
  for (double& e : q) e *= scale;
  for (double& e : k) e *= scale;
  std::vector<double> o(static_cast<size_t>(Tq) * S);
  // Heads split across the threads; each head's products on one thread.
  parallel_for(n_head, kThreads, [&](int h) {
    std::vector<double> w(static_cast<size_t>(Tq) * Tk);
    ref_gemm(Tq, Tk, d, q.data() + h * d, S, k.data() + h * d, S, true, nullptr, w.data(), Tk, 1);
    for (int i = 0; i < Tq; ++i) {
      double* row = w.data() + static_cast<size_t>(i) * Tk;
      if (causal)
        for (int j = i + 1; j < Tk; ++j) row[j] = -std::numeric_limits<double>::infinity();
      softmax_row(row, Tk);
    }
    ref_gemm(Tq, d, Tk, w.data(), Tk, v.data() + h * d, S, false, nullptr, o.data() + h * d, S, 1);
  });
  return linear(m, p + ".out", o.data(), Tq, S, S);
}

// x += mlp.2(gelu(mlp.0(mlp_ln(x))))
void mlp_residual(const RefWhisper& m, const std::string& p, std::vector<double>& x, int T, int S) {
  std::vector<double> h = norm(m, p + ".mlp_ln", x, T, S);
  std::vector<double> u = linear(m, p + ".mlp.0", h.data(), T, 4 * S, S);
  gelu_inplace(u, kThreads);
  std::vector<double> y = linear(m, p + ".mlp.2", u.data(), T, S, 4 * S);
  for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
}

}  // namespace

void ref_gemm(int M, int N, int K, const double* A, int lda, const double* B, int ldb, bool b_nk, const double* bias,
              double* C, int ldc, int n_threads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[static_cast<size_t>(i) * ldc + j] = bias ? bias[j] : 0.0;
    return;
  }
  const double work = static_cast<double>(M) * N * K;
  if (work < 2e5) n_threads = 1;
  if (b_nk && M <= 16) {
    // Few rows (the decoder): dot products straight from B, split over columns.
    const int blocks = 64;
    parallel_for(blocks, n_threads, [&](int blk) {
      const int j0 = static_cast<int>(static_cast<long long>(N) * blk / blocks);
      const int j1 = static_cast<int>(static_cast<long long>(N) * (blk + 1) / blocks);
      for (int j = j0; j < j1; ++j)
        for (int i = 0; i < M; ++i)
          C[static_cast<size_t>(i) * ldc + j] =
              (bias ? bias[j] : 0.0) + dot(A + static_cast<size_t>(i) * lda, B + static_cast<size_t>(j) * ldb, K);
    });
    return;
  }
  const GemmImpl& impl = gemm_impl();
  const int NR = impl.nr, np = (N + NR - 1) / NR;
  std::vector<double> bp(static_cast<size_t>(np) * K * NR);
  for (int p = 0; p < np; ++p)
    for (int c = 0; c < NR; ++c) {
      const int j = p * NR + c;
      double* out = bp.data() + static_cast<size_t>(p) * K * NR + c;
      if (j >= N) {
        for (int k = 0; k < K; ++k) out[static_cast<size_t>(k) * NR] = 0.0;
      } else if (b_nk) {
        const double* src = B + static_cast<size_t>(j) * ldb;
        for (int k = 0; k < K; ++k) out[static_cast<size_t>(k) * NR] = src[k];
      } else {
        for (int k = 0; k < K; ++k) out[static_cast<size_t>(k) * NR] = B[static_cast<size_t>(k) * ldb + j];
      }
    }
  if (M < 32) n_threads = 1;
  n_threads = std::max(1, n_threads);
  parallel_for(n_threads, n_threads, [&](int t) {
    const int m0 = static_cast<int>(static_cast<long long>(M) * t / n_threads);
    const int m1 = static_cast<int>(static_cast<long long>(M) * (t + 1) / n_threads);
    if (m1 > m0) impl.fn(m0, m1, N, K, A, lda, bp.data(), bias, C, ldc);
  });
}

Result<RefWhisper> RefWhisper::load(const std::string& path) {
  auto reader = GgmlReader::open(path);
  if (!reader) return reader.error();
  auto header = reader->read_header();
  if (!header) return header.error();
  RefWhisper m;
  m.hp = header->hp;
  std::vector<float> buf;
  for (;;) {
    auto rec = reader->next_tensor();
    if (!rec) return rec.error();
    if (rec->name.empty()) break;
    buf.resize(rec->n_elements);
    AMA_TRY(reader->read_tensor_data(*rec, buf.data()));
    Tensor t;
    t.shape = rec->shape;
    t.data.assign(buf.begin(), buf.end());
    m.tensors[rec->name] = std::move(t);
  }
  for (const auto& [name, shape] : required_tensors(m.hp)) {
    auto it = m.tensors.find(name);
    if (it == m.tensors.end()) return make_error(path + ": tensor " + name + " is missing");
    if (it->second.shape != shape)
      return make_error(path + ": tensor " + name + " has shape " + shape_str(it->second.shape) + ", expected " +
                        shape_str(shape));
  }
  return m;
}

const double* RefWhisper::get(const std::string& name, const std::vector<int>& shape) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) die("tensor " + name + " is missing");
  if (it->second.shape != shape)
    die("tensor " + name + " has shape " + shape_str(it->second.shape) + ", expected " + shape_str(shape));
  return it->second.data.data();
}

std::vector<double> RefWhisper::encode(const float* mel, int ld) const {
  const int nm = hp.n_mels, S = hp.n_audio_state, T = hp.n_audio_ctx, T1 = 2 * T;
  if (ld < T1) die("mel has " + std::to_string(ld) + " columns, the window needs " + std::to_string(T1));

  // conv1 (kernel 3, padding 1) as a GEMM over windows: a1[t][c*3+k] = mel[c][t+k-1].
  std::vector<double> a1(static_cast<size_t>(T1) * nm * 3);
  for (int t = 0; t < T1; ++t)
    for (int c = 0; c < nm; ++c)
      for (int k = 0; k < 3; ++k) {
        const int src = t + k - 1;
        a1[(static_cast<size_t>(t) * nm + c) * 3 + k] =
            src >= 0 && src < T1 ? static_cast<double>(mel[static_cast<size_t>(c) * ld + src]) : 0.0;
      }
  std::vector<double> h1(static_cast<size_t>(T1) * S);
  ref_gemm(T1, S, nm * 3, a1.data(), nm * 3, get("encoder.conv1.weight", {S, nm, 3}), nm * 3, true,
           get("encoder.conv1.bias", {S, 1}), h1.data(), S, kThreads);
  gelu_inplace(h1, kThreads);

  // conv2 (kernel 3, stride 2, padding 1): a2[t][c*3+k] = h1[2t+k-1][c].
  std::vector<double> a2(static_cast<size_t>(T) * S * 3);
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < 3; ++k) {
      const int src = 2 * t + k - 1;
      for (int c = 0; c < S; ++c)
        a2[(static_cast<size_t>(t) * S + c) * 3 + k] = src >= 0 && src < T1 ? h1[static_cast<size_t>(src) * S + c] : 0.0;
    }
  std::vector<double> x(static_cast<size_t>(T) * S);
  ref_gemm(T, S, S * 3, a2.data(), S * 3, get("encoder.conv2.weight", {S, S, 3}), S * 3, true,
           get("encoder.conv2.bias", {S, 1}), x.data(), S, kThreads);
  gelu_inplace(x, kThreads);
  const double* pos = get("encoder.positional_embedding", {T, S});
  for (size_t i = 0; i < x.size(); ++i) x[i] += pos[i];

  for (int l = 0; l < hp.n_audio_layer; ++l) {
    const std::string p = "encoder.blocks." + std::to_string(l);
    std::vector<double> h = norm(*this, p + ".attn_ln", x, T, S);
    std::vector<double> a = attention(*this, p + ".attn", h, T, h, T, S, hp.n_audio_head, false);
    for (size_t i = 0; i < x.size(); ++i) x[i] += a[i];
    mlp_residual(*this, p, x, T, S);
  }
  return norm(*this, "encoder.ln_post", x, T, S);
}

std::vector<double> RefWhisper::logits(const std::vector<double>& enc, const std::vector<int>& tokens) const {
  const int n = static_cast<int>(tokens.size()), S = hp.n_text_state, V = hp.n_vocab, Ta = hp.n_audio_ctx;
  if (enc.size() != static_cast<size_t>(Ta) * hp.n_audio_state) die("encoder output has the wrong size");
  if (n < 1 || n > hp.n_text_ctx) die("token count outside [1, n_text_ctx]");
  const double* emb = get("decoder.token_embedding.weight", {V, S});
  const double* pos = get("decoder.positional_embedding", {hp.n_text_ctx, S});
  std::vector<double> x(static_cast<size_t>(n) * S);
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) die("token outside the vocabulary");
    for (int c = 0; c < S; ++c)
      x[static_cast<size_t>(i) * S + c] = emb[static_cast<size_t>(tokens[i]) * S + c] + pos[static_cast<size_t>(i) * S + c];
  }
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const std::string p = "decoder.blocks." + std::to_string(l);
    std::vector<double> h = norm(*this, p + ".attn_ln", x, n, S);
    std::vector<double> a = attention(*this, p + ".attn", h, n, h, n, S, hp.n_text_head, true);
    for (size_t i = 0; i < x.size(); ++i) x[i] += a[i];
    h = norm(*this, p + ".cross_attn_ln", x, n, S);
    a = attention(*this, p + ".cross_attn", h, n, enc, Ta, S, hp.n_text_head, false);
    for (size_t i = 0; i < x.size(); ++i) x[i] += a[i];
    mlp_residual(*this, p, x, n, S);
  }
  std::vector<double> h = norm(*this, "decoder.ln", x, n, S);
  std::vector<double> out(static_cast<size_t>(n) * V);
  ref_gemm(n, V, S, h.data(), S, emb, S, true, nullptr, out.data(), V, kThreads);
  return out;
}

}  // namespace ama::test
