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

  // The convolutions (kernel 3, padding 1) run as GEMMs on views: their
  // weights are packed taps first ([out][3][in], see load_weights), so the
  // window of output frame t is 3 consecutive rows of a frame-major input
  // with a zero row before the first frame (and, for conv1, after the last).
  // The im2col copies this replaces (a zero fill and a strided copy of
  // 3 x 1500 x 512 floats for base's conv2) ran on one thread.
  // At bf16/int8 compute the attention's operands and output are bf16 (the
  // Q/K/V GEMMs write bf16, the attention rounds its rows, the output
  // projection reads them as they are: no pass that only converts), in
  // qkv16_ ([ctx][3 n]) and att16_; f32 compute keeps them f32 in qkv_ and
  // att_. The MLP's hidden rows are the backend's (mlp_block). conv_ holds
  // conv1's output [2 ctx + 1][n] and then its input [2 ctx + 2][n_mels].
  const bool bf16_att = be_.compute_type() != ComputeType::f32;
  const size_t qkv_size = static_cast<size_t>(ctx) * n * 3;
  if (bf16_att) {
    qkv16_.resize(qkv_size);
    att16_.resize(static_cast<size_t>(ctx) * n);
  } else {
    qkv_.resize(qkv_size);
    att_.resize(static_cast<size_t>(ctx) * n);
  }
  const size_t mel_rows = static_cast<size_t>(frames) + 2;
  const size_t conv1_size = (static_cast<size_t>(frames) + 1) * n;
  conv_.resize(conv1_size + mel_rows * n_mels);
  float* melt = conv_.data() + conv1_size;
  // conv1: melt[1 + f][c] = mel[c][f], zero rows at f = -1 and f = frames;
  // output frame t reads rows t .. t + 2 (frames t - 1 .. t + 1).
  std::fill_n(melt, n_mels, 0.0f);
  std::fill_n(melt + (mel_rows - 1) * n_mels, n_mels, 0.0f);
  for (int c = 0; c < n_mels; ++c) {
    const float* src = mel + static_cast<size_t>(c) * ld;
    for (int f = 0; f < frames; ++f) melt[(static_cast<size_t>(f) + 1) * n_mels + c] = src[f];
  }
  float* conv = conv_.data();  // conv[0] = 0, conv[1 + f] = frame f of conv1's output
  std::fill_n(conv, n, 0.0f);
  be_.linear(melt, frames, n_mels, *m_.conv1.w, m_.conv1.bias(), m_.conv1_act, false, conv + n, n);

  // conv2, stride 2: output frame t reads conv1 frames 2t - 1 .. 2t + 1, rows
  // 2t .. 2t + 2 of conv (row stride 2n; the last frame's window ends at
  // frame 2 ctx - 1, the last one there is).
  out.resize(static_cast<size_t>(ctx) * n);
  float* x = out.data();
  be_.linear(conv, ctx, 2 * n, *m_.conv2.w, m_.conv2.bias(), Activation::gelu, false, x, n);
  for (size_t i = 0; i < out.size(); ++i) x[i] += m_.encoder_pos[i];

  for (const EncoderLayerWeights& L : m_.encoder) {
    // The attention LayerNorm is applied as its rows are converted for the
    // Q/K/V GEMM (PreNorm), and Q/K/V are one GEMM over the stacked [3n][n]
    // matrix whose output rows [q | k | v] attention reads in place (ld 3n).
    const PreNorm attn_ln{L.attn_ln.gamma.data(), L.attn_ln.beta.data(), kLnEps};
    // Rows [q | k | v] of ld_qkv, in f32 (f32 compute) or bf16 (LinearOutput
    // picks the one that is set).
    int ld_qkv = 3 * n;
    float* q = bf16_att ? nullptr : qkv_.data();
    uint16_t* q16 = bf16_att ? qkv16_.data() : nullptr;
    size_t k_at = n, v_at = 2 * static_cast<size_t>(n);  // offsets of k and v from q
    auto out_at = [&](size_t at) {
      LinearOutput o;
      o.ldy = ld_qkv;
      if (q16)
        o.y_bf16 = q16 + at;
      else
        o.y = q + at;
      return o;
    };
    if (L.qkv.w) {
      be_.linear_fused(x, ctx, n, &attn_ln, *L.qkv.w, L.qkv.bias(), Activation::none, false, out_at(0));
    } else {  // not stacked (stack_projections): three GEMMs into [q][k][v] blocks
      ld_qkv = n;
      k_at = static_cast<size_t>(ctx) * n;
      v_at = 2 * k_at;
      h_.resize(static_cast<size_t>(ctx) * n);  // only here: the stacked path normalizes in the conversion
      be_.layer_norm(x, ctx, n, n, attn_ln.gamma, attn_ln.beta, kLnEps, h_.data());
      be_.linear_fused(h_.data(), ctx, n, nullptr, *L.attn.query.w, L.attn.query.bias(), Activation::none, false,
                       out_at(0));
      be_.linear_fused(h_.data(), ctx, n, nullptr, *L.attn.key.w, nullptr, Activation::none, false, out_at(k_at));
      be_.linear_fused(h_.data(), ctx, n, nullptr, *L.attn.value.w, L.attn.value.bias(), Activation::none, false,
                       out_at(v_at));
    }
    if (bf16_att) {
      // The attention reads bf16 Q, K and V (its packers only rearrange
      // them), rounds its rows to bf16 as it finishes them, and the O
      // projection's GEMM reads those in place. The passes this removed
      // converted only: the O projection's to_bf16_row over the f32
      // attention output (1500 x 512 per layer at base, ~0.8% of the
      // encoder's time in perf), and the f32 -> bf16 rounding of Q, K and V
      // inside the attention's packing. Results are bit for bit those of
      // the f32 hand-offs (every kernel rounded these values to bf16 anyway;
      // the int8 K packer quantizes the bf16 K). Measured (AMD EPYC Zen 4,
      // bench/attention_handoff_bench.cpp, base's attention block at int8
      // compute, the variants interleaved, medians of 40): 2 threads 17.9 ms
      // with f32 hand-offs, 17.7 with only the output in bf16, 16.95 with
      // Q/K/V too; 1 thread 34.4, 34.1, 33.6. The encoder (bench, 2 threads,
      // two sets of 54 runs per binary, alternated, on the shared machine):
      // p25 160.1 -> 157.5 and 162.6 -> 159.0 ms, min 158.9 -> 156.6 and
      // 160.6 -> 157.0: ~3 ms, 2%.
      AttentionOperands io;
      io.q_bf16 = q16, io.ld_q = ld_qkv, io.k_bf16 = q16 + k_at, io.v_bf16 = q16 + v_at, io.ld_kv = ld_qkv;
      io.out_bf16 = att16_.data(), io.ld_out = n;
      be_.attention_mixed(io, ctx, ctx, n_head, d_head, false, 0);
    } else {
      be_.attention(q, ctx, ld_qkv, q + k_at, q + v_at, ctx, ld_qkv, n_head, d_head, false, 0, att_.data(), n);
    }

    // The rest of the block, row by row (Backend::mlp_block): the output
    // projection with the residual add in its epilogue, then the MLP with
    // LayerNorm in the up GEMM's conversion, GELU and bias in its epilogue,
    // the residual add in the down GEMM's.
    const PreNorm mlp_ln{L.mlp_ln.gamma.data(), L.mlp_ln.beta.data(), kLnEps};
    MlpBlock mb;
    mb.norm = &mlp_ln;
    mb.up = L.mlp0.w.get(), mb.up_bias = L.mlp0.bias(), mb.act = m_.encoder_mlp_act;
    mb.down = L.mlp2.w.get(), mb.down_bias = L.mlp2.bias();
    mb.out_proj = L.attn.out.w.get(), mb.out_bias = L.attn.out.bias(), mb.ld_att = n;
    if (bf16_att)
      mb.att_bf16 = att16_.data();
    else
      mb.att = att_.data();
    be_.mlp_block(x, ctx, n, mb);
  }
  be_.layer_norm(x, ctx, n, n, m_.ln_post.gamma.data(), m_.ln_post.beta.data(), kLnEps, x);
}

}  // namespace ama
