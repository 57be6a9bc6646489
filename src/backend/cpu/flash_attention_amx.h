// Flash attention on AMX tiles (d_head 64; layouts in flash_attention.h),
// a template over the tile operations of kernels_amx.cpp (AmxHardware, or
// AmxEmulated, the scalar model the tests run on any CPU). Included by
// kernels_amx.cpp only.
//
// flash_d64_32x64__amx: 32 query rows per call, keys in blocks of 64, with
// the tile registers of the GEMM kernel (C in tmm0-3: 2 x 2 tiles of 16 x 16
// f32; A in tmm4-5: rows 0-15 and 16-31; B in tmm6-7: two panels of 16):
//   S = Q K^T: per half-block of 32 keys, 2 steps of 32 head dims, each 4
//     tile products; an A tile is 16 Q rows x 32 dims (row stride 128 bytes)
//     and a B tile is 16 dim pairs x 16 keys of the packed K read with a
//     256-byte row stride (the 4 panels of a pair are adjacent), so neither
//     needs repacking.
//   The online softmax on the stored S[32][64] (AVX-512F; every AMX CPU has
//   it): flash_softmax_block_avx512 writes P[32][64] in bf16 and rescales O.
//   O += P V: per half of the head dims (2 panels), O's 4 tiles loaded from
//     memory, 2 steps of 32 keys (A: P rows, B: 16 key pairs x 16 dims of
//     the packed V, again at a 256-byte stride), stored back.
// S, O and P take 8 + 8 + 4 KB, beside the 16 KB K and V block: L1-resident.
// The softmax runs on the vector units between tile products; on real AMX it
// is the larger part of the time (2 x 32 x 64 x 64 multiply-adds per block
// are 16 tile products), which is why a block holds 32 rows, the most the
// C tiles cover, so that each exponential serves a full tile row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/flash_attention.h"

namespace ama::cpu {

template <typename Ops>
void flash_d64_amx_tiles(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                         float* out, size_t ld_out) {
  constexpr int R = 32, D = kFlashDim, KB = kFlashKeys;
  static_assert(D == 64 && KB == 64, "the tile steps below assume 64 dims and 64 keys per block");
  Ops::configure();
  alignas(64) float s[R][KB];
  alignas(64) float o[R][D] = {};
  alignas(64) uint16_t p[R][KB] = {};  // rows >= `rows` stay 0 (their tile rows are computed, never written out)
  float m[R], l[R];
  for (int r = 0; r < R; ++r) m[r] = -INFINITY, l[r] = 0.0f;
  const int blocks = flash_blocks(n_kv);
  for (int b = 0; b < blocks; ++b) {
    const uint16_t* kb = kp + static_cast<size_t>(b) * KB * D;
    const uint16_t* vb = vp + static_cast<size_t>(b) * KB * D;
    for (int half = 0; half < 2; ++half) {
      Ops::template zero<0>();
      Ops::template zero<1>();
      Ops::template zero<2>();
      Ops::template zero<3>();
      for (int ds = 0; ds < 2; ++ds) {
        Ops::template load<4>(q + 32 * ds, 2 * D);
        Ops::template load<5>(q + 16 * D + 32 * ds, 2 * D);
        Ops::template load<6>(kb + 16 * ds * 128 + 32 * (2 * half), 256);
        Ops::template load<7>(kb + 16 * ds * 128 + 32 * (2 * half + 1), 256);
        Ops::template dp_bf16<0, 4, 6>();
        Ops::template dp_bf16<1, 4, 7>();
        Ops::template dp_bf16<2, 5, 6>();
        Ops::template dp_bf16<3, 5, 7>();
      }
      Ops::template store<0>(&s[0][32 * half], 4 * KB);
      Ops::template store<1>(&s[0][32 * half + 16], 4 * KB);
      Ops::template store<2>(&s[16][32 * half], 4 * KB);
      Ops::template store<3>(&s[16][32 * half + 16], 4 * KB);
    }
    flash_softmax_block_avx512(&s[0][0], rows, std::min(KB, n_kv - b * KB), c, m, l, &o[0][0], &p[0][0]);
    for (int half = 0; half < 2; ++half) {
      Ops::template load<0>(&o[0][32 * half], 4 * D);
      Ops::template load<1>(&o[0][32 * half + 16], 4 * D);
      Ops::template load<2>(&o[16][32 * half], 4 * D);
      Ops::template load<3>(&o[16][32 * half + 16], 4 * D);
      for (int ks = 0; ks < 2; ++ks) {
        Ops::template load<4>(&p[0][32 * ks], 2 * KB);
        Ops::template load<5>(&p[16][32 * ks], 2 * KB);
        Ops::template load<6>(vb + 16 * ks * 128 + 32 * (2 * half), 256);
        Ops::template load<7>(vb + 16 * ks * 128 + 32 * (2 * half + 1), 256);
        Ops::template dp_bf16<0, 4, 6>();
        Ops::template dp_bf16<1, 4, 7>();
        Ops::template dp_bf16<2, 5, 6>();
        Ops::template dp_bf16<3, 5, 7>();
      }
      Ops::template store<0>(&o[0][32 * half], 4 * D);
      Ops::template store<1>(&o[0][32 * half + 16], 4 * D);
      Ops::template store<2>(&o[16][32 * half], 4 * D);
      Ops::template store<3>(&o[16][32 * half + 16], 4 * D);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const float inv = 1.0f / l[r];
    for (int x = 0; x < D; ++x) out[r * ld_out + x] = o[r][x] * inv;
  }
}

}  // namespace ama::cpu
