// `amanuensis_bench --onednn-compare`: our GEMMs against oneDNN's matmul, in
// the same process, at every GEMM shape of the Whisper encoder (and the
// decoder's cross-attention K/V projection, which runs on the encoder's
// output), in f32, bf16 and int8, at the given thread counts. Prints a
// markdown table (bench/onednn.sh writes it to a file).
//
// What is timed, for both sides: f32 activations in, f32 results out, the
// activation conversion included, the weights packed beforehand.
//  - ours: Backend::linear (src/backend/backend.h) on weights packed by
//    Backend::pack_as for the type, no bias, no activation. It converts the
//    activations itself (bf16: round to nearest even; int8: per-row affine u8
//    from each row's min and max).
//  - oneDNN: f32: matmul f32 x f32 -> f32. bf16: a reorder f32 -> bf16 of
//    the activations, then matmul bf16 x bf16 -> f32. int8: a reorder
//    f32 -> u8 with scale 127 / max |x| and zero point 128, then matmul
//    u8 x s8 -> f32 with that source zero point and per-channel output
//    scales (activation step times weight step). Weights s8 per channel,
//    max |w| / 127: the same rule as ours (pack_i8_panels), so the two
//    differ only in the activations' quantization: per tensor and symmetric
//    for oneDNN, per row and affine for us.
//    oneDNN's int8 quantization is static (the activation scale calibrated
//    once, at setup, from the same input), because oneDNN 2.6 takes its fast
//    int8 matmul (brg:avx512_core_vnni) only with scales fixed when the
//    primitive is created: with run-time scales (DNNL_RUNTIME_F32_VAL), the
//    only way to quantize each call's input as ours does, it falls back to
//    gemm:jit (checked on this machine, 1500x512x512, with and without the
//    zero point). So oneDNN is spared the per-call min/max scan ours does.
//  - weights: ours by pack_as; oneDNN's in the layout it picks
//    (format_tag::any), reordered once at setup.
//  - threads: our ThreadPool and oneDNN's OpenMP team (omp_set_num_threads)
//    both at the count of the run; oneDNN's primitives are created after the
//    count is set, since its matmul plans its blocking for the team size.
//  - outputs: each side writes its own buffer of the same kind, by default
//    2 MiB-aligned and advised MADV_HUGEPAGE (core/huge_pages.h), as the
//    model allocates its own large outputs; `--pages 4k` gives both plain
//    64-byte-aligned memory instead (see OutputBuffer).
//  - timing: each repetition runs ours then oneDNN, back to back, so the
//    noise of a shared machine hits both alike; the table gives medians.
//
// Correctness, in the same run, on the same inputs: the maximum |ours -
// oneDNN| over the whole output, against a tolerance from the arithmetic's
// expected error (see expected_sigma), and each side's maximum error against
// a double-precision reference on a few sampled rows.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/peak.h"
#include "core/huge_pages.h"
#include "model/hparams.h"

#ifdef AMA_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace ama_bench {

#ifndef AMA_HAVE_DNNL
int onednn_compare_main(int, char**) {
  std::fprintf(stderr,
               "amanuensis_bench: error: built without oneDNN (install libdnnl-dev, scripts/install-deps.sh, and "
               "reconfigure)\n");
  return 1;
}
#else

