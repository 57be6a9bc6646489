// The AVX-512 flash-attention kernels of this build against those of an
// older revision, alternated in one process on the same inputs (run by
// bench/ab/flash_ab.sh, which compiles the old kernel file with its exported
// names prefixed old_). On a noisy VM whole runs move by 5-10% between
// runs; pairs of best-of-5 timings taken back to back, and the median of
// their ratios, repeat to within about 1%.
//   flash_ab KERNEL [PAIRS]   KERNEL: bf16 (flash_d64_6x64__avx512bf16) or
//                             int8qk (flash_d64_6x64__avx512vnni_bf16)
// Base's encoder shape: 8 heads of 64, 1500 queries over 1500 keys, one
// thread, K/V packed once per head by each side's own packer.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/flash_attention.h"
#include "core/half.h"

namespace ama::cpu {
using FlashFn = void (*)(const uint16_t*, int, const uint16_t*, const uint16_t*, int, float, float*, size_t);
using PackFn = void (*)(const uint16_t*, const uint16_t*, int, size_t, uint16_t*, uint16_t*);
void old_flash_d64_avx512bf16(const uint16_t*, int, const uint16_t*, const uint16_t*, int, float, float*, size_t);
void old_flash_d64_avx512vnni_bf16(const uint16_t*, int, const uint16_t*, const uint16_t*, int, float, float*, size_t);
void old_flash_pack_kv_avx512(const uint16_t*, const uint16_t*, int, size_t, uint16_t*, uint16_t*);
void old_flash_pack_kv_int8_avx512(const uint16_t*, const uint16_t*, int, size_t, uint16_t*, uint16_t*);
}  // namespace ama::cpu

int main(int argc, char** argv) {
  using namespace ama::cpu;
  const std::string which = argc > 1 ? argv[1] : "";
  const int pairs = argc > 2 ? std::atoi(argv[2]) : 15;
  if ((which != "bf16" && which != "int8qk") || pairs < 3 || pairs > 1000) {
    std::fprintf(stderr, "usage: flash_ab bf16|int8qk [PAIRS (3-1000, default 15)]\n");
    return 2;
  }
  if (!ama::cpu_features().avx512_bf16 || !ama::cpu_features().avx512_vnni) {
    std::fprintf(stderr, "flash_ab: error: this CPU lacks AVX512_BF16 or AVX512_VNNI\n");
    return 1;
  }
  const bool int8 = which == "int8qk";
  const FlashFn fn[2] = {int8 ? old_flash_d64_avx512vnni_bf16 : old_flash_d64_avx512bf16,
                         int8 ? flash_d64_avx512vnni_bf16 : flash_d64_avx512bf16};
  const PackFn pack[2] = {int8 ? old_flash_pack_kv_int8_avx512 : old_flash_pack_kv_avx512,
                          int8 ? static_cast<PackFn>(flash_pack_kv_int8_avx512) : static_cast<PackFn>(flash_pack_kv_avx512)};
  const int n = 1500, H = 8, D = kFlashDim, ld = H * D;
  std::mt19937 g(1);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<uint16_t> q(static_cast<size_t>(n) * ld), k(q.size()), v(q.size());
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = ama::f32_to_bf16(d(g));
  // Each head's query rows contiguous, as attention_flash_d64 lays them out.
  std::vector<uint16_t> qh(q.size());
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < n; ++i)
      std::memcpy(&qh[(static_cast<size_t>(h) * n + i) * D], &q[static_cast<size_t>(i) * ld + h * D], D * 2);
  const size_t ps = flash_packed_size(n);
  std::vector<uint16_t> kp[2], vp[2];
  for (int s = 0; s < 2; ++s) {
    kp[s].resize(H * ps), vp[s].resize(H * ps);
    for (int h = 0; h < H; ++h)
      pack[s](k.data() + h * D, v.data() + h * D, n, ld, kp[s].data() + h * ps, vp[s].data() + h * ps);
  }
  std::vector<float> out[2] = {std::vector<float>(q.size()), std::vector<float>(q.size())};
  const float c = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(D)));
  auto run = [&](int s) {
    for (int h = 0; h < H; ++h)
      for (int i0 = 0; i0 < n; i0 += 6)
        fn[s](&qh[(static_cast<size_t>(h) * n + i0) * D], std::min(6, n - i0), kp[s].data() + h * ps,
              vp[s].data() + h * ps, n, c, out[s].data() + static_cast<size_t>(i0) * ld + h * D, ld);
  };
  run(0), run(1);
  double diff = 0;
  for (size_t i = 0; i < out[0].size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(out[0][i] - out[1][i])));
  const double flop = 4.0 * n * n * D * H;
  std::vector<double> ratios;
  double best[2] = {1e30, 1e30};
  for (int p = 0; p < pairs; ++p) {
    double t[2];
    for (int s = 0; s < 2; ++s) {
      t[s] = 1e30;
      for (int it = 0; it < 5; ++it) {
        const auto t0 = std::chrono::steady_clock::now();
        run(s);
        t[s] = std::min(t[s], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      best[s] = std::min(best[s], t[s]);
    }
    ratios.push_back(t[0] / t[1]);
  }
  std::sort(ratios.begin(), ratios.end());
  const size_t m = ratios.size();
  std::printf("%s: old %.1f GFLOP/s, new %.1f (best of all), max |old - new| %.3g\n", which.c_str(),
              flop / best[0] * 1e-9, flop / best[1] * 1e-9, diff);
  std::printf("new speed / old: median %.3f (quartiles %.3f-%.3f, %zu pairs)\n", ratios[m / 2], ratios[m / 4],
              ratios[3 * m / 4], m);
  return 0;
}
