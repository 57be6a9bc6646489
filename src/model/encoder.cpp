#include "model/encoder.h"

#include <algorithm>

namespace ama {

namespace {
constexpr float kLnEps = 1e-5f;  // torch.nn.LayerNorm default, as in Whisper
}

void Encoder::run(const float* mel, int ld, std::vector<float>& out) {
  const HParams& hp = m_.hp;
  const int n_mels = hp.n_mels, n = hp.n_audio_state, ctx = hp.n_audio_ctx, frames = 2 * ctx;
  const int n_head = hp.n_audio_head, d_head = n / n_head;

  // The blocks' buffers are sized first and the convolutions borrow them:
  // conv2's im2col columns [ctx][3 n] are exactly qkv_'s size, conv1's
  // output [2 ctx][n] fits in mlp_ ([ctx][4 n]), and conv1's columns
  // [2 ctx][3 n_mels] fit in qkv_ when 2 n_mels <= n (every Whisper: 80 or
  // 128 mels, n >= 384; custom test shapes get their own buffer). Separate
  // buffers held 15 MB more for base (9.2 + 6.1), for the whole run: the
  // stage keeps its scratch between windows.
  qkv_.resize(static_cast<size_t>(ctx) * n * 3);
  att_.resize(static_cast<size_t>(ctx) * n);
  mlp_.resize(static_cast<size_t>(ctx) * n * 4);
  float* cols = qkv_.data();
  float* conv = mlp_.data();
  const size_t conv1_cols = static_cast<size_t>(frames) * n_mels * 3;
  if (conv1_cols > qkv_.size()) {
    cols_.resize(conv1_cols);
    cols = cols_.data();
  }

  // conv1: kernel 3, padding 1, stride 1, as a GEMM over windows
  // cols[t][c * 3 + j] = mel[c][t + j - 1] (zero outside), which matches the
  // [out][in][3] weight layout.
  std::fill_n(cols, conv1_cols, 0.0f);
  for (int t = 0; t < frames; ++t)
    for (int c = 0; c < n_mels; ++c)
      for (int j = 0; j < 3; ++j) {
        const int s = t + j - 1;
        if (s >= 0 && s < frames) cols[(static_cast<size_t>(t) * n_mels + c) * 3 + j] = mel[static_cast<size_t>(c) * ld + s];
      }
  be_.linear(cols, frames, n_mels * 3, *m_.conv1.w, m_.conv1.bias(), Activation::gelu, false, conv, n);

  // conv2: kernel 3, padding 1, stride 2: cols[t][c * 3 + j] = conv[2t + j - 1][c].
  cols = qkv_.data();
  std::fill_n(cols, static_cast<size_t>(ctx) * n * 3, 0.0f);
  for (int t = 0; t < ctx; ++t)
    for (int j = 0; j < 3; ++j) {
      const int s = 2 * t + j - 1;
      if (s < 0 || s >= frames) continue;
      const float* src = conv + static_cast<size_t>(s) * n;
      float* dst = cols + static_cast<size_t>(t) * n * 3 + j;
      for (int c = 0; c < n; ++c) dst[c * 3] = src[c];
    }
  out.resize(static_cast<size_t>(ctx) * n);
  float* x = out.data();
  be_.linear(cols, ctx, n * 3, *m_.conv2.w, m_.conv2.bias(), Activation::gelu, false, x, n);
  for (size_t i = 0; i < out.size(); ++i) x[i] += m_.encoder_pos[i];

  for (const EncoderLayerWeights& L : m_.encoder) {
    // The attention LayerNorm is applied as its rows are converted for the
    // Q/K/V GEMM (PreNorm), and Q/K/V are one GEMM over the stacked [3n][n]
    // matrix whose output rows [q | k | v] attention reads in place (ld 3n).
    const PreNorm attn_ln{L.attn_ln.gamma.data(), L.attn_ln.beta.data(), kLnEps};
    int ld_qkv = 3 * n;
    float* q = qkv_.data();
    float* k = q + n;
    float* v = q + 2 * n;
    if (L.qkv.w) {
      LinearOutput o;
      o.y = q;
      o.ldy = ld_qkv;
      be_.linear_fused(x, ctx, n, &attn_ln, *L.qkv.w, L.qkv.bias(), Activation::none, false, o);
    } else {  // not stacked (stack_projections): three GEMMs into [q][k][v] blocks
      ld_qkv = n;
      h_.resize(static_cast<size_t>(ctx) * n);  // only here: the stacked path normalizes in the conversion
      k = q + static_cast<size_t>(ctx) * n;
      v = k + static_cast<size_t>(ctx) * n;
      be_.layer_norm(x, ctx, n, n, attn_ln.gamma, attn_ln.beta, kLnEps, h_.data());
      be_.linear(h_.data(), ctx, n, *L.attn.query.w, L.attn.query.bias(), Activation::none, false, q, n);
      be_.linear(h_.data(), ctx, n, *L.attn.key.w, nullptr, Activation::none, false, k, n);
      be_.linear(h_.data(), ctx, n, *L.attn.value.w, L.attn.value.bias(), Activation::none, false, v, n);
    }
    be_.attention(q, ctx, ld_qkv, k, v, ctx, ld_qkv, n_head, d_head, false, 0, att_.data(), n);
    be_.linear(att_.data(), ctx, n, *L.attn.out.w, L.attn.out.bias(), Activation::none, true, x, n);

    // MLP: LayerNorm in the up GEMM's conversion, GELU and bias in its
    // epilogue, the residual add in the down GEMM's epilogue.
    const PreNorm mlp_ln{L.mlp_ln.gamma.data(), L.mlp_ln.beta.data(), kLnEps};
    LinearOutput up;
    up.y = mlp_.data();
    up.ldy = 4 * n;
    be_.linear_fused(x, ctx, n, &mlp_ln, *L.mlp0.w, L.mlp0.bias(), Activation::gelu, false, up);
    be_.linear(mlp_.data(), ctx, 4 * n, *L.mlp2.w, L.mlp2.bias(), Activation::none, true, x, n);
  }
  be_.layer_norm(x, ctx, n, n, m_.ln_post.gamma.data(), m_.ln_post.beta.data(), kLnEps, x);
}

}  // namespace ama
