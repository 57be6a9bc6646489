// `amanuensis kernels`: the kernel harness (see kernels_command.cpp).
#pragma once

#include <string>

#include "core/result.h"

namespace ama {

struct KernelsOptions {
  std::string kernel;  // substring filter on the kernel name; empty: all
  std::string shape;   // MxKxN for GEMMs, ROWSxCOLS for row ops; empty: the arch's shapes
  std::string isa;     // one ISA; empty: every supported one
  std::string arch = "base";  // tiny|base|small|medium|large-v3|all: which Whisper shapes
  int iters = 10;
  int threads = 0;
  bool json = false;
};

Result<std::string> run_kernel_harness(const KernelsOptions& options);

}  // namespace ama
