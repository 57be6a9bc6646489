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
};

Result<std::unique_ptr<Backend>> make_cpu_backend(const CpuBackendOptions& options);

}  // namespace ama
