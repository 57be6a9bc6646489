#include "backend/cpu/peak.h"

// GCC 12 warns inside its own AVX-512 headers (the masked builtins' undefined
// pass-through operand): a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <cstdint>
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

namespace ama::cpu {

// kernels_amx.cpp (compiled with the AMX flags).
double amx_bf16_flops_per_call();
float amx_bf16_peak_loop(long iters);
float amx_i8_peak_loop(long iters);

namespace {

// Each loop keeps 12 independent accumulator chains: enough to cover the
// FMA latency (4 cycles) times the number of FMA pipes (2) on current cores.
// The "scalar" kernels are plain C++ built for baseline x86-64, which the
// compiler vectorizes with SSE2: their peak is 4-wide multiply plus add.
float chain_scalar(long iters) {
  __m128 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm_set1_ps(1.0f + i * 1e-3f);
  const __m128 m = _mm_set1_ps(0.999999f), c = _mm_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm_add_ps(_mm_mul_ps(a[i], m), c);
  __m128 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm_add_ps(s, a[i]);
  float out[4];
  _mm_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx2,fma"))) float chain_avx2(long iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

// The AVX2 int8 tiles' step (kernels_avx2.cpp): acc += vpmaddwd(a, b), two
// s16 products per 32-bit lane, in asm: with intrinsics GCC hoists the
// loop-invariant vpmaddwd out of the loop and times the adds alone.
__attribute__((target("avx2"))) static inline void madd4(__m256i& a0, __m256i& a1, __m256i& a2, __m256i& a3, __m256i x,
                                                         __m256i y) {
  __m256i t0, t1, t2, t3;
  asm("vpmaddwd %[y], %[x], %[t0]\n\tvpaddd %[t0], %[a0], %[a0]\n\t"
      "vpmaddwd %[y], %[x], %[t1]\n\tvpaddd %[t1], %[a1], %[a1]\n\t"
      "vpmaddwd %[y], %[x], %[t2]\n\tvpaddd %[t2], %[a2], %[a2]\n\t"
      "vpmaddwd %[y], %[x], %[t3]\n\tvpaddd %[t3], %[a3], %[a3]"
      : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [t0] "=&x"(t0), [t1] "=&x"(t1), [t2] "=&x"(t2),
        [t3] "=&x"(t3)
      : [x] "x"(x), [y] "x"(y));
}

__attribute__((target("avx2"))) float chain_madd_avx2(long iters) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  const __m256i x = _mm256_set1_epi16(1), y = _mm256_set1_epi16(1);
  for (long it = 0; it < iters; ++it) {
    madd4(a0, a1, a2, a3, x, y);
    madd4(a4, a5, a0, a1, x, y);
    madd4(a2, a3, a4, a5, x, y);
  }
  int64_t total = 0;  // as chain_vnni: the lanes' sum would wrap an int32
  alignas(32) int32_t lanes[8];
  for (__m256i v : {a0, a1, a2, a3, a4, a5}) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
    for (int32_t l : lanes) total += l;
  }
  return static_cast<float>(total);
}

__attribute__((target("avx512f"))) float chain_avx512(long iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

// vdpbf16ps and vpdpbusd overwrite their accumulator, and GCC 12 copied
// each of the 12 into a fresh register around every instruction (24 zmm
// moves per 12 dot products). On a Zen 5 EPYC (family 26) those moves took
// FP pipe slots: the intrinsic loop measured vpdpbusd at 5.2 G/s per
// thread, the same loop with its accumulators as asm operands 7.0, and the
// int8 GEMM tile reached "115% of peak". So the steps are asm statements on
// register operands, named variables (as an array's elements GCC kept them
// in memory, stored and reloaded every pass).
// 16 independent chains, as two statements of 8 (an asm takes at most 30
// operands, and "+v" counts twice): on that Zen 5 vdpbf16ps has a latency
// of about 6.5 cycles at 2 per cycle, so 12 chains measured 403 GFLOP/s per
// thread and 16 measured 435 (24: the same); with the 12-chain figure as
// the peak, oneDNN's bf16 matmul ran at "101-102% of peak". vpdpbusd
// saturates with 12 either way.
#define AMA_DOT8(ins)                                                                                         \
  ins " %[x], %[y], %[a0]\n\t" ins " %[x], %[y], %[a1]\n\t" ins " %[x], %[y], %[a2]\n\t" ins " %[x], %[y], %[a3]\n\t" \
      ins " %[x], %[y], %[a4]\n\t" ins " %[x], %[y], %[a5]\n\t" ins " %[x], %[y], %[a6]\n\t" ins " %[x], %[y], %[a7]"
#define AMA_ACC8(a, b, c, d, e, f, g, h)                                                                      \
  [a0] "+v"(a), [a1] "+v"(b), [a2] "+v"(c), [a3] "+v"(d), [a4] "+v"(e), [a5] "+v"(f), [a6] "+v"(g), [a7] "+v"(h)

__attribute__((target("avx512f,avx512bf16"))) float chain_bf16(long iters) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
         a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
  const __m512 x = _mm512_castsi512_ps(_mm512_set1_epi16(0x3f80)), y = _mm512_castsi512_ps(_mm512_set1_epi16(0x3380));
  for (long it = 0; it < iters; ++it) {
    asm(AMA_DOT8("vdpbf16ps") : AMA_ACC8(a0, a1, a2, a3, a4, a5, a6, a7) : [x] "v"(x), [y] "v"(y));
    asm(AMA_DOT8("vdpbf16ps") : AMA_ACC8(a8, a9, a10, a11, a12, a13, a14, a15) : [x] "v"(x), [y] "v"(y));
  }
  float total = 0;
  for (__m512 v : {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15})
    total += _mm512_reduce_add_ps(v);
  return total;
}

__attribute__((target("avx512f,avx512vnni"))) float chain_vnni(long iters) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
          a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
  const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(1);
  for (long it = 0; it < iters; ++it) {
    asm(AMA_DOT8("vpdpbusd") : AMA_ACC8(a0, a1, a2, a3, a4, a5, a6, a7) : [x] "v"(x), [y] "v"(y));
    asm(AMA_DOT8("vpdpbusd") : AMA_ACC8(a8, a9, a10, a11, a12, a13, a14, a15) : [x] "v"(x), [y] "v"(y));
  }
  // Each lane holds 4 iters (2^31 / 4 > any iters used here), but their sum
  // over 16 x 16 lanes would wrap an int32 (UBSan flagged the reduction):
  // add in 64 bits.
  int64_t total = 0;
  alignas(64) int32_t lanes[16];
  for (__m512i v : {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15}) {
    _mm512_store_si512(lanes, v);
    for (int32_t l : lanes) total += l;
  }
  return static_cast<float>(total);
}
#undef AMA_DOT8
#undef AMA_ACC8

