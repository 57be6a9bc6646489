// Google Benchmark of the hand-offs around one encoder layer's attention at
// base's shape (1500 positions, 512 wide, 8 heads of 64), at the int8
// compute type on this CPU's ISA: the attention LayerNorm + Q/K GEMM (int8),
// the V GEMM (bf16), the attention and the output projection (bf16, with
// the residual add), as Encoder::run calls them, with
//   f32:      Q/K/V and the attention's output in f32 (each converted to
//             bf16 where it is read: the session-start encoder);
//   bf16_out: the attention's output in bf16, read in place by the output
//             projection (Backend::attention_mixed, linear_bf16_in);
//   bf16_all: Q/K/V also written as bf16 by the GEMMs (the encoder now).
// The min over repetitions is the figure to compare on a shared machine.
//
//   build/amanuensis_bench --benchmark_filter=attention_handoff
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace {

using namespace ama;

constexpr int kCtx = 1500, kN = 512, kHeads = 8;

std::vector<float> random_vec(size_t n, unsigned seed, float scale) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// One layer's attention block: weights, inputs and buffers, and run(variant).
struct Block {
  std::unique_ptr<Backend> be;
  std::unique_ptr<PackedMatrix> qk, pv, po;
  std::vector<float> bias, g1, beta, x, y, qkv, att;
  std::vector<uint16_t> qkv16, att16;
  std::string error;

  explicit Block(int threads) {
    CpuBackendOptions o;
    o.n_threads = threads;
    o.compute = ComputeType::int8;
    auto made = make_cpu_backend(o);
    if (!made.ok()) {
      error = made.message();
      return;
    }
    be = std::move(made.value());
    const auto wq = random_vec(static_cast<size_t>(kN) * kN, 1, 0.044f), wk = random_vec(wq.size(), 2, 0.044f),
               wv = random_vec(wq.size(), 3, 0.044f), wo = random_vec(wq.size(), 4, 0.044f);
    const auto pq = be->pack_as(wq.data(), kN, kN, ComputeType::int8), pk = be->pack_as(wk.data(), kN, kN, ComputeType::int8);
    auto stacked = be->stack_packed({pq.get(), pk.get()});
    if (!stacked.ok()) {
      error = stacked.message();
      return;
    }
    qk = std::move(stacked.value());
    pv = be->pack_as(wv.data(), kN, kN, ComputeType::bf16);
    po = be->pack_as(wo.data(), kN, kN, ComputeType::bf16);
    bias = random_vec(2 * kN, 5, 0.1f);
    const auto gamma = random_vec(kN, 6, 0.1f);
    beta = random_vec(kN, 7, 0.1f);
    g1.resize(kN);
    for (int i = 0; i < kN; ++i) g1[i] = 1.0f + gamma[i];
    x = random_vec(static_cast<size_t>(kCtx) * kN, 8, 1.0f);
    y.assign(x.size(), 0.0f);
    qkv.resize(static_cast<size_t>(kCtx) * 3 * kN);
    att.resize(x.size());
    qkv16.resize(qkv.size());
    att16.resize(att.size());
  }

  void run(int variant) {
    const PreNorm ln{g1.data(), beta.data(), 1e-5f};
    LinearOutput out;
    out.ldy = 3 * kN;
    if (variant == 2)
      out.y_bf16 = qkv16.data();
    else
      out.y = qkv.data();
    be->linear_fused(x.data(), kCtx, kN, &ln, *qk, bias.data(), Activation::none, false, out);
    if (variant == 2)
      out.y_bf16 = qkv16.data() + 2 * kN;
    else
      out.y = qkv.data() + 2 * kN;
    be->linear_fused(x.data(), kCtx, kN, &ln, *pv, bias.data(), Activation::none, false, out);
    LinearOutput res;
    res.y = y.data();
    res.ldy = kN;
    if (variant == 0) {
      be->attention(qkv.data(), kCtx, 3 * kN, qkv.data() + kN, qkv.data() + 2 * kN, kCtx, 3 * kN, kHeads, 64, false,
                    0, att.data(), kN);
      be->linear_fused(att.data(), kCtx, kN, nullptr, *po, bias.data(), Activation::none, true, res);
    } else {
      AttentionOperands io;
      if (variant == 1)
        io.q = qkv.data(), io.k = qkv.data() + kN, io.v = qkv.data() + 2 * kN;
      else
        io.q_bf16 = qkv16.data(), io.k_bf16 = qkv16.data() + kN, io.v_bf16 = qkv16.data() + 2 * kN;
      io.ld_q = io.ld_kv = 3 * kN;
      io.out_bf16 = att16.data(), io.ld_out = kN;
      be->attention_mixed(io, kCtx, kCtx, kHeads, 64, false, 0);
      be->linear_bf16_in(att16.data(), kCtx, kN, *po, bias.data(), Activation::none, true, res);
    }
    benchmark::DoNotOptimize(y.data());
  }
};

const char* kNames[] = {"f32", "bf16_out", "bf16_all"};

void attention_handoff(benchmark::State& state) {
  const int variant = static_cast<int>(state.range(0));
  Block b(static_cast<int>(state.range(1)));
  if (!b.error.empty()) {
    state.SkipWithError(b.error.c_str());
    return;
  }
  for (auto _ : state) b.run(variant);
  state.SetLabel(kNames[variant]);
}
BENCHMARK(attention_handoff)
    ->ArgsProduct({{0, 1, 2}, {1, 2}})
    ->ArgNames({"variant", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Repetitions(7)
    ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });

// The three variants in turn, one call each per iteration, so that a
// shared machine's load hits them alike: counters min_<variant>_ms and
// median_<variant>_ms over the iterations.
void attention_handoff_interleaved(benchmark::State& state) {
  Block b(static_cast<int>(state.range(0)));
  if (!b.error.empty()) {
    state.SkipWithError(b.error.c_str());
    return;
  }
  std::vector<double> ms[3];
  for (auto _ : state)
    for (int v = 0; v < 3; ++v) {
      const auto t0 = std::chrono::steady_clock::now();
      b.run(v);
      ms[v].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  for (int v = 0; v < 3; ++v) {
    std::sort(ms[v].begin(), ms[v].end());
    state.counters[std::string("min_") + kNames[v] + "_ms"] = ms[v].front();
    state.counters[std::string("median_") + kNames[v] + "_ms"] = ms[v][ms[v].size() / 2];
  }
}
BENCHMARK(attention_handoff_interleaved)->ArgName("threads")->Arg(1)->Arg(2)->Iterations(40)->Unit(benchmark::kMillisecond);

}  // namespace