namespace {

using namespace ama;

struct GemmShape {
  std::string model, layer;
  int m, k, n;
  double flops() const { return 2.0 * m * k * n; }
};

// The encoder's GEMMs for one architecture (src/model/encoder.cpp and
// whisper_model.cpp): conv1 and conv2 as GEMMs over 3-frame windows (3000 frames in, 1500
// positions after conv2's stride 2), the attention projections, a fused QKV
// (the same weights side by side: the shape a fusion of the three would
// have), the MLP, and the decoder's cross-attention K and V of every layer
// batched into one GEMM over the encoder output.
std::vector<GemmShape> encoder_shapes(const std::string& arch, const HParams& hp) {
  const int n = hp.n_audio_state, ctx = hp.n_audio_ctx;
  return {{arch, "conv1", 2 * ctx, 3 * hp.n_mels, n},
          {arch, "conv2", ctx, 3 * n, n},
          {arch, "q/k/v/out", ctx, n, n},
          {arch, "qkv fused", ctx, n, 3 * n},
          {arch, "mlp up", ctx, n, 4 * n},
          {arch, "mlp down", ctx, 4 * n, n},
          {arch, "cross kv (all layers)", ctx, n, 2 * hp.n_text_layer * hp.n_text_state}};
}

// An output buffer, zero-filled (touched) before timing. Both sides get one
// of the same kind:
//  - huge (the default): ama::huge_alloc, 2 MiB-aligned and advised
//    MADV_HUGEPAGE from 2 MiB up, as the model allocates its large outputs
//    (the encoder's activations, the cross K/V caches).
//  - 4k (--pages 4k): 64-byte-aligned memory on 4 KiB pages, as oneDNN
//    allocates its own (a std::vector's 16-byte alignment made every 64-byte
//    store straddle two lines).
// Why the default: on the Zen 5 VM we measure on, the 295 MB output of
// medium's cross K/V on 4 KiB pages made both sides slow and erratic. Ours
// and oneDNN's, at one thread, int8: 405-575 and 197-568 ms on 4 KiB pages;
// 200-209 and 209-225 ms on huge pages (bf16: 384-785 and 476-752; 386-387
// and 486-528). The GEMM is the same; the time went into translating the
// output's 72,000 pages.
struct OutputBuffer {
  OutputBuffer(size_t count, bool huge_pages) : n(count), p(allocate(count * sizeof(float), huge_pages)) {
    if (!p) throw std::bad_alloc();
    std::fill(p, p + n, 0.0f);
  }
  size_t size() const { return n; }
  float operator[](size_t i) const { return p[i]; }
  ~OutputBuffer() { std::free(p); }
  OutputBuffer(const OutputBuffer&) = delete;
  OutputBuffer& operator=(const OutputBuffer&) = delete;
  float* data() { return p; }
  const float* data() const { return p; }
  size_t n;
  float* p;

 private:
  // Either is released with std::free.
  static float* allocate(size_t bytes, bool huge_pages) {
    void* q = huge_pages && bytes >= ama::kHugePageMin ? ama::huge_alloc(bytes)
                                                       : std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    return static_cast<float*>(q);
  }
};

std::vector<float> random_normal(size_t count, unsigned seed, float sigma) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(count);
  for (auto& x : v) x = d(g);
  return v;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// The q-quantile (0..1) of v, linearly interpolated between order statistics.
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double at = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(at);
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (at - static_cast<double>(i)) * (v[i + 1] - v[i]);
}

// libdnnl.so.2 on Debian uses GNU OpenMP (DNNL_CPU_RUNTIME_OMP); libgomp is
// loaded with it, so its omp_set_num_threads is found without linking
// OpenMP into the benchmark (which would change how the rest compiles).
bool set_onednn_threads(int n) {
  using Fn = void (*)(int);
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (!fn) return false;
  fn(n);
  return true;
}

