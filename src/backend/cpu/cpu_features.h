// CPU feature detection in one place: cpuid and XCR0, plus the Linux
// permission request that AMX tile data needs. The best ISA is chosen once,
// at startup; AMANUENSIS_ISA=scalar|avx2|avx512|amx forces a lower one.
#pragma once

#include <string>

namespace ama {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, amx = 3 };
const char* isa_name(Isa isa);
bool parse_isa(const std::string& s, Isa* out);

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool os_avx = false, os_avx512 = false, os_amx = false;  // XCR0 state enabled by the OS
  bool amx_permitted = false;                              // arch_prctl granted XTILEDATA
  std::string vendor, brand;
};

// Detected once (thread-safe), including the AMX permission request.
const CpuFeatures& cpu_features();

// Whether the machine can run kernels of this ISA.
bool isa_supported(Isa isa);

struct IsaChoice {
  Isa isa = Isa::scalar;
  std::string reason;  // why this one (detected best, or forced by the environment)
};

// The best supported ISA, capped by AMANUENSIS_ISA when set. Computed once.
const IsaChoice& selected_isa();

// Multi-line report for `amanuensis info`.
std::string describe_cpu();

}  // namespace ama
