// Argument checks for backend ops, kept apart from the device code
// (CTranslate2 style). A violation is a programming error inside the
// library, not bad user input, so it reports and aborts in every build.
#pragma once

#include <cstdio>
#include <cstdlib>

#define AMA_CHECK(cond)                                                              \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "amanuensis: internal check failed at %s:%d: %s\n", __FILE__, \
                   __LINE__, #cond);                                                 \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

namespace ama {

class PackedMatrix;

inline void check_linear(const float* x, int m, int ldx, int n_in, int n_out, const float* y, int ldy) {
  AMA_CHECK(x != nullptr && y != nullptr);
  AMA_CHECK(m >= 0 && n_in > 0 && n_out > 0);
  AMA_CHECK(ldx > 0 && ldy >= n_out);  // x rows may overlap (a convolution's windows)
}

// linear_fused: exactly one output type, no residual add into bf16, and a
// split that tiles the columns (ldy covers one block's columns).
inline void check_linear_out(const void* x, int m, int ldx, int n_in, int n_out, const float* y, const void* y_bf16,
                             int ldy, int split, size_t split_stride, bool accumulate, bool norm_ok) {
  AMA_CHECK(x != nullptr && (y != nullptr) != (y_bf16 != nullptr));
  AMA_CHECK(m >= 0 && n_in > 0 && n_out > 0 && ldx > 0 && norm_ok);
  AMA_CHECK(!(accumulate && y_bf16 != nullptr));
  AMA_CHECK(split >= 0 && ldy >= (split > 0 ? split : n_out));
  AMA_CHECK(split == 0 || split_stride >= static_cast<size_t>(m) * ldy);
}

// attention_mixed: one pointer of each kind (both K and V of one type).
inline void check_attention_operands(const void* q, const void* q_bf16, const void* k, const void* v,
                                     const void* k_bf16, const void* v_bf16, const void* out, const void* out_bf16) {
  AMA_CHECK((q != nullptr) != (q_bf16 != nullptr));
  AMA_CHECK((k != nullptr && v != nullptr && k_bf16 == nullptr && v_bf16 == nullptr) ||
            (k == nullptr && v == nullptr && k_bf16 != nullptr && v_bf16 != nullptr));
  AMA_CHECK((out != nullptr) != (out_bf16 != nullptr));
}

// mlp_block: x [m][ldx] of n = up's inputs = down's outputs columns, down
// reading up's outputs, the norm whole, and the output projection (n x n)
// with exactly one input.
inline void check_mlp_block(const float* x, int m, int ldx, bool have_up_down, int up_in, int up_out, int down_in,
                            int down_out, bool norm_ok, bool have_proj, int proj_in, int proj_out, bool one_att,
                            int ld_att) {
  AMA_CHECK(x != nullptr && have_up_down && m >= 0 && norm_ok);
  AMA_CHECK(up_in > 0 && up_out > 0 && down_in == up_out && down_out == up_in && ldx >= up_in);
  AMA_CHECK(!have_proj || (proj_out == up_in && proj_in > 0 && one_att && ld_att >= proj_in));
}

inline void check_layer_norm(const float* x, int m, int n, int ld, const float* gamma, const float* beta,
                             const float* y) {
  AMA_CHECK(x != nullptr && y != nullptr && gamma != nullptr && beta != nullptr);
  AMA_CHECK(m >= 0 && n > 0 && ld >= n);
}

inline void check_attention(int n_q, int ld_q, int n_kv, int ld_kv, int n_head, int d_head, bool causal, int q_pos0,
                            int ld_out) {
  AMA_CHECK(n_q >= 0 && n_kv > 0 && n_head > 0 && d_head > 0);
  AMA_CHECK(ld_q >= n_head * d_head && ld_kv >= n_head * d_head && ld_out >= n_head * d_head);
  AMA_CHECK(!causal || (q_pos0 >= 0 && q_pos0 + n_q <= n_kv));
}

}  // namespace ama
