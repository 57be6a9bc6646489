// The CPU backend: the kernel table of one ISA plus a thread pool.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "core/result.h"
#include "core/thread_pool.h"

namespace ama {

struct CpuBackendOptions {
  int n_threads = 0;  // 0: all usable hardware threads
  ComputeType compute = ComputeType::f32;
  // Use this ISA instead of the selected one (tests run every supported ISA).
  bool force_isa = false;
  Isa isa = Isa::scalar;
  // Tests only: the AMX kernels with a scalar model of the tile instructions.
  bool emulate_amx = false;
};

Result<std::unique_ptr<Backend>> make_cpu_backend(const CpuBackendOptions& options);

// The fastest compute type that meets the oracle's accuracy bar on this CPU.
// Measured on an AVX-512 BF16 + VNNI machine at 2 threads (amanuensis bench,
// medians of 5 encoder runs): base encoder int8 298-308 ms, bf16 345-355 ms,
// f32 525-543 ms; small encoder int8 1009, bf16 1383, f32 2091 ms. int8
// (encoder MLPs in int8, the rest in bf16; since then the convolutions too) and bf16 both meet the fast-path
// bar (tests/test_oracle.cpp). So: int8 where the CPU has both an int8 and a
// bf16 dot product (AMX, or AVX-512 VNNI + BF16), bf16 where it has only the
// latter, f32 on AVX-512 without BF16. On scalar the bf16 tiles are faster
// than the f32 ones (1500x512x2048 at 2 threads: 22 GFLOP/s against 12), so
// bf16 there too. On AVX2, int8: its tiles widen u8 and s8 to s16 for
// vpmaddwd (exact, 2x the f32 FMA rate at best). On a 2-core Zen 3 EPYC, 2
// threads: base's 1500x512x2048 int8 162 GOP/s against bf16 89 and f32
// ~62; base encoder int8 750-880 ms against bf16 915-1140 (a noisy VM);
// jfk.wav end to end 1.60-1.74 s against 1.94-1.98; the fast-path bar holds
// on the AVX2 int8 path (max abs 0.206 / 0.223, correlation 0.99996).
ComputeType default_compute_type();
// "auto" or a compute type name.
Result<ComputeType> parse_compute_type(const std::string& name);

}  // namespace ama
