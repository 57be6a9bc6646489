// AMX (Advanced Matrix Extensions) GEMM tiles: bf16 x bf16 -> f32 with
// tdpbf16ps and u8 x s8 -> s32 with tdpbusd. Compiled with -mamx-tile
// -mamx-bf16 -mamx-int8 (see CMakeLists.txt); only run when cpuid reports
// AMX and the kernel granted XTILEDATA (cpu_features.cpp).
//
// One register tile is 32 rows x 32 columns: four 16x16 f32 accumulator
// tiles (tmm0-3), two activation tiles (tmm4-5, rows 0-15 and 16-31) and
// two weight tiles (tmm6-7, panels p and p+1). Each K step of 32 bf16 (or
// 64 int8) runs 4 tile dot products. The weight panels of pack_bf16_panels /
// pack_i8_panels are already AMX's "VNNI" B layout: a 16-pair (16-quad) slab
// of one panel is one 16 x 64-byte tile, so no repacking is needed.
//
// The tile logic is a template over the tile operations. AmxHardware binds
// them to the instructions; AmxEmulated implements the same semantics in
// scalar code, so that tests can check this file's data movement on any CPU
// (tests/test_kernels.cpp, AmxEmulation).
// GCC 12 warns inside its own AVX-512 headers (the masked builtins' undefined
// pass-through operand): a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/flash_attention_amx.h"
#include "backend/cpu/kernels.h"

namespace ama::cpu {

const KernelTable& kernel_table_avx512();

namespace {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

struct AmxHardware {
  // Every tile: 16 rows of 64 bytes, loaded once per thread (the flag is
  // thread-local because tile configuration is per-thread state; code that
  // changes it on our threads, such as another AMX library, would have to
  // release it with tilerelease first). g++ 12 declares only 8 bytes of input
  // for _tile_loadconfig, so at -O3 it can drop the stores that build the
  // config; ldtilecfg in asm with the whole struct as an "m" operand and a
  // memory clobber keeps them.
  static void configure() {
    thread_local bool configured = false;
    if (configured) return;
    TileConfig cfg;
    for (int i = 0; i < 8; ++i) {
      cfg.colsb[i] = 64;
      cfg.rows[i] = 16;
    }
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg) : "memory");
    configured = true;
  }
  // The tile intrinsics paste the register number into the instruction
  // text, so each register needs a literal number.
#define AMA_TILE_CASES(op) \
  if constexpr (T == 0) op(0);  \
  else if constexpr (T == 1) op(1); \
  else if constexpr (T == 2) op(2); \
  else if constexpr (T == 3) op(3); \
  else if constexpr (T == 4) op(4); \
  else if constexpr (T == 5) op(5); \
  else if constexpr (T == 6) op(6); \
  else op(7)
  template <int T>
  static void zero() {
#define AMA_ZERO(t) _tile_zero(t)
    AMA_TILE_CASES(AMA_ZERO);
#undef AMA_ZERO
  }
  template <int T>
  static void load(const void* p, size_t stride) {
#define AMA_LOAD(t) _tile_loadd(t, p, stride)
    AMA_TILE_CASES(AMA_LOAD);
#undef AMA_LOAD
  }
  template <int T>
  static void store(void* p, size_t stride) {
#define AMA_STORE(t) _tile_stored(t, p, stride)
    AMA_TILE_CASES(AMA_STORE);
#undef AMA_STORE
  }
#undef AMA_TILE_CASES
  // The kernels use exactly these four products: C0 = A0 B0, C1 = A0 B1,
  // C2 = A1 B0, C3 = A1 B1 with C in tmm0-3, A in tmm4-5, B in tmm6-7.
  template <int C, int A, int B>
  static void dp_bf16() {
    static_assert((C == 0 && A == 4 && B == 6) || (C == 1 && A == 4 && B == 7) || (C == 2 && A == 5 && B == 6) ||
                  (C == 3 && A == 5 && B == 7));
    if constexpr (C == 0) _tile_dpbf16ps(0, 4, 6);
    else if constexpr (C == 1) _tile_dpbf16ps(1, 4, 7);
    else if constexpr (C == 2) _tile_dpbf16ps(2, 5, 6);
    else _tile_dpbf16ps(3, 5, 7);
  }
  template <int C, int A, int B>
  static void dp_u8s8() {
    static_assert((C == 0 && A == 4 && B == 6) || (C == 1 && A == 4 && B == 7) || (C == 2 && A == 5 && B == 6) ||
                  (C == 3 && A == 5 && B == 7));
    if constexpr (C == 0) _tile_dpbusd(0, 4, 6);
    else if constexpr (C == 1) _tile_dpbusd(1, 4, 7);
    else if constexpr (C == 2) _tile_dpbusd(2, 5, 6);
    else _tile_dpbusd(3, 5, 7);
  }
};

