#include "backend/cpu/cpu_features.h"

#include <cpuid.h>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sys/syscall.h>
#include <unistd.h>

namespace ama {

namespace {

constexpr int kArchGetXcompPerm = 0x1022;
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

uint64_t read_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool request_amx_permission() {
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask & (1ul << kXfeatureXtiledata)) != 0;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;

  __get_cpuid(1, &a, &b, &c, &d);
  const bool osxsave = c & (1u << 27);
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (osxsave) {
    const uint64_t xcr0 = read_xcr0();
    f.os_avx = (xcr0 & 0x6) == 0x6;                // SSE and AVX state
    f.os_avx512 = f.os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
    f.os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG, XTILEDATA
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = b & (1u << 5);
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512_vnni = c & (1u << 11);
    f.amx_bf16 = d & (1u << 22);
    f.amx_tile = d & (1u << 24);
    f.amx_int8 = d & (1u << 25);
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = a & (1u << 5);
  }
  unsigned ext = __get_cpuid_max(0x80000000u, nullptr);
  if (ext >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &a, &b, &c, &d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    f.brand = brand;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  }
  if (f.amx_tile && f.os_amx) f.amx_permitted = request_amx_permission();
  return f;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::amx: return "amx";
  }
  return "?";
}

bool parse_isa(const std::string& s, Isa* out) {
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx})
    if (s == isa_name(i)) {
      *out = i;
      return true;
    }
  return false;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.os_avx && f.avx2 && f.fma && f.f16c;
  const bool avx512 = avx2 && f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return avx2;
    case Isa::avx512: return avx512;
    case Isa::amx: return avx512 && f.avx512_bf16 && f.amx_tile && f.amx_bf16 && f.amx_int8 && f.amx_permitted;
  }
  return false;
}

const IsaChoice& selected_isa() {
  static const IsaChoice choice = [] {
    IsaChoice c;
    Isa best = Isa::scalar;
    for (Isa i : {Isa::avx2, Isa::avx512, Isa::amx})
      if (isa_supported(i)) best = i;
    c.isa = best;
    c.reason = std::string("best supported by this CPU");
    if (const char* env = std::getenv("AMANUENSIS_ISA"); env && *env) {
      Isa forced;
      if (!parse_isa(env, &forced)) {
        c.reason += std::string("; AMANUENSIS_ISA='") + env + "' is not one of scalar|avx2|avx512|amx, ignored";
      } else if (static_cast<int>(forced) > static_cast<int>(best)) {
        c.reason += std::string("; AMANUENSIS_ISA=") + env + " is not supported here, ignored";
      } else {
        c.isa = forced;
        c.reason = std::string("forced by AMANUENSIS_ISA=") + env + " (best supported: " + isa_name(best) + ")";
      }
    }
    return c;
  }();
  return choice;
}

std::string describe_cpu() {
  const CpuFeatures& f = cpu_features();
  auto yn = [](bool b) { return b ? "yes" : "no"; };
  std::string s;
  s += "cpu: " + (f.brand.empty() ? f.vendor : f.brand) + "\n";
  s += std::string("avx2+fma+f16c: ") + yn(f.avx2 && f.fma && f.f16c) + "  (os avx state: " + yn(f.os_avx) + ")\n";
  s += std::string("avx512 f/bw/vl/dq: ") + yn(f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) +
       "  bf16: " + yn(f.avx512_bf16) + "  vnni: " + yn(f.avx512_vnni) + "  (os zmm state: " + yn(f.os_avx512) +
       ")\n";
  s += std::string("amx tile/bf16/int8: ") + yn(f.amx_tile) + "/" + yn(f.amx_bf16) + "/" + yn(f.amx_int8) +
       "  (os tile state: " + yn(f.os_amx) + ", XTILEDATA permission: " + yn(f.amx_permitted) + ")\n";
  s += "supported isa:";
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx})
    if (isa_supported(i)) s += std::string(" ") + isa_name(i);
  s += "\n";
  const IsaChoice& c = selected_isa();
  s += std::string("selected isa: ") + isa_name(c.isa) + " (" + c.reason + ")\n";
  return s;
}

}  // namespace ama
