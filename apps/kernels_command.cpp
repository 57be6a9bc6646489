// The kernel harness: runs each kernel of each ISA at Whisper's real shapes
// and reports average, standard deviation and minimum time, throughput, the
// share of this machine's peak (measured here, in the same run), and the
// error against the plain scalar reference.
#include "kernels_command.h"

#include "command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "audio/mel.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/flash_attention.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/peak.h"
#include "core/half.h"
#include "model/hparams.h"

namespace ama {

namespace {

struct Timing {
  double avg = 0, std = 0, min = 0;  // ms
};

Timing time_it(int iters, const std::function<void()>& fn) {
  fn();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  Timing r;
  for (double v : t) r.avg += v;
  r.avg /= t.size();
  for (double v : t) r.std += (v - r.avg) * (v - r.avg);
  r.std = std::sqrt(r.std / t.size());
  r.min = *std::min_element(t.begin(), t.end());
  return r;
}

std::vector<float> random_vec(size_t n, unsigned seed, float scale) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<uint16_t> to_bf16_vec(const std::vector<float>& x) {
  std::vector<uint16_t> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = f32_to_bf16(x[i]);
  return y;
}

struct Row {
  Row(std::string k, std::string i, std::string s) : kernel(std::move(k)), isa(std::move(i)), shape(std::move(s)) {}
  Row() = default;
  std::string kernel, isa, shape;
  Timing t;
  double rate = 0;       // GFLOP/s or GB/s
  const char* unit = "";
  double peak_pct = 0;   // of the matching measured peak
  double max_abs = 0, max_rel = 0;
};

// max_rel is normwise: the largest error over the largest reference
// magnitude (elementwise ratios blow up at values near zero).
struct ErrorStats {
  double max_abs = 0, max_rel = 0, max_ref = 0;
  void add(double ours, double ref) {
    max_abs = std::max(max_abs, std::fabs(ours - ref));
    max_ref = std::max(max_ref, std::fabs(ref));
    max_rel = max_ref > 0 ? max_abs / max_ref : 0;
  }
};

struct Gemm {
  int m, k, n;
  std::string what;
  bool prenorm = false;  // linear_fused with the LayerNorm in the conversion (and GELU for an MLP up)
  bool bf16_out = false;  // linear_fused writing bf16 (the cross-attention K/V)
};

std::vector<Gemm> gemm_shapes(const HParams& hp, const std::string& arch) {
  const int d = hp.n_audio_state;
  return {{kAudioCtx, d, d, arch + " attn proj"},   {kAudioCtx, d, 4 * d, arch + " mlp up"},
          {kAudioCtx, 4 * d, d, arch + " mlp down"}, {1, d, 4 * d, arch + " decode mlp"},
          {5, d, 4 * d, arch + " decode x5 mlp"},     {1, d, hp.n_vocab, arch + " logits"},
          // The encoder's fused ops and a window's stacked cross-attention K (or V).
          // Q/K/V stacked (at int8 compute the model corrects only V's rows:
          // the +bc row, which corrects all three, bounds its cost).
          {kAudioCtx, d, 3 * d, arch + " qkv +ln", true},
          {kAudioCtx, d, 4 * d, arch + " mlp up +ln+gelu", true},
          {kAudioCtx, hp.n_text_state, hp.n_text_layer * hp.n_text_state, arch + " cross k/v x" + std::to_string(hp.n_text_layer) + " bf16 out", false, true}};
}

}  // namespace

Result<std::string> run_kernel_harness(const KernelsOptions& o) {
  if (o.iters < 1 || o.iters > 100000) return make_error("--iters must be in [1, 100000]");
  std::vector<Isa> isas;
  if (!o.isa.empty()) {
    Isa i;
    if (!parse_isa(o.isa, &i)) return make_error("unknown ISA '" + o.isa + "' (scalar, avx2, avx512, amx)");
    if (!isa_supported(i)) return make_error(std::string("ISA ") + o.isa + " is not supported by this CPU");
    isas.push_back(i);
  } else {
    for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx})
      if (isa_supported(i)) isas.push_back(i);
  }
  std::vector<std::string> archs;
  if (o.arch == "all")
    archs = {"tiny", "base", "small", "medium", "large-v3"};
  else
    archs = {o.arch};
  std::vector<std::pair<std::string, HParams>> models;
  for (const auto& a : archs) {
    auto hp = standard_hparams(a);
    if (!hp) return hp.error();
    models.emplace_back(a, *hp);
  }
  std::vector<Gemm> custom;
  int shape_rows = 0, shape_cols = 0;
  if (!o.shape.empty()) {
    int a = 0, b = 0, c = 0;
    if (std::sscanf(o.shape.c_str(), "%dx%dx%d", &a, &b, &c) == 3 && a > 0 && b > 0 && c > 0 && a <= 100000 &&
        b <= 100000 && c <= 200000)
      custom.push_back({a, b, c, "custom"});
    else if (std::sscanf(o.shape.c_str(), "%dx%d", &a, &b) == 2 && a > 0 && b > 0 && a <= 100000 && b <= 200000)
      shape_rows = a, shape_cols = b;
    else
      return make_error("--shape must be MxKxN (GEMM) or ROWSxCOLS (row ops), e.g. 1500x512x2048");
  }
  auto wanted = [&](const std::string& name) { return o.kernel.empty() || name.find(o.kernel) != std::string::npos; };

  const int threads = o.threads > 0 ? o.threads : ThreadPool::hardware_threads();
  ThreadPool peak_pool(threads);
  const cpu::MachinePeaks peaks = cpu::measure_peaks(peak_pool);
  std::vector<Row> rows;

  for (Isa isa : isas) {
    const cpu::KernelTable& kt = cpu::kernel_table(isa);
    // GEMMs through the backend: packing excluded, threading and epilogue included.
    // int8_bc (backend.h): the int8 kernel plus its mean correction, at
    // the shapes the model runs it at (the encoder's attention projections
    // and the cross-attention values).
    for (ComputeType ct : {ComputeType::f32, ComputeType::bf16, ComputeType::int8, ComputeType::int8_bc}) {
      const bool bc = ct == ComputeType::int8_bc;
      const std::string name = ct == ComputeType::f32    ? kt.gemm_f32_name
                               : ct == ComputeType::bf16 ? kt.gemm_bf16_name
                               : bc                      ? std::string(kt.gemm_i8_name) + "+bc"
                                                         : kt.gemm_i8_name;
      if (!wanted(name)) continue;
      CpuBackendOptions bo;
      bo.force_isa = true;
      bo.isa = isa;
      bo.compute = ct;
      bo.n_threads = threads;
      auto be = make_cpu_backend(bo);
      if (!be) return be.error();
      std::vector<Gemm> shapes = custom;
      if (shapes.empty())
        for (const auto& [a, hp] : models)
          for (const auto& g : gemm_shapes(hp, a))
            if (!bc || g.what.find("attn proj") != std::string::npos || g.what.find("qkv") != std::string::npos ||
                g.what.find("cross") != std::string::npos)
              shapes.push_back(g);
      for (const Gemm& g : shapes) {
        // Scalar f32 at full encoder shapes takes seconds per call: fewer iterations.
        const int iters = isa == Isa::scalar && static_cast<double>(g.m) * g.k * g.n > 1e8 ? std::min(o.iters, 2) : o.iters;
        auto x = random_vec(static_cast<size_t>(g.m) * g.k, 1, 1.0f);
        auto w = random_vec(static_cast<size_t>(g.n) * g.k, 2, 1.0f / std::sqrt(static_cast<float>(g.k)));
        std::vector<float> y(static_cast<size_t>(g.m) * g.n);
        std::vector<uint16_t> y16(g.bf16_out ? y.size() : 0);
        auto packed = (*be)->pack(w.data(), g.n, g.k);
        auto gamma = random_vec(g.k, 6, 0.1f), beta = random_vec(g.k, 7, 0.1f);
        for (auto& v : gamma) v += 1.0f;
        const PreNorm norm{gamma.data(), beta.data(), 1e-5f};
        Row r;
        r.kernel = name;
        r.isa = isa_name(isa);
        r.shape = std::to_string(g.m) + "x" + std::to_string(g.k) + "x" + std::to_string(g.n) + " (" + g.what + ")";
        LinearOutput out;
        out.ldy = g.n;
        if (g.bf16_out) {  // split into per-layer blocks as the decoder reads them
          out.y_bf16 = y16.data();
          out.ldy = g.k;
          out.split = g.k;
          out.split_stride = static_cast<size_t>(g.m) * g.k;
        } else {
          out.y = y.data();
        }
        // MLP up's GELU as the model runs it: the cheaper one where MLP down
        // quantizes its input to 8 bits (whisper_model.cpp, load_weights).
        const bool gelu = g.prenorm && g.n == 4 * g.k;
        const Activation act = !gelu                      ? Activation::none
                               : ct != ComputeType::bf16 && ct != ComputeType::f32 ? Activation::gelu_q8
                                                         : Activation::gelu;
        if (gelu && ct == ComputeType::int8) r.shape += " q8";
        r.t = time_it(iters, [&] {
          (*be)->linear_fused(x.data(), g.m, g.k, g.prenorm ? &norm : nullptr, *packed, nullptr, act, false, out);
        });
        // The error columns compare plain GEMMs with the f32 reference: run
        // the plain op once for them.
        if (g.prenorm || g.bf16_out)
          (*be)->linear(x.data(), g.m, g.k, *packed, nullptr, Activation::none, false, y.data(), g.n);
        r.rate = 2.0 * g.m * g.k * g.n / (r.t.min * 1e-3) * 1e-9;
        r.unit = "GFLOP/s";
        double peak = peaks.f32_peak(isa);
        const bool i8 = ct == ComputeType::int8 || bc;
        if (ct == ComputeType::bf16 && name.find("avx512bf16") != std::string::npos) peak = peaks.bf16_gflops;
        if (i8 && name.find("vnni") != std::string::npos) peak = peaks.int8_gops;
        if (i8 && isa == Isa::avx2) peak = peaks.int8_avx2_gops;
        if (isa == Isa::amx && ct == ComputeType::bf16) peak = peaks.amx_bf16_gflops;
        if (isa == Isa::amx && i8) peak = peaks.amx_int8_gops;
        r.peak_pct = peak > 0 ? 100.0 * r.rate / peak : 0;
        // Error against the scalar f32 reference on a spread of rows.
        ErrorStats e;
        for (int i = 0; i < g.m; i += std::max(1, g.m / 16)) {
          std::vector<float> ref(g.n);
          cpu::ref::gemm_f32(x.data() + static_cast<size_t>(i) * g.k, 1, g.k, w.data(), g.n, ref.data());
          for (int j = 0; j < g.n; ++j) e.add(y[static_cast<size_t>(i) * g.n + j], ref[j]);
        }
        r.max_abs = e.max_abs;
        r.max_rel = e.max_rel;
        rows.push_back(r);
      }
    }

    // Row ops: bandwidth-bound, so reported in GB/s against the read bandwidth.
    ThreadPool pool(threads);
    for (const auto& [a, hp] : models) {
      const int d = hp.n_audio_state;
      const int lr = shape_rows ? shape_rows : kAudioCtx, lc = shape_cols ? shape_cols : d;
      if (wanted("layer_norm")) {
        auto x = random_vec(static_cast<size_t>(lr) * lc, 3, 2.0f), g = random_vec(lc, 4, 1.0f), b = random_vec(lc, 5, 1.0f);
        std::vector<float> y(x.size()), ref(lc);
        Row r{std::string("layer_norm_f32__") + isa_name(isa), isa_name(isa), std::to_string(lr) + "x" + std::to_string(lc) + " (" + a + ")"};
        r.t = time_it(o.iters, [&] {
          pool.parallel_for(lr, 16, [&](size_t b0, size_t b1) {
            for (size_t i = b0; i < b1; ++i) kt.layer_norm(x.data() + i * lc, lc, g.data(), b.data(), 1e-5f, y.data() + i * lc);
          });
        });
        r.rate = 2.0 * x.size() * 4 / (r.t.min * 1e-3) * 1e-9;
        r.unit = "GB/s";
        r.peak_pct = 100.0 * r.rate / peaks.read_gbs;
        ErrorStats e;
        for (int i = 0; i < lr; i += std::max(1, lr / 16)) {
          cpu::ref::layer_norm(x.data() + static_cast<size_t>(i) * lc, lc, g.data(), b.data(), 1e-5f, ref.data());
          for (int j = 0; j < lc; ++j) e.add(y[static_cast<size_t>(i) * lc + j], ref[j]);
        }
        r.max_abs = e.max_abs, r.max_rel = e.max_rel;
        rows.push_back(r);
      }
      for (const bool q8 : {false, true}) {
        const std::string kname = std::string(q8 ? "gelu_q8_f32__" : "gelu_f32__") + isa_name(isa);
        if (!wanted(kname)) continue;
        const auto fn = q8 ? kt.gelu_q8 : kt.gelu;
        const int gc = shape_cols ? shape_cols : 4 * d;
        auto x0 = random_vec(static_cast<size_t>(lr) * gc, 6, 2.0f);
        std::vector<float> x = x0;
        Row r{kname, isa_name(isa), std::to_string(lr) + "x" + std::to_string(gc) + " (" + a + ")"};
        r.t = time_it(o.iters, [&] {
          x = x0;
          pool.parallel_for(lr, 16, [&](size_t b0, size_t b1) {
            for (size_t i = b0; i < b1; ++i) fn(x.data() + i * gc, gc);
          });
        });
        r.rate = 2.0 * x.size() * 4 / (r.t.min * 1e-3) * 1e-9;
        r.unit = "GB/s";
        r.peak_pct = 100.0 * r.rate / peaks.read_gbs;
        ErrorStats e;
        // Against the exact erf form, for both: gelu_q8's max abs shows its fit (<= 7.9e-5).
        for (size_t i = 0; i < x.size(); i += 7) e.add(x[i], cpu::ref::gelu(x0[i]));
        r.max_abs = e.max_abs, r.max_rel = e.max_rel;
        rows.push_back(r);
      }
      if (wanted("softmax")) {
        const int sc = shape_cols ? shape_cols : kAudioCtx;
        auto x0 = random_vec(static_cast<size_t>(lr) * sc, 7, 3.0f);
        std::vector<float> x = x0;
        Row r{std::string("softmax_f32__") + isa_name(isa), isa_name(isa), std::to_string(lr) + "x" + std::to_string(sc)};
        r.t = time_it(o.iters, [&] {
          x = x0;
          pool.parallel_for(lr, 16, [&](size_t b0, size_t b1) {
            for (size_t i = b0; i < b1; ++i) kt.softmax(x.data() + i * sc, sc);
          });
        });
        r.rate = 2.0 * x.size() * 4 / (r.t.min * 1e-3) * 1e-9;
        r.unit = "GB/s";
        r.peak_pct = 100.0 * r.rate / peaks.read_gbs;
        ErrorStats e;
        std::vector<float> ref(sc);
        for (int i = 0; i < lr; i += std::max(1, lr / 16)) {
          std::copy(x0.begin() + static_cast<size_t>(i) * sc, x0.begin() + static_cast<size_t>(i + 1) * sc, ref.begin());
          cpu::ref::softmax(ref.data(), sc);
          for (int j = 0; j < sc; ++j) e.add(x[static_cast<size_t>(i) * sc + j], ref[j]);
        }
        r.max_abs = e.max_abs, r.max_rel = e.max_rel;
        rows.push_back(r);
      }
      const int dh_all = d / hp.n_audio_head;
      const std::vector<cpu::FlashKernel> fks = cpu::flash_kernels(kt);
      // bf16 with d_head 64 (every Whisper size) runs the dedicated flash
      // kernels (flash_attention.h), each of this ISA's (the first is the one
      // the model uses); other head sizes the GEMM-tile flash.
      const int variants = 1 + (dh_all == cpu::kFlashDim ? static_cast<int>(fks.size()) : 1);
      for (int vi = 0; vi < variants; ++vi) {
        const bool bf16 = vi > 0;
        const int heads = hp.n_audio_head, dh = d / heads, n = kAudioCtx;
        const cpu::FlashKernel fk = fks[std::max(0, vi - 1)];
        const bool dedicated = bf16 && dh == cpu::kFlashDim;
        const int tile_rows = bf16 ? kt.gemm_bf16_rows : kt.gemm_rows;
        const std::string kname = dedicated ? std::string("attention_") + fk.name
                                            : std::string(bf16 ? "attention_flash_bf16_" : "attention_flash_f32_") +
                                                  std::to_string(tile_rows) + "x128__" + isa_name(isa);
        if (!wanted(kname)) continue;
        auto q = random_vec(static_cast<size_t>(n) * d, 8, 1.0f), k = random_vec(static_cast<size_t>(n) * d, 9, 1.0f),
             v = random_vec(static_cast<size_t>(n) * d, 10, 1.0f);
        std::vector<float> out(q.size());
        cpu::AttentionArgs args{q.data(), n, d, n, d, heads, dh, false, 0, out.data(), d};
        // The dedicated kernels run as the encoder calls them (encoder.cpp):
        // Q, K and V in bf16 as its fused Q/K/V GEMM writes them, the output
        // in bf16 for the O projection. Timing them on f32 inputs and output
        // added conversions the model never runs: on a Zen 5 core the f32 K/V
        // packing and Q rounding were 9% of the call's samples.
        std::vector<uint16_t> q16, k16, v16, out16;
        if (dedicated) {
          q16 = to_bf16_vec(q), k16 = to_bf16_vec(k), v16 = to_bf16_vec(v), out16.resize(out.size());
          // The reference then takes the values the kernel is given.
          for (size_t i = 0; i < q.size(); ++i)
            q[i] = bf16_to_f32(q16[i]), k[i] = bf16_to_f32(k16[i]), v[i] = bf16_to_f32(v16[i]);
          args.q = nullptr, args.q_bf16 = q16.data(), args.out = nullptr, args.out_bf16 = out16.data();
        }
        Row r{kname, isa_name(isa),
              std::to_string(heads) + "x" + std::to_string(n) + "x" + std::to_string(n) + "x" + std::to_string(dh) + " (" + a + " encoder)"};
        const int iters = isa == Isa::scalar ? std::min(o.iters, 2) : o.iters;
        r.t = time_it(iters, [&] {
          if (dedicated)
            cpu::attention_flash_d64(kt, fk, pool, args, k16.data(), v16.data());
          else if (bf16)
            cpu::attention_flash_bf16(kt, pool, args, k.data(), v.data(), true);
          else
            cpu::attention_flash_f32(kt, pool, args, k.data(), v.data());
        });
        r.rate = 4.0 * n * n * d / (r.t.min * 1e-3) * 1e-9;
        r.unit = "GFLOP/s";
        // The share of the peak of the instruction that does the work: the
        // dedicated kernels' vdpbf16ps or AMX tiles, or (the portable kernel,
        // f32 arithmetic on widened bf16) the f32 multiply-add.
        double peak = peaks.f32_peak(isa);
        const std::string used = dedicated ? fk.name : kt.gemm_bf16_name;
        if (bf16 && used.find("avx512bf16") != std::string::npos) peak = peaks.bf16_gflops;
        // Q K^T in int8, P V in bf16: half the operations at each peak, so
        // the floor is the sum of the two halves' times, a rate of
        // 2 / (1 / int8 + 1 / bf16) (Zen 4, 2 threads: 455 and 245 give 318).
        if (bf16 && used.find("avx512vnni_bf16") != std::string::npos && peaks.int8_gops > 0 && peaks.bf16_gflops > 0)
          peak = 2.0 / (1.0 / peaks.int8_gops + 1.0 / peaks.bf16_gflops);
        // Both products in int8 (flash_d64_6x64__avx512vnni): the int8 peak.
        if (bf16 && dedicated && fk.int8_v && peaks.int8_gops > 0) peak = peaks.int8_gops;
        if (bf16 && isa == Isa::amx) peak = peaks.amx_bf16_gflops;
        r.peak_pct = peak > 0 ? 100.0 * r.rate / peak : 0;
        // Reference: exact softmax attention in double for a few queries of head 0.
        for (size_t i = 0; i < out16.size(); ++i) out[i] = bf16_to_f32(out16[i]);
        ErrorStats e;
        const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
        for (int i = 0; i < n; i += n / 8) {
          std::vector<double> s(n);
          double mx = -1e300, sum = 0;
          for (int j = 0; j < n; ++j) {
            double t = 0;
            for (int c = 0; c < dh; ++c) t += static_cast<double>(q[static_cast<size_t>(i) * d + c]) * k[static_cast<size_t>(j) * d + c];
            s[j] = t * scale;
            mx = std::max(mx, s[j]);
          }
          for (auto& t : s) sum += t = std::exp(t - mx);
          for (int c = 0; c < dh; ++c) {
            double acc = 0;
            for (int j = 0; j < n; ++j) acc += s[j] / sum * v[static_cast<size_t>(j) * d + c];
            e.add(out[static_cast<size_t>(i) * d + c], acc);
          }
        }
        r.max_abs = e.max_abs, r.max_rel = e.max_rel;
        rows.push_back(r);
      }
    }
  }
  // Log-mel of one 30 s window (ISA-independent: double-precision mixed-radix FFT).
  if (wanted("log_mel")) {
    const std::vector<float> filters = slaney_mel_filters(80);
    LogMel lm(filters, 80);
    auto audio = random_vec(kNSamplesPerWindow, 11, 0.1f);
    std::vector<float> out(80 * 3000);
    Row r{"log_mel_f64_fft400_mixed_radix", "any", "80x3000 (30 s window)"};
    r.t = time_it(o.iters, [&] { lm.raw_frames(audio.data(), audio.size(), 0, 3000, out.data(), 3000); });
    // Reference: a plain 400-point DFT of each windowed frame and the dense
    // filterbank, in double, at the first, last and a few middle frames
    // (both halves of a complex FFT's frame pair, and the reflected start).
    ErrorStats e;
    for (int t : {0, 1, 2, 1499, 1500, 2998, 2999}) {
      double ref[80];
      log_mel_frame_reference(audio.data(), audio.size(), t, filters, 80, ref);
      for (int m = 0; m < 80; ++m) e.add(out[static_cast<size_t>(m) * 3000 + t], ref[m]);
    }
    r.max_abs = e.max_abs;
    r.max_rel = e.max_rel;
    r.rate = audio.size() * 4.0 / (r.t.min * 1e-3) * 1e-9;
    r.unit = "GB/s";
    r.peak_pct = 100.0 * r.rate / peaks.read_gbs;
    rows.push_back(r);
  }

  nlohmann::json j;
  j["threads"] = threads;
  j["peaks"] = {{"f32_gflops_scalar", peaks.f32_gflops[0]}, {"f32_gflops_avx2", peaks.f32_gflops[1]},
                {"f32_gflops_avx512", peaks.f32_gflops[2]}, {"bf16_gflops_avx512", peaks.bf16_gflops},
                {"int8_gops_avx512vnni", peaks.int8_gops}, {"int8_gops_avx2", peaks.int8_avx2_gops}, {"amx_bf16_gflops", peaks.amx_bf16_gflops},
                {"amx_int8_gops", peaks.amx_int8_gops}, {"read_gbs", peaks.read_gbs}};
  j["kernels"] = nlohmann::json::array();
  for (const Row& r : rows)
    j["kernels"].push_back({{"kernel", r.kernel}, {"isa", r.isa}, {"shape", r.shape}, {"avg_ms", r.t.avg},
                            {"std_ms", r.t.std}, {"min_ms", r.t.min}, {"rate", r.rate}, {"unit", r.unit},
                            {"peak_pct", r.peak_pct}, {"max_abs_err", r.max_abs}, {"max_rel_err", r.max_rel}});
  if (o.json) return j.dump(1) + "\n";
  std::ostringstream s;
  char buf[768];
  char amx[96] = "absent";
  if (peaks.amx_bf16_gflops > 0)
    std::snprintf(amx, sizeof amx, "bf16 %.0f GFLOP/s, int8 %.0f GOP/s", peaks.amx_bf16_gflops, peaks.amx_int8_gops);
  std::snprintf(buf, sizeof buf,
                "measured peaks at %d threads: f32 multiply-add %.0f (scalar, SSE2) / %.0f (avx2) / %.0f (avx512) GFLOP/s, "
                "bf16 dot %.0f GFLOP/s, int8 dot %.0f (avx512 vnni) / %.0f (avx2 vpmaddwd) GOP/s, AMX %s, read %.1f GB/s\n"
                "(row ops: %% of DRAM read bandwidth, so in-cache shapes can exceed 100%%; "
                "max rel = max abs error / max |reference|)\n",
                threads, peaks.f32_gflops[0], peaks.f32_gflops[1], peaks.f32_gflops[2], peaks.bf16_gflops,
                peaks.int8_gops, peaks.int8_avx2_gops, amx, peaks.read_gbs);
  s << buf;
  std::snprintf(buf, sizeof buf, "%-34s %-7s %-40s %9s %8s %9s %10s %6s %9s %9s\n", "kernel", "isa", "shape", "avg ms",
                "std ms", "min ms", "rate", "%peak", "max abs", "max rel");
  s << buf;
  for (const Row& r : rows) {
    std::snprintf(buf, sizeof buf, "%-34s %-7s %-40s %9.3f %8.3f %9.3f %6.1f %-4s %5.1f%% %9.2e %9.2e\n",
                  r.kernel.c_str(), r.isa.c_str(), r.shape.c_str(), r.t.avg, r.t.std, r.t.min, r.rate,
                  std::string(r.unit) == "GB/s" ? "GB/s" : "GF/s", r.peak_pct, r.max_abs, r.max_rel);
    s << buf;
  }
  return s.str();
}

}  // namespace ama

namespace ama::cli {

Command add_kernels_command(CLI::App& root) {
  auto* sub = root.add_subcommand("kernels", "the kernel harness: time and check each kernel at Whisper's shapes");
  auto o = std::make_shared<KernelsOptions>();
  sub->add_option("--kernel", o->kernel, "only kernels whose name contains this");
  sub->add_option("--shape", o->shape, "MxKxN for GEMMs, ROWSxCOLS for row ops");
  sub->add_option("--isa", o->isa, "scalar|avx2|avx512|amx (default: every supported one)");
  sub->add_option("--arch", o->arch, "Whisper shapes: tiny|base|small|medium|large-v3|all");
  sub->add_option("--iters", o->iters, "timed iterations (after one warm-up)");
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_flag("--json", o->json, "print JSON");
  return {sub, [o] {
            auto report = run_kernel_harness(*o);
            if (!report) return fail(report.message());
            std::printf("%s", report->c_str());
            return 0;
          }};
}

}  // namespace ama::cli