// Scalar model of the same eight 1 KB tiles (Intel SDM: TDPBF16PS, TDPBUSD).
struct AmxEmulated {
  static uint8_t* tile(int t) {
    thread_local uint8_t tiles[8][1024];
    return tiles[t];
  }
  static void configure() {}
  template <int T>
  static void zero() {
    std::memset(tile(T), 0, 1024);
  }
  template <int T>
  static void load(const void* p, size_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(tile(T) + 64 * r, static_cast<const uint8_t*>(p) + r * stride, 64);
  }
  template <int T>
  static void store(void* p, size_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(static_cast<uint8_t*>(p) + r * stride, tile(T) + 64 * r, 64);
  }
  static float bf(const uint8_t* p) {
    uint16_t b;
    std::memcpy(&b, p, 2);
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  template <int C, int A, int B>
  static void dp_bf16() {
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        float c;
        std::memcpy(&c, tile(C) + 64 * m + 4 * n, 4);
        for (int k2 = 0; k2 < 16; ++k2)
          c += bf(tile(A) + 64 * m + 4 * k2) * bf(tile(B) + 64 * k2 + 4 * n) +
               bf(tile(A) + 64 * m + 4 * k2 + 2) * bf(tile(B) + 64 * k2 + 4 * n + 2);
        std::memcpy(tile(C) + 64 * m + 4 * n, &c, 4);
      }
  }
  template <int C, int A, int B>
  static void dp_u8s8() {
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 16; ++n) {
        int32_t c;
        std::memcpy(&c, tile(C) + 64 * m + 4 * n, 4);
        for (int k4 = 0; k4 < 16; ++k4)
          for (int t = 0; t < 4; ++t)
            c += static_cast<int32_t>(tile(A)[64 * m + 4 * k4 + t]) *
                 static_cast<int32_t>(static_cast<int8_t>(tile(B)[64 * k4 + 4 * n + t]));
        std::memcpy(tile(C) + 64 * m + 4 * n, &c, 4);
      }
  }
};

// x: activations, 32 rows (zero-padded past the real ones) of ldx elements;
// k_pairs / k_quads are multiples of 16 (the packers pad K). acc: [32][32].
template <typename Ops>
void amx_bf16_tile(const uint16_t* x, size_t ldx, int /*rows*/, const uint16_t* panels, size_t panel_stride,
                   int n_panels, int k_pairs, float* acc) {
  Ops::configure();
  const uint16_t* p1 = panels + (n_panels > 1 ? panel_stride : 0);
  Ops::template zero<0>();
  Ops::template zero<1>();
  Ops::template zero<2>();
  Ops::template zero<3>();
  for (int kp = 0; kp < k_pairs; kp += 16) {
    Ops::template load<4>(x + 2 * kp, 2 * ldx);
    Ops::template load<5>(x + 16 * ldx + 2 * kp, 2 * ldx);
    Ops::template load<6>(panels + static_cast<size_t>(kp) * 32, 64);
    Ops::template load<7>(p1 + static_cast<size_t>(kp) * 32, 64);
    Ops::template dp_bf16<0, 4, 6>();
    Ops::template dp_bf16<1, 4, 7>();
    Ops::template dp_bf16<2, 5, 6>();
    Ops::template dp_bf16<3, 5, 7>();
  }
  Ops::template store<0>(acc, 128);
  Ops::template store<1>(acc + 16, 128);
  Ops::template store<2>(acc + 16 * 32, 128);
  Ops::template store<3>(acc + 16 * 32 + 16, 128);
}

