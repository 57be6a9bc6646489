// The portable flash-attention kernel compiled for AVX2 + FMA (the AVX2
// table; flash_attention_generic.h). AVX2 has no bf16 dot product, so this
// is the plain f32 arithmetic on widened bf16 values, 8 lanes wide.
#include "backend/cpu/flash_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/half.h"

namespace ama::cpu {

namespace avx2_flash {
#include "backend/cpu/flash_attention_generic.h"
}  // namespace avx2_flash

void flash_d64_generic_avx2(const uint16_t* q, int rows, const uint16_t* kp, const uint16_t* vp, int n_kv, float c,
                            float* out, size_t ld_out) {
  avx2_flash::flash_d64_generic(q, rows, kp, vp, n_kv, c, out, ld_out);
}

}  // namespace ama::cpu
