#include "model/decoder.h"

#include <algorithm>
#include <cstring>

#include "core/half.h"

namespace ama {

namespace {
constexpr float kLnEps = 1e-5f;
}

KvCache Decoder::new_cache() const {
  const HParams& hp = m_.hp;
  KvCache c;
  const size_t size = static_cast<size_t>(hp.n_text_layer) * hp.n_text_ctx * hp.n_text_state;
  if (bf16_kv_) {
    c.k16.assign(size, 0);
    c.v16.assign(size, 0);
  } else {
    c.k.assign(size, 0.0f);
    c.v.assign(size, 0.0f);
  }
  return c;
}

void Decoder::compute_cross(const float* encoder_out, CrossKv& cross) {
  const HParams& hp = m_.hp;
  const int n = hp.n_text_state, ctx = hp.n_audio_ctx;
  const size_t per_layer = static_cast<size_t>(ctx) * n;
  cross.k.resize(per_layer * (bf16_kv_ ? 1 : hp.n_text_layer));
  cross.v.resize(per_layer * (bf16_kv_ ? 1 : hp.n_text_layer));
  if (bf16_kv_) {
    cross.k16.resize(per_layer * hp.n_text_layer);
    cross.v16.resize(per_layer * hp.n_text_layer);
  }
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const AttentionWeights& a = m_.decoder[l].cross;
    float* k = cross.k.data() + (bf16_kv_ ? 0 : l * per_layer);
    float* v = cross.v.data() + (bf16_kv_ ? 0 : l * per_layer);
    be_.linear(encoder_out, ctx, n, *a.key.w, nullptr, Activation::none, false, k, n);
    be_.linear(encoder_out, ctx, n, *a.value.w, a.value.bias(), Activation::none, false, v, n);
    if (bf16_kv_)
      for (size_t i = 0; i < per_layer; ++i) {
        cross.k16[l * per_layer + i] = f32_to_bf16(k[i]);
        cross.v16[l * per_layer + i] = f32_to_bf16(v[i]);
      }
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
      const float* kr = k_.data() + static_cast<size_t>(i) * n;
      const float* vr = v_.data() + static_cast<size_t>(i) * n;
      if (bf16_kv_) {
        for (int c2 = 0; c2 < n; ++c2) {
          c->k16[at + c2] = f32_to_bf16(kr[c2]);
          c->v16[at + c2] = f32_to_bf16(vr[c2]);
        }
      } else {
        std::memcpy(c->k.data() + at, kr, n * sizeof(float));
        std::memcpy(c->v.data() + at, vr, n * sizeof(float));
      }
    }
    // Self-attention: one call for a single sequence's rows, else per row.
    const int groups = single ? 1 : n_tok;
    for (int g = 0; g < groups; ++g) {
      KvCache* c = single ? single : caches[g];
      const int rows = single ? n_tok : 1;
      const int pos0 = single ? single->n_past : pos_of(g);
      const size_t row = single ? 0 : static_cast<size_t>(g) * n;
      if (bf16_kv_)
        be_.attention_bf16kv(q_.data() + row, rows, n, c->k16.data() + l * layer_cache, c->v16.data() + l * layer_cache,
                             pos0 + rows, n, n_head, d_head, true, pos0, att_.data() + row, n);
      else
        be_.attention(q_.data() + row, rows, n, c->k.data() + l * layer_cache, c->v.data() + l * layer_cache,
                      pos0 + rows, n, n_head, d_head, true, pos0, att_.data() + row, n);
    }
    be_.linear(att_.data(), n_tok, n, *L.attn.out.w, L.attn.out.bias(), Activation::none, true, x, n);

    be_.layer_norm(x, n_tok, n, n, L.cross_ln.gamma.data(), L.cross_ln.beta.data(), kLnEps, h_.data());
    be_.linear(h_.data(), n_tok, n, *L.cross.query.w, L.cross.query.bias(), Activation::none, false, q_.data(), n);
    if (bf16_kv_)
      be_.attention_bf16kv(q_.data(), n_tok, n, cross.k16.data() + l * layer_cross, cross.v16.data() + l * layer_cross,
                           hp.n_audio_ctx, n, n_head, d_head, false, 0, att_.data(), n);
    else
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
