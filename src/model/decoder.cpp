#include "model/decoder.h"

#include <algorithm>
#include <cmath>
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
  // resize, not assign: the fresh zero pages stay untouched until written.
  if (bf16_kv_) {
    c.k16.resize(size);
    c.v16.resize(size);
  } else {
    c.k.resize(size);
    c.v.resize(size);
  }
  return c;
}

void Decoder::compute_cross(const float* encoder_out, CrossKv& cross) {
  const HParams& hp = m_.hp;
  const int n = hp.n_text_state, ctx = hp.n_audio_ctx;
  const size_t per_layer = static_cast<size_t>(ctx) * n;
  const size_t total = per_layer * hp.n_text_layer;
  // Keys, then values: with the layers' matrices stacked (stack_projections)
  // one GEMM per window writes every layer's block straight into the cache
  // layout [layer][frame][state], in bf16 when the caches are bf16 (the
  // epilogue rounds; no f32 copy). Otherwise one GEMM per layer, through
  // this decoder's f32 scratch when the cache is bf16.
  auto project = [&](const LinearWeights& stacked, LinearWeights AttentionWeights::*part, HugeVector<float>& f32,
                     HugeVector<uint16_t>& b16) {
    if (bf16_kv_)
      b16.resize(total);
    else
      f32.resize(total);
    if (stacked.w) {
      LinearOutput out;
      out.ldy = n;
      out.split = n;
      out.split_stride = per_layer;
      if (bf16_kv_)
        out.y_bf16 = b16.data();
      else
        out.y = f32.data();
      be_.linear_fused(encoder_out, ctx, n, nullptr, *stacked.w, stacked.bias(), Activation::none, false, out);
      return;
    }
    std::vector<float>& tmp = k_;  // scratch for one layer in f32
    if (bf16_kv_) tmp.resize(per_layer);
    for (int l = 0; l < hp.n_text_layer; ++l) {
      const LinearWeights& w = m_.decoder[l].cross.*part;
      float* y = bf16_kv_ ? tmp.data() : f32.data() + l * per_layer;
      be_.linear(encoder_out, ctx, n, *w.w, w.bias(), Activation::none, false, y, n);
      if (bf16_kv_)
        for (size_t i = 0; i < per_layer; ++i) b16[l * per_layer + i] = f32_to_bf16(y[i]);
    }
  };
  project(m_.cross_k, &AttentionWeights::key, cross.k, cross.k16);
  project(m_.cross_v, &AttentionWeights::value, cross.v, cross.v16);
}

void Decoder::copy_cache(const KvCache& from, KvCache& to) const {
  const HParams& hp = m_.hp;
  if (to.k.size() != from.k.size() || to.k16.size() != from.k16.size()) to = new_cache();
  const size_t layer = static_cast<size_t>(hp.n_text_ctx) * hp.n_text_state;
  const size_t used = static_cast<size_t>(from.n_past) * hp.n_text_state;
  for (int l = 0; l < hp.n_text_layer; ++l) {
    if (bf16_kv_) {
      std::copy_n(from.k16.begin() + l * layer, used, to.k16.begin() + l * layer);
      std::copy_n(from.v16.begin() + l * layer, used, to.v16.begin() + l * layer);
    } else {
      std::copy_n(from.k.begin() + l * layer, used, to.k.begin() + l * layer);
      std::copy_n(from.v.begin() + l * layer, used, to.v.begin() + l * layer);
    }
  }
  to.n_past = from.n_past;
}

bool Decoder::forward(KvCache& cache, const CrossKv& cross, const int* tokens, int n_tok, bool all_logits,
                      std::vector<float>& logits) {
  return step({Group{&cache, &cross, tokens, n_tok, all_logits}}, logits);
}

bool Decoder::forward_batch(const std::vector<KvCache*>& caches, const CrossKv& cross, const int* tokens,
                            std::vector<float>& logits) {
  std::vector<Group> groups;
  for (size_t i = 0; i < caches.size(); ++i) groups.push_back(Group{caches[i], &cross, tokens + i, 1, true});
  return step(groups, logits);
}

bool Decoder::step(const std::vector<Group>& groups, std::vector<float>& logits) {
  return step(groups, logits, nullptr);
}

