#include "audio/vad.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "backend/cpu/cpu_backend.h"
#include "core/thread_pool.h"
#include "model/safetensors.h"

namespace ama {

// ---------------------------------------------------------------------------
// Cost per 512-sample chunk, in multiply-adds, and how it is spent:
//   STFT (258 x 256 x 4 frames)        264 k  -> a 256-point real FFT per frame (below)
//   conv1 (128 x 129 x 3 x 4 positions) 198 k  -> 165 k (taps that hit the padding skipped)
//   conv2 49 k -> 41 k, conv3 12 k -> 8 k, conv4 25 k -> 8 k (same)
//   LSTM W_ih x 65 k, W_hh h 65 k
// Everything but W_hh h is independent of the recurrent state, so a stream
// runs it for up to kBatch chunks at a time, as an FFT and GEMMs split over
// threads; W_hh h and the gates run chunk by chunk on one thread, overlapped
// with the next batch's features (VadStream::State below). One Zen 4 core
// spends per chunk ~1.2 us on the FFT, ~5.1 us in GEMMs (110 GFLOP/s, the
// core's f32 peak), ~2.7 us on the recurrence and ~0.5 us elsewhere: 9.5 us,
// 180 ms for 10 minutes of audio on one thread, ~95 ms on two.
// ---------------------------------------------------------------------------

namespace {

// Chunks per batch. 10 minutes at 2 threads: 96 and 192 take the same time,
// 384 ~10% more (its 4.8 MB of scratch no longer fits the 2 MB L2).
constexpr int kBatch = 192;
constexpr int kFrames = 4;   // STFT frames per chunk: (576 + 64 - 256) / 128 + 1
constexpr int kWin = kVadContext + kVadChunk;  // 576 samples per chunk with its context
constexpr int kBins = 129;   // STFT bins (n_fft 256)
constexpr int kHidden = 128;
constexpr int kGates = 4 * kHidden;
constexpr int kGateBlock = 64;  // W_hh h: 64 outputs per register-blocked pass
// Beyond 3 threads the recurrent part alone is the bottleneck: features cost
// ~2.5x the recurrence per chunk (6.8 against 2.7 us on one Zen 4 core), so
// 2 threads of features keep pace with it; a 4th leaves headroom.
constexpr int kMaxThreads = 4;

struct TensorSpec {
  const char* name;
  std::vector<int64_t> shape;
};
const TensorSpec kTensors[] = {
    {"stft_conv.weight", {258, 1, 256}},     {"conv1.weight", {128, 129, 3}},  {"conv1.bias", {128}},
    {"conv2.weight", {64, 128, 3}},          {"conv2.bias", {64}},             {"conv3.weight", {64, 64, 3}},
    {"conv3.bias", {64}},                    {"conv4.weight", {128, 64, 3}},   {"conv4.bias", {128}},
    {"lstm_cell.weight_ih", {512, 128}},     {"lstm_cell.weight_hh", {512, 128}}, {"lstm_cell.bias_ih", {512}},
    {"lstm_cell.bias_hh", {512}},            {"final_conv.weight", {1, 128, 1}}, {"final_conv.bias", {1}},
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Torch Conv1d weight [out][in][3] -> GEMM rows over a window of `n_taps`
// consecutive input positions starting at tap `tap0`, laid out [position][in]:
// row o, column p * in + c = W[o][c][tap0 + p].
std::vector<float> conv_taps(const std::vector<float>& w, int out, int in, int tap0, int n_taps) {
  std::vector<float> r(static_cast<size_t>(out) * n_taps * in);
  for (int o = 0; o < out; ++o)
    for (int p = 0; p < n_taps; ++p)
      for (int c = 0; c < in; ++c)
        r[(static_cast<size_t>(o) * n_taps + p) * in + c] = w[(static_cast<size_t>(o) * in + c) * 3 + tap0 + p];
  return r;
}

void relu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// exp(x) for float, branch-free so that loops over it vectorize: x = n ln2 + r
// with |r| <= ln2 / 2, exp(r) by its Taylor series to r^7 (truncation error
// (ln2/2)^8 / 8! = 5e-9 relative), times 2^n built in the exponent bits.
// Measured: within 1.2 ulp of exp over [-87, 88]; sigmoid_vec within 9e-8
// and tanh_vec within 1.8e-7 (absolute) over [-30, 30].
inline float exp_vec(float x) {
  const float xc = std::min(std::max(x, -87.3f), 88.3f);
  const float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23 trick)
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;    // ln2 split in two for an exact n ln2
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(e);
}
inline float sigmoid_vec(float x) { return 1.0f / (1.0f + exp_vec(-x)); }
// tanh via sigmoid: absolute error ~1e-7 near 0 (the cancellation in 2s - 1);
// the 1e-4 bar on probabilities needs absolute accuracy, not relative.
inline float tanh_vec(float x) { return 2.0f / (1.0f + exp_vec(-2.0f * x)) - 1.0f; }

// One LSTM step and the output head, for one chunk. gx: W_ih x + b_ih + b_hh
// [512]; whh: W_hh in blocks [512 / 64][128][64] (block b, input k, output
// 64 b + j), so that each pass keeps 64 running sums in registers while W
// streams through once (256 KB from L2 per chunk). Each gate's sum runs over
// k in order, whatever the ISA. Cloned per ISA (chosen by the loader from
// cpuid; AMANUENSIS_ISA does not reach it): this loop is the part that cannot
// be batched, 65 k multiply-adds per chunk. On a Zen 4 core a step takes
// 2.8 us: 0.36 for the gates, the rest for W_hh h whatever the block size
// (32 to 128 outputs per pass measured the same), which is the time W_hh's
// 256 KB take to come from L2 at 32 B per cycle: the bound, not the FMAs.
__attribute__((target_clones("avx512f", "avx2", "default"))) float lstm_step(const float* gx, const float* whh,
                                                                               const float* w_out, float b_out,
                                                                               float* h, float* c) {
  alignas(64) float g[kGates];
  for (int b = 0; b < kGates / kGateBlock; ++b) {
    alignas(64) float acc[kGateBlock];
    for (int j = 0; j < kGateBlock; ++j) acc[j] = gx[b * kGateBlock + j];
    const float* w = whh + static_cast<size_t>(b) * kHidden * kGateBlock;
    for (int k = 0; k < kHidden; ++k) {
      const float hk = h[k];
      for (int j = 0; j < kGateBlock; ++j) acc[j] += w[k * kGateBlock + j] * hk;
    }
    for (int j = 0; j < kGateBlock; ++j) g[b * kGateBlock + j] = acc[j];
  }
  // Gates in PyTorch's order i, f, g, o.
  alignas(64) float hr[kHidden];
  for (int j = 0; j < kHidden; ++j) {
    const float ig = sigmoid_vec(g[j]);
    const float fg = sigmoid_vec(g[kHidden + j]);
    const float gg = tanh_vec(g[2 * kHidden + j]);
    const float og = sigmoid_vec(g[3 * kHidden + j]);
    c[j] = fg * c[j] + ig * gg;
    h[j] = og * tanh_vec(c[j]);
    hr[j] = h[j] > 0.0f ? h[j] : 0.0f;
  }
  // final_conv over ReLU(h): 16 partial sums in a fixed order.
  float part[16] = {};
  for (int j = 0; j < kHidden; j += 16)
    for (int l = 0; l < 16; ++l) part[l] += w_out[j + l] * hr[j + l];
  float s = 0.0f;
  for (int l = 0; l < 16; ++l) s += part[l];
  return sigmoid_vec(s + b_out);
}

}  // namespace

// ---------------------------------------------------------------------------
// The STFT. stft_conv's basis is, in the real file, the periodic-Hann
// windowed DFT: rows k < 129 are w[n] cos(2 pi k n / 256), rows 129 + k are
// -w[n] sin(2 pi k n / 256), w[n] = 0.5 - 0.5 cos(2 pi n / 256); they agree
// with that formula to 7.7e-8 (f32 rounding). When the stored basis matches
// it to kDftTolerance, the magnitudes come from a 256-point real FFT of the
// windowed frame (a 128-point complex FFT plus the split step), 16 frames at
// a time in SIMD lanes: about 6 k flops per frame instead of the GEMM's 132 k,
// with the same f32 rounding level (log2(256) roundings per output against
// 256 in the product). Any other basis runs as a GEMM on the stored weights.
// ---------------------------------------------------------------------------
namespace {

constexpr double kDftTolerance = 2.4e-7;  // 2 ulp at 1.0; every basis entry is at most 1 in magnitude
constexpr int kLanes = 16;                // frames per FFT pass

struct FftTables {
  alignas(64) float window[256];
  float tw_re[64], tw_im[64];      // exp(-2 pi i j / 128)
  float post_re[129], post_im[129];  // exp(-2 pi i k / 256)
  uint8_t bitrev[128];             // 7-bit reversal
};

FftTables make_fft_tables() {
  FftTables t{};
  const double pi = 3.14159265358979323846;
  for (int n = 0; n < 256; ++n) t.window[n] = static_cast<float>(0.5 - 0.5 * std::cos(2 * pi * n / 256));
  for (int j = 0; j < 64; ++j) {
    t.tw_re[j] = static_cast<float>(std::cos(2 * pi * j / 128));
    t.tw_im[j] = static_cast<float>(-std::sin(2 * pi * j / 128));
  }
  for (int k = 0; k <= 128; ++k) {
    t.post_re[k] = static_cast<float>(std::cos(2 * pi * k / 256));
    t.post_im[k] = static_cast<float>(-std::sin(2 * pi * k / 256));
  }
  for (int m = 0; m < 128; ++m) {
    int r = 0;
    for (int b = 0; b < 7; ++b) r |= ((m >> b) & 1) << (6 - b);
    t.bitrev[m] = static_cast<uint8_t>(r);
  }
  return t;
}

// sqrt, 4 at a time. std::sqrt loops do not vectorize: without
// -fno-math-errno (a global flag that GCC 12 will not take per function)
// each call keeps a branch to libm for errno. sqrtps is IEEE-exact, like sqrtss.
inline void sqrt_inplace(float* x, int n) {
  int i = 0;
#if defined(__SSE2__)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

// |STFT| of 16 frames: src[l] points at frame l's 256 samples, dst[l] gets
// its 129 magnitudes. Each frame lives in one SIMD lane, so every step below
// is a loop over the 16 lanes. Real input x of 256 packed as the complex
// z[m] = y[2m] + i y[2m + 1] (y = window * x); Z = FFT128(z) (iterative
// radix-2, bit-reversed input); then with E = (Z[k] + conj Z[128 - k]) / 2
// and O = (Z[k] - conj Z[128 - k]) / 2i, X[k] = E + exp(-2 pi i k / 256) O.
__attribute__((target_clones("avx512f", "avx2", "default"))) void stft_magnitudes16(
    const float* const* src, float* const* dst, const FftTables& t) {
  alignas(64) float zr[128][kLanes], zi[128][kLanes];
  for (int m = 0; m < 128; ++m) {
    const int d = t.bitrev[m];
    const float w0 = t.window[2 * m], w1 = t.window[2 * m + 1];
    for (int l = 0; l < kLanes; ++l) {
      zr[d][l] = src[l][2 * m] * w0;
      zi[d][l] = src[l][2 * m + 1] * w1;
    }
  }
  for (int half = 1; half < 128; half *= 2) {
    const int step = 64 / half;
    for (int j0 = 0; j0 < 128; j0 += 2 * half)
      for (int j = 0; j < half; ++j) {
        const float wr = t.tw_re[j * step], wi = t.tw_im[j * step];
        float* ar = zr[j0 + j];
        float* ai = zi[j0 + j];
        float* br = zr[j0 + j + half];
        float* bi = zi[j0 + j + half];
        for (int l = 0; l < kLanes; ++l) {
          const float xr = br[l] * wr - bi[l] * wi;
          const float xi = br[l] * wi + bi[l] * wr;
          br[l] = ar[l] - xr;
          bi[l] = ai[l] - xi;
          ar[l] += xr;
          ai[l] += xi;
        }
      }
  }
  alignas(64) float mag[kLanes];
  for (int k = 0; k <= 128; ++k) {
    const float* pr = zr[k & 127];
    const float* pi = zi[k & 127];
    const float* qr = zr[(128 - k) & 127];
    const float* qi = zi[(128 - k) & 127];
    const float cr = t.post_re[k], ci = t.post_im[k];
    for (int l = 0; l < kLanes; ++l) {
      const float er = 0.5f * (pr[l] + qr[l]), ei = 0.5f * (pi[l] - qi[l]);
      const float or_ = 0.5f * (pi[l] + qi[l]), oi = -0.5f * (pr[l] - qr[l]);
      const float xr = er + (cr * or_ - ci * oi);
      const float xi = ei + (cr * oi + ci * or_);
      mag[l] = xr * xr + xi * xi;
    }
    sqrt_inplace(mag, kLanes);
    for (int l = 0; l < kLanes; ++l) dst[l][k] = mag[l];
  }
}

}  // namespace

namespace detail {

struct VadNet {
  // A one-thread backend: each pipeline task (below) runs its GEMM rows on
  // its own thread, and a one-thread CpuBackend runs linear() inline, so
  // tasks call it concurrently without taking turns.
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ThreadPool> pool;  // the pipeline's tasks; shared by streams, which take turns
  bool fft = false;                     // the STFT by FFT (else the GEMM on the stored basis)
  FftTables tables;
  std::unique_ptr<PackedMatrix> stft;  // [258][256], GEMM path
  std::unique_ptr<PackedMatrix> c1_all, c1_12, c1_01;  // conv1 taps {0,1,2}, {1,2}, {0,1}
  std::unique_ptr<PackedMatrix> c2_all, c2_12;
  std::unique_ptr<PackedMatrix> c3_12, c4_1;
  std::unique_ptr<PackedMatrix> w_ih;
  std::vector<float> b1, b2, b3, b4, b_gates;  // b_gates = b_ih + b_hh
  std::vector<float> whh;                      // blocked, see lstm_step
  std::vector<float> w_out;
  float b_out = 0.0f;
};

}  // namespace detail

using detail::VadNet;

Result<SileroVad> SileroVad::load(const std::string& path, const VadLoadOptions& options) {
  auto file = SafetensorsFile::open(path);
  if (!file) return file.error();
  std::map<std::string, std::vector<float>> t;
  for (const TensorSpec& spec : kTensors) {
    const StTensorInfo* info = file->find(spec.name);
    if (!info) return make_error(path + ": not a Silero VAD v5 16 kHz file: tensor '" + spec.name + "' is missing");
    if (info->shape != spec.shape)
      return make_error(path + ": tensor '" + spec.name + "' has shape " + shape_str(info->shape) + ", expected " +
                        shape_str(spec.shape));
    auto v = file->read_f32(spec.name);
    if (!v) return v.error();
    for (float x : *v)
      if (!std::isfinite(x)) return make_error(path + ": tensor '" + spec.name + "' holds a non-finite value");
    t[spec.name] = std::move(v.value());
  }
  if (file->tensors().size() != std::size(kTensors)) {
    for (const StTensorInfo& info : file->tensors()) {
      bool known = false;
      for (const TensorSpec& spec : kTensors) known = known || info.name == spec.name;
      if (!known) return make_error(path + ": unexpected tensor '" + info.name + "' (not a Silero VAD v5 16 kHz file?)");
    }
  }

  if (options.n_threads < 0 || options.n_threads > 256)
    return make_error("VAD thread count " + std::to_string(options.n_threads) + " is out of range [0, 256]");
  auto net = std::make_shared<VadNet>();
  CpuBackendOptions bo;
  bo.compute = ComputeType::f32;
  bo.n_threads = 1;
  auto backend = make_cpu_backend(bo);
  if (!backend) return backend.error();
  net->backend = std::move(backend.value());
  const int threads = options.n_threads > 0 ? options.n_threads : ThreadPool::hardware_threads();
  net->pool = std::make_unique<ThreadPool>(std::min(threads, kMaxThreads));
  const Backend& be = *net->backend;
  auto pack = [&](const std::vector<float>& w, int n_out, int n_in) {
    return be.pack_as(w.data(), n_out, n_in, ComputeType::f32);
  };

  const std::vector<float>& stft = t["stft_conv.weight"];  // [258][256]
  double dev = 0;
  const double pi = 3.14159265358979323846;
  for (int k = 0; k < kBins; ++k)
    for (int n = 0; n < 256; ++n) {
      const double w = 0.5 - 0.5 * std::cos(2 * pi * n / 256);
      const double re = w * std::cos(2 * pi * k * n / 256), im = -w * std::sin(2 * pi * k * n / 256);
      dev = std::max({dev, std::fabs(stft[static_cast<size_t>(k) * 256 + n] - re),
                      std::fabs(stft[static_cast<size_t>(kBins + k) * 256 + n] - im)});
    }
  net->fft = dev <= kDftTolerance && !options.force_stft_gemm;
  if (net->fft)
    net->tables = make_fft_tables();
  else
    net->stft = pack(stft, 2 * kBins, 256);

  const auto& w1 = t["conv1.weight"];
  net->c1_all = pack(conv_taps(w1, 128, 129, 0, 3), 128, 3 * 129);
  net->c1_12 = pack(conv_taps(w1, 128, 129, 1, 2), 128, 2 * 129);
  net->c1_01 = pack(conv_taps(w1, 128, 129, 0, 2), 128, 2 * 129);
  const auto& w2 = t["conv2.weight"];
  net->c2_all = pack(conv_taps(w2, 64, 128, 0, 3), 64, 3 * 128);
  net->c2_12 = pack(conv_taps(w2, 64, 128, 1, 2), 64, 2 * 128);
  net->c3_12 = pack(conv_taps(t["conv3.weight"], 64, 64, 1, 2), 64, 2 * 64);
  net->c4_1 = pack(conv_taps(t["conv4.weight"], 128, 64, 1, 1), 128, 64);
  net->b1 = t["conv1.bias"];
  net->b2 = t["conv2.bias"];
  net->b3 = t["conv3.bias"];
  net->b4 = t["conv4.bias"];
  net->w_ih = pack(t["lstm_cell.weight_ih"], kGates, kHidden);
  net->b_gates.resize(kGates);
  for (int j = 0; j < kGates; ++j) net->b_gates[j] = t["lstm_cell.bias_ih"][j] + t["lstm_cell.bias_hh"][j];
  const auto& whh = t["lstm_cell.weight_hh"];  // [512][128]
  net->whh.resize(static_cast<size_t>(kGates) * kHidden);
  for (int b = 0; b < kGates / kGateBlock; ++b)
    for (int k = 0; k < kHidden; ++k)
      for (int j = 0; j < kGateBlock; ++j)
        net->whh[(static_cast<size_t>(b) * kHidden + k) * kGateBlock + j] =
            whh[static_cast<size_t>(b * kGateBlock + j) * kHidden + k];
  net->w_out = t["final_conv.weight"];
  net->b_out = t["final_conv.bias"][0];

  SileroVad vad;
  vad.net_ = std::move(net);
  return vad;
}

bool SileroVad::stft_by_fft() const { return net_->fft; }

VadStream SileroVad::stream() const { return VadStream(*this); }

std::vector<float> SileroVad::probabilities(const float* audio, size_t n) const {
  std::vector<float> probs;
  probs.reserve((n + kVadChunk - 1) / kVadChunk);
  VadStream s(*this);
  s.push(audio, n, probs);
  s.finish(probs);
  return probs;
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

// A stream's work comes in batches of up to kBatch chunks. For each batch,
// features (STFT, convolutions, W_ih x: no dependence on the recurrent
// state) are computed for all its chunks, split by rows over the pool's
// threads; then the recurrence runs chunk by chunk. The recurrence of batch
// k and the features of batch k + 1 are independent, so they run together:
// task 0 does the recurrence plus a share of the feature rows, tasks 1..T-1
// the rest, with task 0's share set from measured per-chunk costs so that
// the tasks finish together (one Zen 4 core: features 6.8 us, recurrence 2.7
// us per chunk, so at 2 threads task 0 gets ~30% of the rows). Rows are
// independent and each GEMM element is one FMA chain over k, so a split
// never changes a result, only the timing.
struct VadStream::State {
  std::shared_ptr<const VadNet> net;
  // stage[0, 64): the context (the last 64 samples of the previous chunk);
  // stage[64, 64 + pending): samples of the chunk being filled. A batch whose
  // context is not in the caller's buffer is copied here too.
  std::vector<float> stage;
  size_t pending = 0;
  size_t chunks = 0;
  alignas(64) float h[kHidden];
  alignas(64) float c[kHidden];
  // One batch's activations, rows per chunk (per frame for mag); gx twice,
  // for the batch in the recurrence and the batch in the features.
  std::vector<float> frames, spec, mag, c1, c2, c3, c4;
  std::vector<float> gx[2];
  // Measured costs per chunk (us), for the split; start from Zen 4's.
  double feature_us = 6.8, recurrence_us = 2.7;

  struct Batch {
    const float* win = nullptr;  // 64 + 512 nb samples, the first 64 the context of chunk 0
    int nb = 0;
  };

  void reset() {
    std::fill(stage.begin(), stage.begin() + kVadContext, 0.0f);
    pending = 0;
    chunks = 0;
    std::fill(h, h + kHidden, 0.0f);
    std::fill(c, c + kHidden, 0.0f);
  }

  void allocate() {
    frames.resize(static_cast<size_t>(kBatch) * 256);
    mag.resize(static_cast<size_t>(kBatch) * kFrames * kBins);
    if (!net->fft) spec.resize(static_cast<size_t>(kBatch) * kFrames * 2 * kBins);
    c1.resize(static_cast<size_t>(kBatch) * kFrames * 128);
    c2.resize(static_cast<size_t>(kBatch) * 2 * 64);
    c3.resize(static_cast<size_t>(kBatch) * 64);
    c4.resize(static_cast<size_t>(kBatch) * 128);
    for (auto& g : gx) g.resize(static_cast<size_t>(kBatch) * kGates);
  }

  // Features of chunks [c0, c1) of batch b into gx (rows c0..c1).
  void features(const Batch& bt, int c0, int c1n, float* gxo) {
    const VadNet& m = *net;
    Backend& be = *m.backend;
    const int n = c1n - c0;
    if (n <= 0) return;
    const float* win = bt.win + static_cast<size_t>(c0) * kVadChunk;
    // Frames 0-2 of a chunk lie in win (at 128 f of the chunk's 576
    // samples); frame 3 runs into the reflection, so it is built here:
    // x[384..576) then x[574], x[573], ..., x[511].
    float* fr3 = &frames[static_cast<size_t>(c0) * 256];
    for (int b = 0; b < n; ++b) {
      const float* x = win + static_cast<size_t>(b) * kVadChunk;
      float* fr = fr3 + static_cast<size_t>(b) * 256;
      std::memcpy(fr, x + 384, 192 * sizeof(float));
      for (int j = 0; j < 64; ++j) fr[192 + j] = x[kWin - 2 - j];
    }
    const int rows = n * kFrames;
    float* mg = &mag[static_cast<size_t>(c0) * kFrames * kBins];
    if (m.fft) {
      alignas(64) float spare[kBins];  // the output of padding lanes
      for (int r0 = 0; r0 < rows; r0 += kLanes) {
        const float* src[kLanes];
        float* dst[kLanes];
        for (int l = 0; l < kLanes; ++l) {
          const int r = std::min(r0 + l, rows - 1), b = r / kFrames, f = r % kFrames;
          src[l] = f < 3 ? win + static_cast<size_t>(b) * kVadChunk + 128 * f : fr3 + static_cast<size_t>(b) * 256;
          dst[l] = r0 + l < rows ? mg + static_cast<size_t>(r) * kBins : spare;
        }
        stft_magnitudes16(src, dst, m.tables);
      }
    } else {
      // The GEMM reads frames 0-2 straight from the audio at a row stride of 512.
      float* sp = &spec[static_cast<size_t>(c0) * kFrames * 2 * kBins];
      const int ldy = kFrames * 2 * kBins;
      for (int f = 0; f < 3; ++f)
        be.linear(win + 128 * f, n, kVadChunk, *m.stft, nullptr, Activation::none, false, sp + f * 2 * kBins, ldy);
      be.linear(fr3, n, 256, *m.stft, nullptr, Activation::none, false, sp + 3 * 2 * kBins, ldy);
      for (int r = 0; r < rows; ++r) {
        const float* re = sp + static_cast<size_t>(r) * 2 * kBins;
        const float* im = re + kBins;
        float* out = mg + static_cast<size_t>(r) * kBins;
        for (int k = 0; k < kBins; ++k) out[k] = re[k] * re[k] + im[k] * im[k];
        sqrt_inplace(out, kBins);
      }
    }

    // conv1 (129 -> 128, kernel 3, padding 1) over the 4 frames of each
    // chunk: mag rows of one chunk are contiguous, [frame][bin], so the
    // window of output position t is a run of (2 or 3) * 129 floats and the
    // GEMM reads it in place with a row stride of 4 * 129. The edge positions
    // skip the tap that would read the zero padding.
    const int ld_mag = kFrames * kBins;
    const int ld1 = kFrames * 128;
    float* y1 = &c1[static_cast<size_t>(c0) * ld1];
    const float* b1 = m.b1.data();
    be.linear(mg, n, ld_mag, *m.c1_12, b1, Activation::none, false, y1, ld1);
    be.linear(mg, n, ld_mag, *m.c1_all, b1, Activation::none, false, y1 + 128, ld1);
    be.linear(mg + kBins, n, ld_mag, *m.c1_all, b1, Activation::none, false, y1 + 256, ld1);
    be.linear(mg + 2 * kBins, n, ld_mag, *m.c1_01, b1, Activation::none, false, y1 + 384, ld1);
    relu(y1, static_cast<size_t>(n) * ld1);
    // conv2 (128 -> 64, kernel 3, stride 2, padding 1): outputs at input
    // positions {-1, 0, 1} and {1, 2, 3}.
    float* y2 = &c2[static_cast<size_t>(c0) * 128];
    be.linear(y1, n, ld1, *m.c2_12, m.b2.data(), Activation::none, false, y2, 128);
    be.linear(y1 + 128, n, ld1, *m.c2_all, m.b2.data(), Activation::none, false, y2 + 64, 128);
    relu(y2, static_cast<size_t>(n) * 128);
    // conv3 (64 -> 64, stride 2): one output, at positions {-1, 0, 1}.
    float* y3 = &c3[static_cast<size_t>(c0) * 64];
    be.linear(y2, n, 128, *m.c3_12, m.b3.data(), Activation::none, false, y3, 64);
    relu(y3, static_cast<size_t>(n) * 64);
    // conv4 (64 -> 128) on a length-1 input: only the centre tap sees data.
    float* y4 = &c4[static_cast<size_t>(c0) * 128];
    be.linear(y3, n, 64, *m.c4_1, m.b4.data(), Activation::none, false, y4, 128);
    relu(y4, static_cast<size_t>(n) * 128);
    // The LSTM's input product, both biases folded in.
    be.linear(y4, n, 128, *m.w_ih, m.b_gates.data(), Activation::none, false, gxo + static_cast<size_t>(c0) * kGates,
              kGates);
  }

  void recurrence(const float* gxi, int nb, std::vector<float>& probs) {
    const VadNet& m = *net;
    for (int b = 0; b < nb; ++b)
      probs.push_back(lstm_step(gxi + static_cast<size_t>(b) * kGates, m.whh.data(), m.w_out.data(), m.b_out, h, c));
    chunks += static_cast<size_t>(nb);
  }

  // Features of `feat` (may be null) into gx[slot], together with the
  // recurrence over `rec_nb` chunks of gx[slot ^ 1] (may be 0).
  void step(const Batch* feat, int slot, int rec_nb, std::vector<float>& probs) {
    const int nb = feat ? feat->nb : 0;
    float* gxo = gx[slot].data();
    const float* gxi = gx[slot ^ 1].data();
    const int t_count = net->pool->size();
    using clock = std::chrono::steady_clock;
    // Small work is not worth a fork-join (a wake-up costs ~10 us).
    if (t_count == 1 || nb < 8) {
      if (rec_nb > 0) recurrence(gxi, rec_nb, probs);
      if (nb > 0) features(*feat, 0, nb, gxo);
      return;
    }
    // Task 0's feature rows x: rec + x f = (nb - x) f / (T - 1).
    const double rec_cost = rec_nb * recurrence_us;
    const double x_real = (nb * feature_us - (t_count - 1) * rec_cost) / (t_count * feature_us);
    const int x = static_cast<int>(std::clamp(std::lround(x_real), 0L, static_cast<long>(nb)));
    const int others = t_count - 1, per = (nb - x + others - 1) / others;
    double t_rec = 0, t_feat0 = 0;
    std::vector<double> t_feat(t_count, 0.0);
    net->pool->parallel_for(t_count, 1, [&](size_t begin, size_t end) {
      for (size_t t = begin; t < end; ++t) {
        if (t == 0) {
          const auto a = clock::now();
          if (rec_nb > 0) recurrence(gxi, rec_nb, probs);
          const auto b = clock::now();
          features(*feat, 0, x, gxo);
          t_rec = std::chrono::duration<double, std::micro>(b - a).count();
          t_feat0 = std::chrono::duration<double, std::micro>(clock::now() - b).count();
        } else {
          const int r0 = x + static_cast<int>(t - 1) * per, r1 = std::min(nb, r0 + per);
          const auto a = clock::now();
          features(*feat, r0, r1, gxo);
          t_feat[t] = std::chrono::duration<double, std::micro>(clock::now() - a).count();
        }
      }
    });
    // Running estimates (a quarter of each new measurement).
    double tf = t_feat0;
    for (int t = 1; t < t_count; ++t) tf += t_feat[t];
    // (Floors keep the split finite should a clock read 0.)
    feature_us = std::max(0.01, 0.75 * feature_us + 0.25 * (tf / nb));
    if (rec_nb > 0) recurrence_us = std::max(0.01, 0.75 * recurrence_us + 0.25 * (t_rec / rec_nb));
  }

  // Batches in order: each one's features, pipelined with the previous one's recurrence.
  void process(const Batch* batches, size_t count, std::vector<float>& probs) {
    int slot = 0, rec_nb = 0;
    for (size_t i = 0; i < count; ++i) {
      step(&batches[i], slot, rec_nb, probs);
      rec_nb = batches[i].nb;
      slot ^= 1;
    }
    if (rec_nb > 0) recurrence(gx[slot ^ 1].data(), rec_nb, probs);
  }
};

VadStream::VadStream(const SileroVad& vad) : s_(std::make_unique<State>()) {
  s_->net = vad.net_;
  s_->stage.assign(kVadContext + static_cast<size_t>(kBatch) * kVadChunk, 0.0f);
  s_->allocate();
  s_->reset();
}
VadStream::~VadStream() = default;
VadStream::VadStream(VadStream&&) noexcept = default;
VadStream& VadStream::operator=(VadStream&&) noexcept = default;

void VadStream::reset() { s_->reset(); }
size_t VadStream::chunks() const { return s_->chunks; }
size_t VadStream::pending() const { return s_->pending; }

void VadStream::push(const float* x, size_t n, std::vector<float>& probs) {
  if (n == 0) return;  // (x may be null)
  State& s = *s_;
  float* stage = s.stage.data();
  size_t pos = 0;
  if (s.pending > 0) {
    const size_t take = std::min(n, kVadChunk - s.pending);
    std::memcpy(stage + kVadContext + s.pending, x, take * sizeof(float));
    s.pending += take;
    pos = take;
    if (s.pending < static_cast<size_t>(kVadChunk)) return;
    const State::Batch one{stage, 1};
    s.process(&one, 1, probs);
    std::memcpy(stage, stage + kVadChunk, kVadContext * sizeof(float));
    s.pending = 0;
  }
  const size_t full = (n - pos) / kVadChunk;
  if (full > 0) {
    // Batches of F / 6 chunks (16 to kBatch): the recurrence of a push's last
    // batch cannot overlap anything, which costs F l / (2 N) for N batches
    // (l: recurrence per chunk), against ~5 us of fork-join per batch. For
    // the 128-chunk blocks the transcription pipeline pushes, N = 6 is the
    // optimum: sqrt(128 * 2.7 / (2 * 5)) = 5.9.
    const size_t per = std::clamp<size_t>((full + 5) / 6, 16, kBatch);
    std::vector<State::Batch> batches;
    batches.reserve((full + per - 1) / per);
    size_t p = pos;
    for (size_t left = full; left > 0;) {
      const int nb = static_cast<int>(std::min(left, per));
      if (p >= static_cast<size_t>(kVadContext)) {
        batches.push_back({x + p - kVadContext, nb});  // the context is the caller's previous 64 samples: no copy
      } else {
        // Only the first batch of a push can lack its context in x.
        std::memcpy(stage + kVadContext, x + p, static_cast<size_t>(nb) * kVadChunk * sizeof(float));
        batches.push_back({stage, nb});
      }
      p += static_cast<size_t>(nb) * kVadChunk;
      left -= static_cast<size_t>(nb);
    }
    s.process(batches.data(), batches.size(), probs);
    // The new context: the last 64 samples of the last chunk, which are in x.
    pos += full * kVadChunk;
    std::memcpy(stage, x + pos - kVadContext, kVadContext * sizeof(float));
  }
  if (pos < n) {
    std::memcpy(stage + kVadContext, x + pos, (n - pos) * sizeof(float));
    s.pending = n - pos;
  }
}

void VadStream::finish(std::vector<float>& probs) {
  State& s = *s_;
  if (s.pending > 0) {
    std::fill(s.stage.begin() + kVadContext + s.pending, s.stage.begin() + kWin, 0.0f);
    const State::Batch one{s.stage.data(), 1};
    s.process(&one, 1, probs);
  }
  s.reset();
}

// ---------------------------------------------------------------------------
// Segments: silero-vad's get_speech_timestamps (utils_vad.py, v5), rule for
// rule, in samples. Its probabilities are Python floats (doubles) compared
// with double thresholds; ours are compared the same way.
// ---------------------------------------------------------------------------

Status validate(const VadOptions& o) {
  auto bad = [](const std::string& what) { return Status(make_error("VAD option " + what)); };
  if (!(o.threshold >= 0.0f && o.threshold <= 1.0f))
    return bad("threshold " + std::to_string(o.threshold) + " is outside [0, 1]");
  if (std::isnan(o.neg_threshold)) return bad("neg_threshold is NaN");
  if (o.neg_threshold >= 0.0f && o.neg_threshold > o.threshold)
    return bad("neg_threshold " + std::to_string(o.neg_threshold) + " is above threshold " +
               std::to_string(o.threshold));
  constexpr int kHourMs = 3'600'000;
  if (o.min_speech_ms < 0 || o.min_speech_ms > kHourMs)
    return bad("min_speech_ms " + std::to_string(o.min_speech_ms) + " is outside [0, 3600000]");
  if (o.min_silence_ms < 0 || o.min_silence_ms > kHourMs)
    return bad("min_silence_ms " + std::to_string(o.min_silence_ms) + " is outside [0, 3600000]");
  if (o.speech_pad_ms < 0 || o.speech_pad_ms > kHourMs)
    return bad("speech_pad_ms " + std::to_string(o.speech_pad_ms) + " is outside [0, 3600000]");
  if (std::isnan(o.max_speech_s) || o.max_speech_s <= 0.0f)
    return bad("max_speech_s " + std::to_string(o.max_speech_s) + " is not positive");
  // silero splits once a segment exceeds max_speech_s * 16000 - 512 - 2 * pad
  // samples; below one chunk every chunk would be cut off on its own.
  const double limit = 16000.0 * o.max_speech_s - kVadChunk - 2.0 * 16.0 * o.speech_pad_ms;
  if (limit < kVadChunk)
    return bad("max_speech_s " + std::to_string(o.max_speech_s) + " is too short: with speech_pad_ms " +
               std::to_string(o.speech_pad_ms) + " it must be at least " +
               std::to_string((2.0 * kVadChunk + 32.0 * o.speech_pad_ms) / 16000.0) + " s");
  return Status::Ok();
}

Result<std::vector<SpeechSegment>> speech_segments(const std::vector<float>& probs, size_t n_samples,
                                                   const VadOptions& o) {
  AMA_TRY(validate(o));
  const size_t n_chunks = (n_samples + kVadChunk - 1) / kVadChunk;
  if (probs.size() != n_chunks)
    return make_error("VAD: " + std::to_string(probs.size()) + " probabilities for " + std::to_string(n_samples) +
                      " samples; expected " + std::to_string(n_chunks) + " (one per 512 samples)");
  for (size_t i = 0; i < probs.size(); ++i)
    if (!(probs[i] >= 0.0f && probs[i] <= 1.0f))
      return make_error("VAD: probability " + std::to_string(i) + " is " + std::to_string(probs[i]) +
                        ", not in [0, 1]");

  // silero's sample counts: sr * ms / 1000, all whole numbers at 16 kHz.
  const double thr = o.threshold;
  const double neg = o.neg_threshold < 0.0f ? std::max(thr - 0.15, 0.01) : static_cast<double>(o.neg_threshold);
  const int64_t min_speech = 16LL * o.min_speech_ms;
  const int64_t min_silence = 16LL * o.min_silence_ms;
  const int64_t pad = 16LL * o.speech_pad_ms;
  const double max_speech = 16000.0 * o.max_speech_s - kVadChunk - 2.0 * pad;  // +inf when unlimited
  constexpr int64_t kMinSilenceAtMaxSpeech = 16 * 98;  // silero's min_silence_at_max_speech, 98 ms
  const int64_t n = static_cast<int64_t>(n_samples);

  struct Seg {
    int64_t start, end;
  };
  std::vector<Seg> out;
  bool triggered = false;
  int64_t start = -1;    // the open segment's start; -1: none
  int64_t temp_end = 0;  // where the current silence began (0: none; a silence never begins at sample 0)
  // Silences longer than 98 ms inside the open segment: (where they began, length).
  std::vector<std::pair<int64_t, int64_t>> possible_ends;
  // silero also tracks prev_end / next_start, but resets prev_end to 0 in the
  // same branch that sets it, so its `next_start < prev_end` test never holds;
  // they are left out.
  for (size_t i = 0; i < probs.size(); ++i) {
    const double p = probs[i];
    const int64_t s = static_cast<int64_t>(i) * kVadChunk;
    if (p >= thr && temp_end != 0) {  // speech again after a silence: remember it as a split point
      const int64_t dur = s - temp_end;
      if (dur > kMinSilenceAtMaxSpeech) possible_ends.emplace_back(temp_end, dur);
      temp_end = 0;
    }
    if (p >= thr && !triggered) {
      triggered = true;
      start = s;
      continue;
    }
    if (triggered && static_cast<double>(s - start) > max_speech) {
      if (!possible_ends.empty()) {
        // The longest silence (the first of equals, as Python's max).
        auto best = possible_ends.begin();
        for (auto it = possible_ends.begin(); it != possible_ends.end(); ++it)
          if (it->second > best->second) best = it;
        const int64_t end = best->first, next = best->first + best->second;
        out.push_back({start, end});
        // silero's test `next_start < prev_end + 512 i`, i.e. the silence is
        // shorter than the audio so far: the next segment starts where the
        // speech resumed, still triggered.
        if (next < end + s) {
          start = next;
        } else {
          triggered = false;
          start = -1;
        }
        std::erase_if(possible_ends, [&](const auto& pe) { return pe.first <= next; });
        temp_end = 0;
      } else {  // no silence to split at: cut here
        out.push_back({start, s});
        start = -1;
        temp_end = 0;
        triggered = false;
        possible_ends.clear();
        continue;
      }
    }
    if (p < neg && triggered) {
      if (temp_end == 0) temp_end = s;
      if (s - temp_end < min_silence) continue;
      if (temp_end - start > min_speech) out.push_back({start, temp_end});
      start = -1;
      temp_end = 0;
      triggered = false;
      possible_ends.clear();
    }
  }
  if (start >= 0 && n - start > min_speech) out.push_back({start, n});

  // Padding: speech_pad on both sides, or half the gap each when two
  // segments are closer than twice the pad.
  auto floor_half = [](int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };  // Python's v // 2
  for (size_t k = 0; k < out.size(); ++k) {
    if (k == 0) out[k].start = std::max<int64_t>(0, out[k].start - pad);
    if (k + 1 < out.size()) {
      const int64_t gap = out[k + 1].start - out[k].end;
      if (gap < 2 * pad) {
        out[k].end += floor_half(gap);
        out[k + 1].start = std::max<int64_t>(0, out[k + 1].start - floor_half(gap));
      } else {
        out[k].end = std::min(n, out[k].end + pad);
        out[k + 1].start = std::max<int64_t>(0, out[k + 1].start - pad);
      }
    } else {
      out[k].end = std::min(n, out[k].end + pad);
    }
  }
  std::vector<SpeechSegment> segs;
  segs.reserve(out.size());
  for (const Seg& g : out) segs.push_back({static_cast<size_t>(g.start), static_cast<size_t>(g.end)});
  return segs;
}

}  // namespace ama