// Runs fn(iters) on every pool thread; returns operations per second given
// ops_per_iter per thread.
template <typename Fn>
double rate(ThreadPool& pool, long iters, double ops_per_iter, Fn fn) {
  std::atomic<float> sink{0};
  fn(iters / 10);  // warm up (frequency, AVX-512 license)
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(pool.size(), 1, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) sink = sink + fn(iters);
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ops_per_iter * static_cast<double>(iters) * pool.size() / s;
}

}  // namespace

MachinePeaks measure_peaks(ThreadPool& pool) {
  MachinePeaks p;
  const long n = 20'000'000;
  p.f32_gflops[0] = rate(pool, n / 2, 12 * 4 * 2, chain_scalar) * 1e-9;
  if (isa_supported(Isa::avx2)) p.f32_gflops[1] = rate(pool, n, 12 * 8 * 2, chain_avx2) * 1e-9;
  if (isa_supported(Isa::avx2)) p.int8_avx2_gops = rate(pool, n, 12 * 8 * 4, chain_madd_avx2) * 1e-9;
  if (isa_supported(Isa::avx512)) p.f32_gflops[2] = rate(pool, n, 12 * 16 * 2, chain_avx512) * 1e-9;
  const CpuFeatures& f = cpu_features();
  if (isa_supported(Isa::avx512) && f.avx512_bf16) p.bf16_gflops = rate(pool, n, 16 * 16 * 4, chain_bf16) * 1e-9;
  if (isa_supported(Isa::avx512) && f.avx512_vnni) p.int8_gops = rate(pool, n, 16 * 16 * 8, chain_vnni) * 1e-9;

  if (isa_supported(Isa::amx)) {
    p.amx_bf16_gflops = rate(pool, n / 16, amx_bf16_flops_per_call(), amx_bf16_peak_loop) * 1e-9;
    p.amx_int8_gops = rate(pool, n / 16, 2 * amx_bf16_flops_per_call(), amx_i8_peak_loop) * 1e-9;
  }

  // Read bandwidth: each thread sums its half of a 256 MB buffer, twice.
  const size_t words = (256u << 20) / 8;
  std::vector<uint64_t> buf(words, 1);
  std::atomic<uint64_t> sink{0};
  auto read_pass = [&] {
    pool.parallel_for(words, 1 << 16, [&](size_t b, size_t e) {
      uint64_t s[8] = {};
      for (size_t i = b; i + 8 <= e; i += 8)
        for (int l = 0; l < 8; ++l) s[l] += buf[i + l];
      sink += s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    });
  };
  read_pass();
  const auto t0 = std::chrono::steady_clock::now();
  read_pass();
  read_pass();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  p.read_gbs = 2.0 * words * 8 / s * 1e-9;
  return p;
}

}  // namespace ama::cpu
