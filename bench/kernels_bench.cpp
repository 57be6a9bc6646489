// Google Benchmark micro-benchmarks for every kernel of every supported ISA
// at Whisper's shapes. `--onednn-compare` runs instead the comparison of our
// GEMMs with oneDNN's matmul at every encoder shape (bench/onednn_compare.cpp,
// bench/onednn.sh; needs Debian's libdnnl-dev at build time).
//
//   build/amanuensis_bench --benchmark_filter=gemm --benchmark_repetitions=5
//     --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "audio/mel.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"


namespace {

using namespace ama;

std::vector<float> random_vec(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct Shape {
  int m, k, n;
};
// base: attention projection, MLP up and down (the 1500 x 512 x 2048),
// a decode step's MLP, and the logits; tiny and small MLP up.
const Shape kShapes[] = {{1500, 512, 512}, {1500, 512, 2048}, {1500, 2048, 512}, {1, 512, 2048},
                         {1, 512, 51865},  {1500, 384, 1536}, {1500, 768, 3072}};

void gemm(benchmark::State& state, Isa isa, ComputeType ct, Shape s) {
  CpuBackendOptions o;
  o.force_isa = true;
  o.isa = isa;
  o.compute = ct;
  auto be = std::move(make_cpu_backend(o).value());
  auto x = random_vec(static_cast<size_t>(s.m) * s.k, 1), w = random_vec(static_cast<size_t>(s.n) * s.k, 2);
  std::vector<float> y(static_cast<size_t>(s.m) * s.n);
  auto packed = be->pack(w.data(), s.n, s.k);
  for (auto _ : state) {
    be->linear(x.data(), s.m, s.k, *packed, nullptr, Activation::none, false, y.data(), s.n);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.m * s.k * s.n, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::OneK::kIs1000);
  state.counters["GFLOP/s"].value /= 1e9;
  state.counters["threads"] = be->n_threads();
}

void row_op(benchmark::State& state, Isa isa, const std::string& op, int rows, int cols) {
  const cpu::KernelTable& k = cpu::kernel_table(isa);
  auto x0 = random_vec(static_cast<size_t>(rows) * cols, 3), x = x0, g = random_vec(cols, 4), b = random_vec(cols, 5);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    if (op == "layer_norm")
      for (int r = 0; r < rows; ++r) k.layer_norm(x.data() + static_cast<size_t>(r) * cols, cols, g.data(), b.data(), 1e-5f, y.data() + static_cast<size_t>(r) * cols);
    else if (op == "gelu")
      for (int r = 0; r < rows; ++r) k.gelu(x.data() + static_cast<size_t>(r) * cols, cols);
    else if (op == "gelu_q8")
      for (int r = 0; r < rows; ++r) k.gelu_q8(x.data() + static_cast<size_t>(r) * cols, cols);
    else
      for (int r = 0; r < rows; ++r) k.softmax(x.data() + static_cast<size_t>(r) * cols, cols);
    benchmark::DoNotOptimize(x.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * rows * cols * 8);
}

void flash_attention(benchmark::State& state, Isa isa, int heads, int d_head) {
  const cpu::KernelTable& k = cpu::kernel_table(isa);
  ThreadPool pool(ThreadPool::hardware_threads());
  const int n = 1500, w = heads * d_head;
  auto q = random_vec(static_cast<size_t>(n) * w, 6), kk = random_vec(q.size(), 7), v = random_vec(q.size(), 8);
  std::vector<float> out(q.size());
  const cpu::AttentionArgs a{q.data(), n, w, n, w, heads, d_head, false, 0, out.data(), w};
  for (auto _ : state) {
    cpu::attention_flash_f32(k, pool, a, kk.data(), v.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * n * n * w, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"].value /= 1e9;
}

void decode_attention(benchmark::State& state, Isa isa, int heads, int d_head) {
  const cpu::KernelTable& k = cpu::kernel_table(isa);
  const int n = 1500, w = heads * d_head;
  auto q = random_vec(w, 9), kv = random_vec(static_cast<size_t>(n) * w, 10);
  std::vector<uint16_t> kv16(kv.size());
  for (size_t i = 0; i < kv.size(); ++i) kv16[i] = static_cast<uint16_t>(std::bit_cast<uint32_t>(kv[i]) >> 16);
  std::vector<float> scratch(n), out(w);
  for (auto _ : state) {
    for (int h = 0; h < heads; ++h)
      k.attend_row_bf16(q.data() + h * d_head, kv16.data() + h * d_head, kv16.data() + h * d_head, n, w, d_head,
                        0.125f, scratch.data(), out.data() + h * d_head);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * w * 2 * 2);
}

void log_mel(benchmark::State& state) {
  std::vector<float> filters(80 * 201, 0.0f);
  for (int m = 0; m < 80; ++m) filters[m * 201 + 2 * m] = 1.0f;
  LogMel lm(filters, 80);
  auto audio = random_vec(480000, 11);
  std::vector<float> out(80 * 3000);
  for (auto _ : state) {
    lm.raw_frames(audio.data(), audio.size(), 0, 3000, out.data(), 3000);
    benchmark::DoNotOptimize(out.data());
  }
}


std::string shape_name(Shape s) { return std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n); }

int register_all() {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx}) {
    if (!isa_supported(isa)) continue;
    const cpu::KernelTable& k = cpu::kernel_table(isa);
    for (const Shape& s : kShapes) {
      if (isa == Isa::scalar && static_cast<double>(s.m) * s.k * s.n > 1e9) continue;  // minutes per run
      for (ComputeType ct : {ComputeType::f32, ComputeType::bf16, ComputeType::int8}) {
        const char* name = ct == ComputeType::f32 ? k.gemm_f32_name : ct == ComputeType::bf16 ? k.gemm_bf16_name : k.gemm_i8_name;
        benchmark::RegisterBenchmark((std::string(name) + "/" + shape_name(s)).c_str(),
                                     [isa, ct, s](benchmark::State& st) { gemm(st, isa, ct, s); })
            ->Unit(benchmark::kMillisecond)->UseRealTime();
      }
    }
    for (const std::string op : {"layer_norm", "gelu", "gelu_q8", "softmax"}) {
      const int cols = op.rfind("gelu", 0) == 0 ? 2048 : op == "softmax" ? 1500 : 512;
      benchmark::RegisterBenchmark((op + "_f32__" + isa_name(isa) + "/1500x" + std::to_string(cols)).c_str(),
                                   [isa, op, cols](benchmark::State& st) { row_op(st, isa, op, 1500, cols); })
          ->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark((std::string("attention_flash_f32__") + isa_name(isa) + "/base_8x1500x64").c_str(),
                                 [isa](benchmark::State& st) { flash_attention(st, isa, 8, 64); })
        ->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark((std::string(k.attend_name) + "_bf16kv/base_cross_8x1500x64").c_str(),
                                 [isa](benchmark::State& st) { decode_attention(st, isa, 8, 64); })
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("log_mel_f64_fft400_mixed_radix/30s", log_mel)->Unit(benchmark::kMillisecond);
  return 0;
}

const int registered = register_all();

}  // namespace

namespace ama_bench {
int onednn_compare_main(int argc, char** argv);  // bench/onednn_compare.cpp
}

// With --onednn-compare: our GEMMs against oneDNN's (bench/onednn.sh);
// otherwise Google Benchmark's command line.
int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--onednn-compare") return ama_bench::onednn_compare_main(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
