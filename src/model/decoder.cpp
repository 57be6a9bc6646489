#include "model/decoder.h"

#include <algorithm>
#include <cstring>

namespace ama {

namespace {
constexpr float kLnEps = 1e-5f;
}

KvCache Decoder::new_cache() const {
  const HParams& hp = m_.hp;
  KvCache c;
  const size_t size = static_cast<size_t>(hp.n_text_layer) * hp.n_text_ctx * hp.n_text_state;
  c.k.assign(size, 0.0f);
  c.v.assign(size, 0.0f);
  return c;
}

void Decoder::compute_cross(const float* encoder_out, CrossKv& cross) {
  const HParams& hp = m_.hp;
  const int n = hp.n_text_state, ctx = hp.n_audio_ctx;
  const size_t per_layer = static_cast<size_t>(ctx) * n;
  cross.k.resize(per_layer * hp.n_text_layer);
  cross.v.resize(per_layer * hp.n_text_layer);
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const AttentionWeights& a = m_.decoder[l].cross;
    be_.linear(encoder_out, ctx, n, *a.key.w, nullptr, Activation::none, false, cross.k.data() + l * per_layer, n);
    be_.linear(encoder_out, ctx, n, *a.value.w, a.value.bias(), Activation::none, false,
               cross.v.data() + l * per_layer, n);
  }
}

bool Decoder::forward(KvCache& cache, const CrossKv& cross, const int* tokens, int n_tok, bool all_logits,
                      std::vector<float>& logits) {
  const HParams& hp = m_.hp;
  const int n = hp.n_text_state, n_head = hp.n_text_head, d_head = n / n_head;
  const int pos0 = cache.n_past;
  if (n_tok <= 0 || pos0 + n_tok > hp.n_text_ctx) return false;
  for (int i = 0; i < n_tok; ++i)
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab) return false;

  const size_t rows = static_cast<size_t>(n_tok);
  x_.resize(rows * n);
  h_.resize(rows * n);
  q_.resize(rows * n);
  att_.resize(rows * n);
  mlp_.resize(rows * n * 4);
  for (int i = 0; i < n_tok; ++i) {
    const float* te = m_.token_embedding.data() + static_cast<size_t>(tokens[i]) * n;
    const float* pe = m_.decoder_pos.data() + static_cast<size_t>(pos0 + i) * n;
    for (int c = 0; c < n; ++c) x_[i * n + c] = te[c] + pe[c];
  }
  const size_t layer_cache = static_cast<size_t>(hp.n_text_ctx) * n;
  const size_t layer_cross = static_cast<size_t>(hp.n_audio_ctx) * n;
  float* x = x_.data();
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const DecoderLayerWeights& L = m_.decoder[l];
    float* kc = cache.k.data() + l * layer_cache;
    float* vc = cache.v.data() + l * layer_cache;
    be_.layer_norm(x, n_tok, n, n, L.attn_ln.gamma.data(), L.attn_ln.beta.data(), kLnEps, h_.data());
    be_.linear(h_.data(), n_tok, n, *L.attn.query.w, L.attn.query.bias(), Activation::none, false, q_.data(), n);
    be_.linear(h_.data(), n_tok, n, *L.attn.key.w, nullptr, Activation::none, false, kc + pos0 * n, n);
    be_.linear(h_.data(), n_tok, n, *L.attn.value.w, L.attn.value.bias(), Activation::none, false, vc + pos0 * n, n);
    be_.attention(q_.data(), n_tok, n, kc, vc, pos0 + n_tok, n, n_head, d_head, true, pos0, att_.data(), n);
    be_.linear(att_.data(), n_tok, n, *L.attn.out.w, L.attn.out.bias(), Activation::none, true, x, n);

    be_.layer_norm(x, n_tok, n, n, L.cross_ln.gamma.data(), L.cross_ln.beta.data(), kLnEps, h_.data());
    be_.linear(h_.data(), n_tok, n, *L.cross.query.w, L.cross.query.bias(), Activation::none, false, q_.data(), n);
    be_.attention(q_.data(), n_tok, n, cross.k.data() + l * layer_cross, cross.v.data() + l * layer_cross,
                  hp.n_audio_ctx, n, n_head, d_head, false, 0, att_.data(), n);
    be_.linear(att_.data(), n_tok, n, *L.cross.out.w, L.cross.out.bias(), Activation::none, true, x, n);

    be_.layer_norm(x, n_tok, n, n, L.mlp_ln.gamma.data(), L.mlp_ln.beta.data(), kLnEps, h_.data());
    be_.linear(h_.data(), n_tok, n, *L.mlp0.w, L.mlp0.bias(), Activation::gelu, false, mlp_.data(), 4 * n);
    be_.linear(mlp_.data(), n_tok, 4 * n, *L.mlp2.w, L.mlp2.bias(), Activation::none, true, x, n);
  }
  cache.n_past = pos0 + n_tok;
  const int first = all_logits ? 0 : n_tok - 1;
  const int n_rows = n_tok - first;
  be_.layer_norm(x + first * n, n_rows, n, n, m_.ln.gamma.data(), m_.ln.beta.data(), kLnEps, h_.data());
  logits.resize(static_cast<size_t>(n_rows) * hp.n_vocab);
  be_.linear(h_.data(), n_rows, n, *m_.logits.w, nullptr, Activation::none, false, logits.data(), hp.n_vocab);
  return true;
}

}  // namespace ama