void Decoder::capture_layer(int layer, const CrossKv& cross, int rows, AttentionCapture& capture) {
  const HParams& hp = m_.hp;
  const int n = hp.n_text_state, d_head = n / hp.n_text_head, ctx = hp.n_audio_ctx;
  const size_t layer_cross = static_cast<size_t>(ctx) * n;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d_head));
  std::vector<float>& out = *capture.out;
  std::vector<float> kh(static_cast<size_t>(ctx) * d_head);
  for (size_t i = 0; i < capture.heads.size(); ++i) {
    if (capture.heads[i].first != layer) continue;
    const int head = capture.heads[i].second;
    // This head's keys, as f32, contiguous.
    for (int j = 0; j < ctx; ++j) {
      const size_t at = layer * layer_cross + static_cast<size_t>(j) * n + static_cast<size_t>(head) * d_head;
      for (int d = 0; d < d_head; ++d)
        kh[static_cast<size_t>(j) * d_head + d] = bf16_kv_ ? bf16_to_f32(cross.k16[at + d]) : cross.k[at + d];
    }
    for (int r = 0; r < rows; ++r) {
      const float* q = q_.data() + static_cast<size_t>(r) * n + static_cast<size_t>(head) * d_head;
      float* w = out.data() + (i * rows + r) * static_cast<size_t>(ctx);
      float mx = -INFINITY;
      for (int j = 0; j < ctx; ++j) {
        const float* k = kh.data() + static_cast<size_t>(j) * d_head;
        float s = 0.0f;
        for (int d = 0; d < d_head; ++d) s += q[d] * k[d];
        w[j] = s * scale;
        mx = std::max(mx, w[j]);
      }
      double sum = 0.0;
      for (int j = 0; j < ctx; ++j) {
        w[j] = std::exp(w[j] - mx);
        sum += w[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int j = 0; j < ctx; ++j) w[j] *= inv;
    }
  }
}