template <typename Ops>
void amx_i8_tile(const uint8_t* x, size_t ldx, int /*rows*/, const int8_t* panels, size_t panel_stride, int n_panels,
                 int k_quads, int32_t* acc) {
  Ops::configure();
  const int8_t* p1 = panels + (n_panels > 1 ? panel_stride : 0);
  Ops::template zero<0>();
  Ops::template zero<1>();
  Ops::template zero<2>();
  Ops::template zero<3>();
  for (int kq = 0; kq < k_quads; kq += 16) {
    Ops::template load<4>(x + 4 * kq, ldx);
    Ops::template load<5>(x + 16 * ldx + 4 * kq, ldx);
    Ops::template load<6>(panels + static_cast<size_t>(kq) * 64, 64);
    Ops::template load<7>(p1 + static_cast<size_t>(kq) * 64, 64);
    Ops::template dp_u8s8<0, 4, 6>();
    Ops::template dp_u8s8<1, 4, 7>();
    Ops::template dp_u8s8<2, 5, 6>();
    Ops::template dp_u8s8<3, 5, 7>();
  }
  Ops::template store<0>(acc, 128);
  Ops::template store<1>(acc + 16, 128);
  Ops::template store<2>(acc + 16 * 32, 128);
  Ops::template store<3>(acc + 16 * 32 + 16, 128);
}

KernelTable make_amx_table(bool emulated) {
  KernelTable t = kernel_table_avx512();  // f32 GEMM and row ops stay on AVX-512
  t.isa = Isa::amx;
  t.gemm_bf16_name = emulated ? "gemm_bf16_f32_32x32__amx_emulated" : "gemm_bf16_f32_32x32__amx";
  t.gemm_bf16_rows = 32;
  t.gemm_bf16_tile = emulated ? amx_bf16_tile<AmxEmulated> : amx_bf16_tile<AmxHardware>;
  t.gemm_i8_name = emulated ? "gemm_u8s8_s32_32x32__amx_emulated" : "gemm_u8s8_s32_32x32__amx";
  t.gemm_i8_rows = 32;
  t.gemm_i8_tile = emulated ? amx_i8_tile<AmxEmulated> : amx_i8_tile<AmxHardware>;
  t.gemm_i8_tile_out = nullptr;  // AVX-512's finish AVX-512 tiles, not these
  t.gemm_bf16_tile_out = nullptr;
  return t;
}

}  // namespace

const KernelTable& kernel_table_amx() {
  static const KernelTable t = make_amx_table(false);
  return t;
}

const KernelTable& kernel_table_amx_emulated() {
  static const KernelTable t = make_amx_table(true);
  return t;
}

// Flash attention on the tiles (flash_attention_amx.h).
void flash_d64_amx(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c, float* out,
                   size_t ld_out) {
  flash_d64_amx_tiles<AmxHardware>(q, rows, kp, vp, n_kv, c, out, ld_out);
}
void flash_d64_amx_emulated(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                            float* out, size_t ld_out) {
  flash_d64_amx_tiles<AmxEmulated>(q, rows, kp, vp, n_kv, c, out, ld_out);
}

// Peak: a chain of independent tdpbf16ps on 4 accumulators (16 x 16 x 32
// multiply-adds each), for the harness's "% of peak".
double amx_bf16_flops_per_call() { return 4.0 * 16 * 16 * 32 * 2; }
float amx_bf16_peak_loop(long iters) {
  AmxHardware::configure();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_zero(4);
  _tile_zero(5);
  for (long i = 0; i < iters; ++i) {
    _tile_dpbf16ps(0, 4, 5);
    _tile_dpbf16ps(1, 4, 5);
    _tile_dpbf16ps(2, 4, 5);
    _tile_dpbf16ps(3, 4, 5);
  }
  alignas(64) float out[256];
  _tile_stored(0, out, 64);
  return out[0];
}
float amx_i8_peak_loop(long iters) {
  AmxHardware::configure();
  for (long i = 0; i < iters; ++i) {
    _tile_dpbusd(0, 4, 5);
    _tile_dpbusd(1, 4, 5);
    _tile_dpbusd(2, 4, 5);
    _tile_dpbusd(3, 4, 5);
  }
  alignas(64) float out[256];
  _tile_stored(0, out, 64);
  return out[0];
}

}  // namespace ama::cpu
