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

// The fastest compute type that meets the oracle's accuracy bar on this CPU:
// bf16 where the CPU has a bf16 dot product (AMX or AVX-512 BF16), else f32.
// Measured on an AVX-512 BF16 machine at 2 threads (base, amanuensis bench):
// encoder bf16 387 ms, int8 404 ms, f32 555 ms; bf16 and int8 both meet the
// fast-path bar, bf16 with the wider margin.
ComputeType default_compute_type();
// "auto" or a compute type name.
Result<ComputeType> parse_compute_type(const std::string& name);

}  // namespace ama