bool Decoder::step(const std::vector<Group>& groups, std::vector<float>& logits, AttentionCapture* capture) {
  const HParams& hp = m_.hp;
  const int n = hp.n_text_state, n_head = hp.n_text_head, d_head = n / n_head;
  if (groups.empty()) return false;
  // Validate everything before touching any cache, so a refused step changes nothing.
  int n_tok = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const Group& G = groups[g];
    if (!G.cache || !G.cross || !G.tokens || G.n <= 0) return false;
    if (G.cache->n_past + G.n > hp.n_text_ctx) return false;
    for (int i = 0; i < G.n; ++i)
      if (G.tokens[i] < 0 || G.tokens[i] >= hp.n_vocab) return false;
    for (size_t h = 0; h < g; ++h)
      if (groups[h].cache == G.cache) return false;  // a sequence appears once per step
    n_tok += G.n;
  }
  if (capture) {
    if (groups.size() != 1 || !capture->out) return false;
    for (const auto& [layer, head] : capture->heads)
      if (layer < 0 || layer >= hp.n_text_layer || head < 0 || head >= hp.n_text_head) return false;
    capture->out->assign(capture->heads.size() * static_cast<size_t>(n_tok) * hp.n_audio_ctx, 0.0f);
  }

  const size_t rows = static_cast<size_t>(n_tok);
  x_.resize(rows * n);
  h_.resize(rows * n);
  q_.resize(rows * n);
  att_.resize(rows * n);
  mlp_.resize(rows * n * 4);
  k_.resize(rows * n);
  v_.resize(rows * n);
  // first_row[g]: the first row of group g in the stacked activations.
  std::vector<int>& first_row = first_row_;
  first_row.assign(groups.size() + 1, 0);
  for (size_t g = 0; g < groups.size(); ++g) first_row[g + 1] = first_row[g] + groups[g].n;
  for (size_t g = 0; g < groups.size(); ++g)
    for (int i = 0; i < groups[g].n; ++i) {
      const size_t r = first_row[g] + i;
      const float* pe = m_.decoder_pos.data() + static_cast<size_t>(groups[g].cache->n_past + i) * n;
      m_.embed_token(be_, groups[g].tokens[i], pe, x_.data() + r * n);
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
    for (size_t g = 0; g < groups.size(); ++g) {
      KvCache* c = groups[g].cache;
      for (int i = 0; i < groups[g].n; ++i) {
        const size_t at = l * layer_cache + static_cast<size_t>(c->n_past + i) * n;
        const size_t r = first_row[g] + i;
        const float* kr = k_.data() + r * n;
        const float* vr = v_.data() + r * n;
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
    }
    // Self-attention, per sequence over its own cache.
    for (size_t g = 0; g < groups.size(); ++g) {
      KvCache* c = groups[g].cache;
      const int nr = groups[g].n, pos0 = c->n_past;
      const size_t row = static_cast<size_t>(first_row[g]) * n;
      if (bf16_kv_)
        be_.attention_bf16kv(q_.data() + row, nr, n, c->k16.data() + l * layer_cache, c->v16.data() + l * layer_cache,
                             pos0 + nr, n, n_head, d_head, true, pos0, att_.data() + row, n);
      else
        be_.attention(q_.data() + row, nr, n, c->k.data() + l * layer_cache, c->v.data() + l * layer_cache, pos0 + nr,
                      n, n_head, d_head, true, pos0, att_.data() + row, n);
    }
    be_.linear(att_.data(), n_tok, n, *L.attn.out.w, L.attn.out.bias(), Activation::none, true, x, n);

    be_.layer_norm(x, n_tok, n, n, L.cross_ln.gamma.data(), L.cross_ln.beta.data(), kLnEps, h_.data());
    be_.linear(h_.data(), n_tok, n, *L.cross.query.w, L.cross.query.bias(), Activation::none, false, q_.data(), n);
    // Cross-attention: consecutive groups over the same audio window share one call.
    for (size_t g = 0; g < groups.size();) {
      const CrossKv& cross = *groups[g].cross;
      size_t e = g + 1;
      while (e < groups.size() && groups[e].cross == groups[g].cross) ++e;
      const int nr = first_row[e] - first_row[g];
      const size_t row = static_cast<size_t>(first_row[g]) * n;
      if (bf16_kv_)
        be_.attention_bf16kv(q_.data() + row, nr, n, cross.k16.data() + l * layer_cross,
                             cross.v16.data() + l * layer_cross, hp.n_audio_ctx, n, n_head, d_head, false, 0,
                             att_.data() + row, n);
      else
        be_.attention(q_.data() + row, nr, n, cross.k.data() + l * layer_cross, cross.v.data() + l * layer_cross,
                      hp.n_audio_ctx, n, n_head, d_head, false, 0, att_.data() + row, n);
      g = e;
    }
    if (capture) capture_layer(l, *groups[0].cross, n_tok, *capture);
    be_.linear(att_.data(), n_tok, n, *L.cross.out.w, L.cross.out.bias(), Activation::none, true, x, n);

    be_.layer_norm(x, n_tok, n, n, L.mlp_ln.gamma.data(), L.mlp_ln.beta.data(), kLnEps, h_.data());
    be_.linear(h_.data(), n_tok, n, *L.mlp0.w, L.mlp0.bias(), Activation::gelu, false, mlp_.data(), 4 * n);
    be_.linear(mlp_.data(), n_tok, 4 * n, *L.mlp2.w, L.mlp2.bias(), Activation::none, true, x, n);
  }
  for (const Group& G : groups) G.cache->n_past += G.n;

  // The final LayerNorm and the logits GEMM only over the rows asked for.
  // Rows are only moved down (out <= r), so compacting in place is safe.
  int n_out = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const int r0 = groups[g].all_logits ? first_row[g] : first_row[g + 1] - 1;
    for (int r = r0; r < first_row[g + 1]; ++r, ++n_out)
      if (n_out != r) std::memcpy(x + static_cast<size_t>(n_out) * n, x + static_cast<size_t>(r) * n, n * sizeof(float));
  }
  be_.layer_norm(x, n_out, n, n, m_.ln.gamma.data(), m_.ln.beta.data(), kLnEps, h_.data());
  logits.resize(static_cast<size_t>(n_out) * hp.n_vocab);
  be_.linear(h_.data(), n_out, n, *m_.logits.w, nullptr, Activation::none, false, logits.data(), hp.n_vocab);
  return true;
}

}  // namespace ama
