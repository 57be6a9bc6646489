// The CPU backend variants that kernel-level tests are parameterised over:
// each Isa by its value, and kAmxEmulated, the AMX kernels on the scalar
// model of the tiles (it runs on the AVX-512 kernels, so that AMX is tested
// where there are no tiles). A variant this CPU cannot run is skipped, and
// ctest lists it as skipped.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "backend/cpu/cpu_backend.h"

namespace ama::test {

constexpr int kAmxEmulated = 4;

// Every variant, for INSTANTIATE_TEST_SUITE_P.
inline auto all_variants() {
  return ::testing::Values(static_cast<int>(Isa::scalar), static_cast<int>(Isa::avx2), static_cast<int>(Isa::avx512),
                           static_cast<int>(Isa::amx), kAmxEmulated);
}

inline std::string variant_name(int v) { return v == kAmxEmulated ? "amx_emulated" : isa_name(static_cast<Isa>(v)); }

// The ISA that variant v needs from this CPU.
inline Isa variant_isa(int v) { return v == kAmxEmulated ? Isa::avx512 : static_cast<Isa>(v); }

// Why this CPU cannot run variant v; empty when it can.
inline std::string variant_unsupported(int v) {
  const Isa isa = variant_isa(v);
  if (isa_supported(isa)) return "";
  return "ISA " + std::string(isa_name(isa)) + " is not supported by this CPU" +
         (v == kAmxEmulated ? " (AMX emulation runs on the AVX-512 kernels)" : "");
}

// A backend on variant v; null, with a failed expectation, if it cannot be made.
inline std::unique_ptr<Backend> variant_backend(int v, ComputeType ct, int threads = 2) {
  CpuBackendOptions o;
  o.n_threads = threads;
  o.compute = ct;
  if (v == kAmxEmulated) {
    o.emulate_amx = true;
  } else {
    o.force_isa = true;
    o.isa = static_cast<Isa>(v);
  }
  auto b = make_cpu_backend(o);
  EXPECT_TRUE(b.ok()) << b.message();
  return b.ok() ? std::move(b.value()) : nullptr;
}

// A test fixture over the variants: skips the ones this CPU cannot run.
class BackendVariantTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (const std::string why = variant_unsupported(GetParam()); !why.empty()) GTEST_SKIP() << why;
  }
  std::unique_ptr<Backend> backend(ComputeType ct, int threads = 2) const {
    return variant_backend(GetParam(), ct, threads);
  }
  bool emulated() const { return GetParam() == kAmxEmulated; }
};

}  // namespace ama::test
