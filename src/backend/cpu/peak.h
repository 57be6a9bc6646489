// Measures this machine's peak arithmetic throughput per ISA and its memory
// bandwidth, so that the kernel harness can report "% of peak" from numbers
// measured in the same run rather than from a datasheet.
#pragma once

#include "backend/cpu/cpu_features.h"
#include "core/thread_pool.h"

namespace ama::cpu {

struct MachinePeaks {
  // GFLOP/s of independent multiply-add chains (2 flops per lane): baseline
  // SSE2 (what the scalar kernels compile to), AVX2 FMA, AVX-512 FMA.
  double f32_gflops[3] = {0, 0, 0};
  double bf16_gflops = 0;   // AVX-512 BF16 vdpbf16ps (4 flops per 32-bit lane), 0 if absent
  double int8_gops = 0;     // AVX-512 VNNI vpdpbusd (8 ops per 32-bit lane), 0 if absent
  double int8_avx2_gops = 0;  // AVX2 vpmaddwd + vpaddd (4 ops per 32-bit lane: the AVX2 int8 tiles' step)
  double amx_bf16_gflops = 0, amx_int8_gops = 0;  // tdpbf16ps / tdpbssd, 0 if absent
  double read_gbs = 0;      // streaming read bandwidth over 256 MB
  double f32_peak(Isa isa) const { return f32_gflops[isa == Isa::scalar ? 0 : isa == Isa::avx2 ? 1 : 2]; }
};

// Runs on every thread of the pool at once (about 1 s in total).
MachinePeaks measure_peaks(ThreadPool& pool);

}  // namespace ama::cpu