float abs_max(const float* x, size_t count) {
  float m = 0;
  for (size_t i = 0; i < count; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// The oneDNN side of one shape and type: primitives, weights in oneDNN's
// layout, and the buffers of one call.
class OneDnnGemm {
 public:
  // x: the input, from which the int8 activation scale is calibrated.
  // y: the output buffer (s.m x s.n floats), which stays the caller's.
  OneDnnGemm(dnnl::engine& eng, ComputeType ct, const GemmShape& s, const std::vector<float>& w,
             const std::vector<float>& x, float* y)
      : eng_(eng), st_(eng), ct_(ct), s_(s) {
    using namespace dnnl;
    using dt = memory::data_type;
    using tag = memory::format_tag;
    const memory::dims x_dims{s.m, s.k}, w_dims{s.k, s.n}, y_dims{s.m, s.n};
    x_f32_md_ = memory::desc(x_dims, dt::f32, tag::ab);
    y_md_ = memory::desc(y_dims, dt::f32, tag::ab);
    // W is [n][k] row-major: as oneDNN's {k, n} weights, that is tag ba.
    const memory::desc w_user_md(w_dims, ct == ComputeType::int8 ? dt::s8 : dt::f32, tag::ba);
    const dt act_dt = ct == ComputeType::f32 ? dt::f32 : ct == ComputeType::bf16 ? dt::bf16 : dt::u8;
    const dt w_dt = ct == ComputeType::f32 ? dt::f32 : ct == ComputeType::bf16 ? dt::bf16 : dt::s8;
    x_md_ = memory::desc(x_dims, act_dt, tag::ab);
    // Weights: s8 per channel by our rule (int8), else f32 reordered to the type.
    std::vector<int8_t> wq;
    std::vector<float> w_scale;
    primitive_attr attr, rattr;
    if (ct == ComputeType::int8) {
      w_scale.resize(s.n);
      wq.resize(w.size());
      for (int j = 0; j < s.n; ++j) {
        const float* row = w.data() + static_cast<size_t>(j) * s.k;
        float mx = 0;
        for (int i = 0; i < s.k; ++i) mx = std::max(mx, std::fabs(row[i]));
        w_scale[j] = mx > 0 ? mx / 127.0f : 1.0f;
        for (int i = 0; i < s.k; ++i)
          wq[static_cast<size_t>(j) * s.k + i] =
              static_cast<int8_t>(std::clamp(static_cast<int>(std::lrint(row[i] / w_scale[j])), -127, 127));
      }
      // Symmetric around the zero point: u8 = round(x * 127 / amax) + 128.
      const float amax = abs_max(x.data(), x.size());
      x_scale_ = amax > 0 ? amax / 127.0f : 1.0f;
      std::vector<float> out_scale(s.n);
      for (int j = 0; j < s.n; ++j) out_scale[j] = x_scale_ * w_scale[j];
      attr.set_output_scales(1 << 1, out_scale);
      attr.set_zero_points(DNNL_ARG_SRC, 0, {kZeroPoint});
      rattr.set_output_scales(0, {1.0f / x_scale_});
      rattr.set_zero_points(DNNL_ARG_DST, 0, {kZeroPoint});
    }
    matmul::primitive_desc pd(matmul::desc(x_md_, memory::desc(w_dims, w_dt, tag::any), y_md_), attr, eng_);
    impl_ = pd.impl_info_str();
    mm_ = matmul(pd);
    w_mem_ = memory(pd.weights_desc(), eng_);
    y_mem_ = memory(y_md_, eng_, y);
    memory w_user = ct == ComputeType::int8 ? memory(w_user_md, eng_, wq.data())
                                            : memory(w_user_md, eng_, const_cast<float*>(w.data()));
    reorder(w_user, w_mem_).execute(st_, w_user, w_mem_);
    st_.wait();
    if (ct != ComputeType::f32) {
      x_mem_ = memory(x_md_, eng_);
      reorder_ = reorder(reorder::primitive_desc(eng_, x_f32_md_, eng_, x_md_, rattr));
    }
  }

  // y = x W^T from f32 x, conversions included.
  const float* run(const float* x) {
    using namespace dnnl;
    memory x_f32(x_f32_md_, eng_, const_cast<float*>(x));
    if (ct_ == ComputeType::f32) {
      mm_.execute(st_, {{DNNL_ARG_SRC, x_f32}, {DNNL_ARG_WEIGHTS, w_mem_}, {DNNL_ARG_DST, y_mem_}});
    } else {
      reorder_.execute(st_, {{DNNL_ARG_FROM, x_f32}, {DNNL_ARG_TO, x_mem_}});
      mm_.execute(st_, {{DNNL_ARG_SRC, x_mem_}, {DNNL_ARG_WEIGHTS, w_mem_}, {DNNL_ARG_DST, y_mem_}});
    }
    st_.wait();
    return static_cast<const float*>(y_mem_.get_data_handle());
  }

  const std::string& impl() const { return impl_; }
  float x_scale() const { return x_scale_; }  // int8: the activation step

  static constexpr int32_t kZeroPoint = 128;

 private:
  dnnl::engine& eng_;
  dnnl::stream st_;
  ComputeType ct_;
  GemmShape s_;
  dnnl::memory::desc x_f32_md_, x_md_, y_md_;
  dnnl::matmul mm_;
  dnnl::reorder reorder_;
  dnnl::memory w_mem_, x_mem_, y_mem_;
  float x_scale_ = 0;
  std::string impl_;
};

// The tolerance on max |ours - oneDNN|: the sum of each side's expected
// error against exact arithmetic, for inputs of rms rx and weights of rms rw
// (independent, zero mean, normal), so that y has rms sqrt(k) rx rw:
//  - f32: Higham and Mary's probabilistic bound for a dot product of k
//    terms, lambda sqrt(k) u sum_k |x_k w_k| (u = 2^-24), with lambda = 6
//    and sum |x_k w_k| ~ k (2/pi) rx rw. A plain sigma model of the running
//    sum's rounding (u^2 k^2 rx^2 rw^2 / 6) was too tight: on 1500x512x512
//    the measured max error on 2048 outputs was 7.6 of its sigmas, because
//    the largest errors sit in the outputs with the largest partial sums.
//    (Both sides' f32 and bf16 results are usually identical anyway: each
//    output is one FMA chain in k order, in ours and in oneDNN's brgemm.)
//  - bf16: each factor rounded to 8 significant bits, a relative error of
//    rms ulp / sqrt(12) with ulp up to 2^-7 of the value, so a product's
//    relative error has rms up to sqrt(2) 2^-7 / sqrt(12), and sigma =
//    sqrt(k) rx rw sqrt(2) 2^-7 / sqrt(12) (the f32 sums add ~nothing).
//  - int8: an input quantized with step q has error variance q^2 / 12; with
//    activation step qx and weight step qw, sigma^2 = k (qx^2 rw^2 + qw^2
//    rx^2) / 12.
// For bf16 and int8 the bound is 6 sigma of the difference (the two sides'
// sigmas in quadrature): over 10^6 - 10^8 outputs the maximum of a normal
// variable is 5 - 6 sigma.
double f32_bound(int k, double rx, double rw) {
  return 6.0 * std::sqrt(static_cast<double>(k)) * std::ldexp(1.0, -24) * k * (2.0 / M_PI) * rx * rw;
}
double bf16_sigma(int k, double rx, double rw) {
  return std::sqrt(static_cast<double>(k)) * rx * rw * std::sqrt(2.0) * std::ldexp(1.0, -7) / std::sqrt(12.0);
}
double int8_sigma(int k, double qx, double qw, double rx, double rw) {
  return std::sqrt(k * (qx * qx * rw * rw + qw * qw * rx * rx) / 12.0);
}

struct Row {
  GemmShape s;
  ComputeType ct;
  int threads;
  double ours_ms, dnnl_ms;
  double peak_gflops;
  double max_diff, tol;
  double ours_err, dnnl_err;  // against double, on sampled rows
  int reps;
  std::string impl;  // oneDNN's matmul implementation
  double tol_ours = 0, tol_dnnl = 0;  // each side's own expected error against double (sampled rows)
  // Quartiles of the per-repetition ratios (oneDNN's time over ours in the
  // same repetition, back to back): how far the VM's noise moves the ratio.
  double ratio_q25 = 0, ratio_q75 = 0;
};

struct Options {
  std::vector<std::string> models{"tiny", "base", "small", "medium"};
  std::vector<ComputeType> types{ComputeType::f32, ComputeType::bf16, ComputeType::int8};
  std::vector<int> threads{1, 2};
  int min_reps = 5;
  int max_reps = 50;
  double min_seconds = 0.5;  // per side and configuration: small shapes get more repetitions
  std::string layer_filter;  // substring of "model layer"
  bool huge_pages = true;    // the outputs' memory (OutputBuffer)
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

bool parse_int(const std::string& s, int lo, int hi, int* out) {
  try {
    size_t used = 0;
    const int v = std::stoi(s, &used);
    if (used != s.size() || v < lo || v > hi) return false;
    *out = v;
    return true;
  } catch (...) {
    return false;
  }
}

// Returns an empty string or the error.
std::string parse_options(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--onednn-compare") continue;
    if (i + 1 >= argc) return a + " needs a value (or is not an option of --onednn-compare)";
    const std::string v = argv[++i];
    if (a == "--models") {
      o->models = split(v);
      for (const auto& m : o->models)
        if (!standard_hparams(m)) return "unknown model '" + m + "' in --models";
    } else if (a == "--types") {
      o->types.clear();
      for (const auto& t : split(v)) {
        if (t == "f32") o->types.push_back(ComputeType::f32);
        else if (t == "bf16") o->types.push_back(ComputeType::bf16);
        else if (t == "int8") o->types.push_back(ComputeType::int8);
        else return "unknown type '" + t + "' in --types (f32, bf16, int8)";
      }
    } else if (a == "--threads") {
      o->threads.clear();
      for (const auto& t : split(v)) {
        int n = 0;
        if (!parse_int(t, 1, 1024, &n)) return "bad thread count '" + t + "' in --threads";
        o->threads.push_back(n);
      }
    } else if (a == "--reps") {
      if (!parse_int(v, 1, 100000, &o->min_reps)) return "bad --reps '" + v + "'";
      o->max_reps = std::max(o->max_reps, o->min_reps);
    } else if (a == "--min-seconds") {
      try {
        size_t used = 0;
        o->min_seconds = std::stod(v, &used);
        if (used != v.size() || !(o->min_seconds >= 0 && o->min_seconds <= 3600)) throw std::invalid_argument(v);
      } catch (...) {
        return "bad --min-seconds '" + v + "' (seconds, 0 to 3600)";
      }
    } else if (a == "--layers") {
      o->layer_filter = v;
    } else if (a == "--pages") {
      if (v != "huge" && v != "4k") return "bad --pages '" + v + "' (huge or 4k)";
      o->huge_pages = v == "huge";
    } else {
      return "unknown option " + a +
             " (--models tiny,base,... --types f32,bf16,int8 --threads 1,2 --reps N --min-seconds S --layers TEXT"
             " --pages huge|4k)";
    }
  }
  if (o->models.empty() || o->types.empty() || o->threads.empty()) return "empty --models, --types or --threads";
  return "";
}

// max |y - exact| over a few rows, exact in double.
double sampled_error(const float* y, const std::vector<float>& x, const std::vector<float>& w, const GemmShape& s,
                     const std::vector<int>& rows) {
  double worst = 0;
  for (int r : rows)
    for (int j = 0; j < s.n; ++j) {
      const float* xr = x.data() + static_cast<size_t>(r) * s.k;
      const float* wr = w.data() + static_cast<size_t>(j) * s.k;
      double acc = 0;
      for (int i = 0; i < s.k; ++i) acc += static_cast<double>(xr[i]) * wr[i];
      worst = std::max(worst, std::fabs(acc - y[static_cast<size_t>(r) * s.n + j]));
    }
  return worst;
}

Row run_one(dnnl::engine& eng, const GemmShape& s, ComputeType ct, int threads, const cpu::MachinePeaks& peaks,
            const Options& o) {
  // x ~ N(0, 1), w ~ N(0, 1/k): y ~ N(0, 1), like a trained layer's scale.
  const double rx = 1.0, rw = 1.0 / std::sqrt(static_cast<double>(s.k));
  const auto x = random_normal(static_cast<size_t>(s.m) * s.k, 1, static_cast<float>(rx));
  const auto w = random_normal(static_cast<size_t>(s.n) * s.k, 2, static_cast<float>(rw));

  CpuBackendOptions bo;
  bo.n_threads = threads;
  bo.compute = ct;
  auto be = std::move(make_cpu_backend(bo).value());
  auto packed = be->pack_as(w.data(), s.n, s.k, ct);
  OutputBuffer y(static_cast<size_t>(s.m) * s.n, o.huge_pages);
  OutputBuffer y_dnnl(static_cast<size_t>(s.m) * s.n, o.huge_pages);
  auto ours = [&] { be->linear(x.data(), s.m, s.k, *packed, nullptr, Activation::none, false, y.data(), s.n); };

  OneDnnGemm dn(eng, ct, s, w, x, y_dnnl.data());
  const float* yd = nullptr;

  // Warm-up (first touch of the outputs, oneDNN's scratchpads), which also
  // sizes the repetitions.
  auto t0 = std::chrono::steady_clock::now();
  ours();
  const double t_ours = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  yd = dn.run(x.data());
  const double t_dnnl = seconds_since(t0);
  const int reps = std::clamp(static_cast<int>(std::ceil(o.min_seconds / std::max(1e-6, std::max(t_ours, t_dnnl)))),
                              o.min_reps, o.max_reps);
  std::vector<double> ours_s, dnnl_s;
  for (int r = 0; r < reps; ++r) {
    t0 = std::chrono::steady_clock::now();
    ours();
    ours_s.push_back(seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    yd = dn.run(x.data());
    dnnl_s.push_back(seconds_since(t0));
  }

  Row row{s, ct, threads, 1e3 * median(ours_s), 1e3 * median(dnnl_s), 0, 0, 0, 0, 0, reps, dn.impl()};
  std::vector<double> paired;
  for (size_t i = 0; i < ours_s.size(); ++i) paired.push_back(dnnl_s[i] / ours_s[i]);
  row.ratio_q25 = quantile(paired, 0.25);
  row.ratio_q75 = quantile(paired, 0.75);
  const Isa isa = selected_isa().isa;
  row.peak_gflops = ct == ComputeType::f32 ? peaks.f32_peak(isa)
                    : ct == ComputeType::bf16 ? (peaks.bf16_gflops > 0 ? peaks.bf16_gflops : peaks.f32_peak(isa))
                                              : (peaks.int8_gops > 0 ? peaks.int8_gops : peaks.f32_peak(isa));
  if (isa == Isa::amx) {
    if (ct == ComputeType::bf16 && peaks.amx_bf16_gflops > 0) row.peak_gflops = peaks.amx_bf16_gflops;
    if (ct == ComputeType::int8 && peaks.amx_int8_gops > 0) row.peak_gflops = peaks.amx_int8_gops;
  }

  for (size_t i = 0; i < y.size(); ++i)
    row.max_diff = std::max(row.max_diff, static_cast<double>(std::fabs(y[i] - yd[i])));
  const std::vector<int> rows{0, s.m / 3, 2 * s.m / 3, s.m - 1};
  row.ours_err = sampled_error(y.data(), x, w, s, rows);
  row.dnnl_err = sampled_error(yd, x, w, s, rows);

  if (ct == ComputeType::f32) {
    row.tol = 2.0 * f32_bound(s.k, rx, rw);
    row.tol_ours = row.tol_dnnl = row.tol;
  } else if (ct == ComputeType::bf16) {
    row.tol = 6.0 * std::sqrt(2.0) * bf16_sigma(s.k, rx, rw);
    row.tol_ours = row.tol_dnnl = 6.0 * bf16_sigma(s.k, rx, rw);
  } else {
    // Weight steps: max |w_j| / 127 per channel (both sides); take the rms.
    double qw2 = 0;
    for (int j = 0; j < s.n; ++j) {
      float mx = 0;
      for (int i = 0; i < s.k; ++i) mx = std::max(mx, std::fabs(w[static_cast<size_t>(j) * s.k + i]));
      qw2 += (mx / 127.0) * (mx / 127.0);
    }
    const double qw = std::sqrt(qw2 / s.n);
    // Ours: per row, (max - min) / 255; take the largest row's step.
    double qx_ours = 0;
    for (int r = 0; r < s.m; ++r) {
      const float* xr = x.data() + static_cast<size_t>(r) * s.k;
      const auto [lo, hi] = std::minmax_element(xr, xr + s.k);
      qx_ours = std::max(qx_ours, (*hi - *lo) / 255.0);
    }
    row.tol_ours = 6.0 * int8_sigma(s.k, qx_ours, qw, rx, rw);
    row.tol_dnnl = 6.0 * int8_sigma(s.k, dn.x_scale(), qw, rx, rw);
    row.tol = std::hypot(row.tol_ours, row.tol_dnnl);
  }
  return row;
}

// Beyond the tolerance and not explained by oneDNN: our sampled error
// against double is over our own bound, or the outputs differ while
// oneDNN's sampled error is within its bound. oneDNN 2.6's int8 matmul
// without VNNI (AVX2: vpmaddubsw, whose u8 x s8 pair sums saturate at
// 2^15 - 1) is off by itself: on a Zen 3 EPYC its error against double was
// 3-20x ours at every base shape (e.g. conv1 0.56 against 0.028).
bool ours_off(const Row& r) {
  return r.ours_err > r.tol_ours || (r.max_diff > r.tol && r.dnnl_err <= r.tol_dnnl);
}
const char* verdict(const Row& r) {
  if (r.max_diff <= r.tol) return "";
  return ours_off(r) ? " **over**" : " over: oneDNN's error";
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int onednn_compare_main(int argc, char** argv) {
  Options o;
  if (const std::string err = parse_options(argc, argv, &o); !err.empty()) {
    std::fprintf(stderr, "amanuensis_bench: error: %s\n", err.c_str());
    return 2;
  }
  std::vector<GemmShape> shapes;
  for (const auto& m : o.models)
    for (const auto& s : encoder_shapes(m, standard_hparams(m).value()))
      if (o.layer_filter.empty() || (s.model + " " + s.layer).find(o.layer_filter) != std::string::npos)
        shapes.push_back(s);
  if (shapes.empty()) {
    std::fprintf(stderr, "amanuensis_bench: error: --layers '%s' matches no shape\n", o.layer_filter.c_str());
    return 2;
  }

  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  const dnnl_version_t* v = dnnl_version();
  std::vector<Row> rows;
  std::vector<std::string> impls(3);
  std::vector<std::string> peak_notes;
  std::vector<std::string> unsupported;  // types oneDNN cannot run on this CPU
  int failures = 0;
  for (int threads : o.threads) {
    if (!set_onednn_threads(threads)) {
      std::fprintf(stderr, "amanuensis_bench: error: omp_set_num_threads not found (oneDNN built without OpenMP?)\n");
      return 1;
    }
    ThreadPool pool(threads);
    const cpu::MachinePeaks peaks = cpu::measure_peaks(pool);
    peak_notes.push_back(std::to_string(threads) + " thread" + (threads > 1 ? "s" : "") + ": f32 " +
                         fmt("%.0f", peaks.f32_peak(selected_isa().isa)) + ", bf16 " + fmt("%.0f", peaks.bf16_gflops) +
                         ", int8 " + fmt("%.0f", peaks.int8_gops) + " GFLOP/s");
    for (ComputeType ct : o.types)
      for (const auto& s : shapes) {
        std::fprintf(stderr, "%s %s %dx%dx%d %s %dt ...", s.model.c_str(), s.layer.c_str(), s.m, s.k, s.n,
                     compute_type_name(ct), threads);
        std::fflush(stderr);
        Row r;
        try {
          r = run_one(eng, s, ct, threads, peaks, o);
        } catch (const dnnl::error& e) {
          // oneDNN 2.6 has no bf16 matmul without AVX-512 (Zen 3: "could not
          // create a primitive descriptor iterator"): a row saying so, not a
          // crash and not a failure of ours.
          std::fprintf(stderr, " oneDNN cannot run it here: %s\n", e.what());
          const std::string note = std::string(compute_type_name(ct)) + " (oneDNN: " + e.what() + ")";
          if (std::find(unsupported.begin(), unsupported.end(), note) == unsupported.end()) unsupported.push_back(note);
          continue;
        }
        std::fprintf(stderr, " ours %.3f ms, oneDNN %.3f ms, ratio %.2f (q25-q75 %.2f-%.2f, %d reps)\n", r.ours_ms,
                     r.dnnl_ms, r.dnnl_ms / r.ours_ms, r.ratio_q25, r.ratio_q75, r.reps);
        if (ours_off(r)) ++failures;
        rows.push_back(r);
        std::string& impl = impls[static_cast<int>(ct)];
        if (impl.find(r.impl) == std::string::npos) impl += (impl.empty() ? "" : ", ") + r.impl;
      }
  }

  std::printf("# Our GEMMs against oneDNN %d.%d.%d\n\n", v->major, v->minor, v->patch);
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  std::printf("Machine: %s. Our backend: %s. OMP_WAIT_POLICY=%s (bench/onednn.sh sets passive).\n\n",
              describe_cpu().substr(0, describe_cpu().find('\n')).c_str(), isa_name(selected_isa().isa),
              wait_policy ? wait_policy : "(unset: libgomp spins)");
  std::printf("Medians of the repetitions (reps), ours and oneDNN alternating, f32 activations in and f32 out, "
              "activation conversion included on both sides, weights pre-packed, outputs in %s. ratio = oneDNN ms /"
              " ours (>= 1: we are at least as fast); q25-q75: the quartiles of the repetitions' own ratios (each "
              "repetition runs both sides back to back), the spread the machine's noise gives it. %% peak: of this "
              "machine's measured peak for the type and thread count (%s). int8: ours quantizes each call's rows "
              "(min/max scan included), oneDNN's activation scale is calibrated once (its fast int8 matmul needs "
              "scales fixed at creation). max|Δ|: ours against oneDNN over the whole output; tol: the arithmetic's "
              "expected error (f32: probabilistic bound; bf16, int8: 6 sigma; bench/onednn_compare.cpp); err: max "
              "error against double on 4 sampled rows (ours / oneDNN); \"over: oneDNN's error\": the difference is "
              "oneDNN's own (its err beyond its bound, ours within ours), which is not counted as a failure.\n\n",
              o.huge_pages ? "memory advised for 2 MiB pages (--pages huge)" : "memory on 4 KiB pages (--pages 4k)",
              [&] {
                std::string s;
                for (size_t i = 0; i < peak_notes.size(); ++i) s += (i ? "; " : "") + peak_notes[i];
                return s;
              }().c_str());
  std::printf("| model | layer | M x K x N | type | threads | ours ms | oneDNN ms | ratio | q25-q75 | ours GFLOP/s "
              "| oneDNN GFLOP/s | ours %% peak | oneDNN %% peak | max\\|Δ\\| | tol | err ours / oneDNN | reps |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double g_ours = r.s.flops() / (r.ours_ms * 1e6), g_dnnl = r.s.flops() / (r.dnnl_ms * 1e6);
    std::printf("| %s | %s | %dx%dx%d | %s | %d | %.3f | %.3f | %.2f | %.2f-%.2f | %.0f | %.0f | %.0f | %.0f | %.2e "
                "| %.2e%s | %.1e / %.1e | %d |\n",
                r.s.model.c_str(), r.s.layer.c_str(), r.s.m, r.s.k, r.s.n, compute_type_name(r.ct), r.threads,
                r.ours_ms, r.dnnl_ms, r.dnnl_ms / r.ours_ms, r.ratio_q25, r.ratio_q75, g_ours, g_dnnl,
                100 * g_ours / r.peak_gflops, 100 * g_dnnl / r.peak_gflops, r.max_diff, r.tol, verdict(r), r.ours_err,
                r.dnnl_err, r.reps);
  }
  // One number per type and thread count: the geometric mean of the ratios
  // (each shape counts once, whatever its size) and the ratio of the summed
  // times (dominated by the largest shapes, like an encoder pass); and how
  // many shapes lose beyond the noise (three of four repetitions below 1).
  std::printf("\n| type | threads | shapes | geometric mean ratio | total ours ms | total oneDNN ms | total ratio | "
              "shapes with q75 < 1 |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (int threads : o.threads)
    for (ComputeType ct : o.types) {
      double log_sum = 0, ours = 0, dnnl = 0;
      int count = 0, losing = 0;
      for (const Row& r : rows)
        if (r.threads == threads && r.ct == ct) {
          log_sum += std::log(r.dnnl_ms / r.ours_ms);
          ours += r.ours_ms;
          dnnl += r.dnnl_ms;
          ++count;
          losing += r.ratio_q75 < 1.0;
        }
      if (count == 0) continue;  // oneDNN could not run the type here (listed below)
      std::printf("| %s | %d | %d | %.2f | %.1f | %.1f | %.2f | %d |\n", compute_type_name(ct), threads, count,
                  std::exp(log_sum / count), ours, dnnl, dnnl / ours, losing);
    }
  std::printf("\noneDNN implementations:");
  const char* names[3] = {"f32", "bf16", "int8"};
  for (int i = 0; i < 3; ++i)
    if (!impls[i].empty()) std::printf(" %s `%s`;", names[i], impls[i].c_str());
  std::printf("\n");
  for (const std::string& u : unsupported) std::printf("\nNot compared: %s.\n", u.c_str());
  if (failures) {
    std::fprintf(stderr, "amanuensis_bench: error: %d configuration(s) differ from oneDNN beyond the tolerance\n",
                 failures);
    return 1;
  }
  return 0;
}

#endif  // AMA_HAVE_DNNL

}  // namespace ama_bench
