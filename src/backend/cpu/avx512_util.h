// Small pieces shared by the AVX-512 translation units (kernels_avx512.cpp,
// flash_attention_avx512.cpp); include only from files compiled with
// AVX-512 F, BW and VL (see CMakeLists.txt).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <type_traits>
#include <utility>

namespace ama::cpu::avx512 {

// bf16(x) of 16 floats in AVX-512F/BW (no AVX512_BF16 needed: the emulated
// AMX path runs where vcvtneps2bf16 is absent): round to nearest even, and
// f32_to_bf16's NaN rule (quieted, never rounded into an infinity), so the
// same bits as to_bf16_row.
static inline __m256i to_bf16_rne(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(r);
}

// Calls f(std::integral_constant<int, R>) for R = min(rows, MaxR), rows >= 1:
// the register tiles take their row count as a template parameter so that
// the accumulators stay in registers for every count.
template <int... Rs, typename F>
static void dispatch_rows_impl(int rows, std::integer_sequence<int, Rs...>, const F& f) {
  (void)((rows == Rs + 1 ? (f(std::integral_constant<int, Rs + 1>{}), true) : false) || ...);
}
template <int MaxR, typename F>
static void dispatch_rows(int rows, const F& f) {
  dispatch_rows_impl(std::min(rows, MaxR), std::make_integer_sequence<int, MaxR>{}, f);
}

}  // namespace ama::cpu::avx512
