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
  return run(&cache, {}, cross, tokens, n_tok, all_logits, logits);
}

bool Decoder::forward_batch(const std::vector<KvCache*>& caches, const CrossKv& cross, const int* tokens,
                            std::vector<float>& logits) {
  return run(nullptr, caches, cross, tokens, static_cast<int>(caches.size()), true, logits);
}

bool Decoder::run(KvCache* single, const std::vector<KvCache*>& caches, const CrossKv& cross, const int* tokens,
                  int n_tok, bool all_logits, std::vector<float>& logits) {
  const HParams& hp = m_.hp;
  const int n = hp.n_text_state, n_head = hp.n_text_head, d_head = n / n_head;
  if (n_tok <= 0) return false;
  auto pos_of = [&](int row) { return single ? single->n_past + row : caches[row]->n_past; };
  auto cache_of = [&](int row) { return single ? single : caches[row]; };
  for (int i = 0; i < n_tok; ++i) {
    if (tokens[i] < 0 || tokens[i] >= hp.n_vocab) return false;
    if (pos_of(i) >= hp.n_text_ctx) return false;
  }
  if (!single)
    for (int i = 0; i < n_tok; ++i)
      for (int j = 0; j < i; ++j)
        if (caches[i] == caches[j]) return false;  // one token per sequence

  const size_t rows = static_cast<size_t>(n_tok);
  x_.resize(rows * n);
  h_.resize(rows * n);
  q_.resize(rows * n);
  att_.resize(rows * n);
  mlp_.resize(rows * n * 4);
  k_.resize(rows * n);
  v_.resize(rows * n);
  for (int i = 0; i < n_tok; ++i) {
    const float* te = m_.token_embedding.data() + static_cast<size_t>(tokens[i]) * n;
    const float* pe = m_.decoder_pos.data() + static_cast<size_t>(pos_of(i)) * n;
    for (int c = 0; c < n; ++c) x_[i * n + c] = te[c] + pe[c];
  }
  const size_t layer_cache = static_cast<size_t>(hp.n_text_ctx) * n;
  const size_t layer_cross = static_cast<size_t>(hp.n_audio_ctx) * n;
  float* x = x_.data();
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const DecoderLayerWeights& L = m_.decoder[l];
    be_.layer_norm(x, n_tok, n, n, L.attn_ln.gamma.data(), L.attn_ln.beta.data(), kLnEps, h_.data());
    be_.linear(h_.data(), n_tok, n, *L.attn.query.w, L.attn.query.bias(), Activation::none, false, q_.data(), n);
    be_.linear(h_.data(), n_tok, n, *L.attn.key.w, nullptr, Activation::none, false, k_.data(), n);
    be_.linear(h_.data(), n_tok, n, *L.attn.value.w, L.attn.value.bias(), Activation::none, false, v_.data(), n);
    for (int i = 0; i < n_tok; ++i) {
      KvCache* c = cache_of(i);
      const size_t at = l * layer_cache + static_cast<size_t>(pos_of(i)) * n;
      std::memcpy(c->k.data() + at, k_.data() + static_cast<size_t>(i) * n, n * sizeof(float));
      std::memcpy(c->v.data() + at, v_.data() + static_cast<size_t>(i) * n, n * sizeof(float));
    }
    if (single) {
      const int pos0 = single->n_past;
      be_.attention(q_.data(), n_tok, n, single->k.data() + l * layer_cache, single->v.data() + l * layer_cache,
                    pos0 + n_tok, n, n_head, d_head, true, pos0, att_.data(), n);
    } else {
      for (int i = 0; i < n_tok; ++i)
        be_.attention(q_.data() + static_cast<size_t>(i) * n, 1, n, caches[i]->k.data() + l * layer_cache,
                      caches[i]->v.data() + l * layer_cache, pos_of(i) + 1, n, n_head, d_head, true, pos_of(i),
                      att_.data() + static_cast<size_t>(i) * n, n);
    }
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
  if (single)
    single->n_past += n_tok;
  else
    for (KvCache* c : caches) ++c->n_past;
  const int first = all_logits ? 0 : n_tok - 1;
  const int n_rows = n_tok - first;
  be_.layer_norm(x + first * n, n_rows, n, n, m_.ln.gamma.data(), m_.ln.beta.data(), kLnEps, h_.data());
  logits.resize(static_cast<size_t>(n_rows) * hp.n_vocab);
  be_.linear(h_.data(), n_rows, n, *m_.logits.w, nullptr, Activation::none, false, logits.data(), hp.n_vocab);
  return true;
}

}  // namespace ama
