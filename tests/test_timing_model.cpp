// Word timestamps (decode/timing.h) with a tokenizer and a model: word
// splitting with multi-byte tokens, find_alignment on crafted weights, and
// DecoderStage::align on a small random model against a float64
// recomputation of the cross-attention weights, then add_word_timestamps
// through it. test_timing.cpp has the model-free parts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "decode/timing.h"
#include "engine/cpu_stages.h"
#include "model/hparams.h"
#include "model/test_model.h"
#include "model/whisper_model.h"
#include "reference_whisper.h"
#include "test_util.h"

namespace ama {
namespace {

Segment segment(double start, double end, std::vector<int> tokens, int seek = 0) {
  Segment s;
  s.start = start, s.end = end, s.tokens = std::move(tokens), s.seek = seek;
  return s;
}

// ------------------------------------------------------------------ the small test model

// tiny's shape cut to 64 state, 2 heads, 1 audio layer, 2 text layers, with
// the real multilingual vocabulary; written once per test binary.
struct SmallModel {
  std::string path;
  std::unique_ptr<Backend> be_f32, be_bf16;  // declared first: destroyed after the models
  std::shared_ptr<const WhisperModel> f32, bf16;
  HParams hp;
  ~SmallModel() { std::remove(path.c_str()); }
  static SmallModel& get() {
    static SmallModel m;
    return m;
  }

 private:
  SmallModel() {
    path = ::testing::TempDir() + "/timing_model_" + std::to_string(getpid()) + ".bin";
    auto h = standard_hparams("tiny");
    TestModelOptions o;
    o.hp = *h;
    o.hp.n_audio_state = o.hp.n_text_state = 64;
    o.hp.n_audio_head = o.hp.n_text_head = 2;
    o.hp.n_audio_layer = 1;
    o.hp.n_text_layer = 2;
    o.seed = 11;
    o.vocab_source = test::shared("models/whisper-vocab/for-tests-ggml-base.bin");
    o.output = path;
    hp = o.hp;
    Status st = write_test_model(o);
    EXPECT_TRUE(st.ok()) << st.message();
    for (ComputeType ct : {ComputeType::f32, ComputeType::bf16}) {
      CpuBackendOptions bo;
      bo.compute = ct;
      bo.n_threads = 1;
      auto b = make_cpu_backend(bo);
      EXPECT_TRUE(b.ok()) << b.message();
      auto m = load_model(path, *b.value());
      EXPECT_TRUE(m.ok()) << m.message();
      (ct == ComputeType::f32 ? f32 : bf16) = *m;
      (ct == ComputeType::f32 ? be_f32 : be_bf16) = std::move(b.value());
    }
  }
};

const Tokenizer& tokenizer() { return SmallModel::get().f32->tokenizer; }

int byte_token(unsigned char b) {
  const Tokenizer& tok = tokenizer();
  for (int id = 0; id < tok.special().eot; ++id)
    if (tok.token_bytes(id) == std::string(1, static_cast<char>(b))) return id;
  return -1;
}

// ------------------------------------------------------------------ word splitting

TEST(SplitWords, OnSpacesJoinsPiecesAndKeepsPunctuation) {
  const Tokenizer& tok = tokenizer();
  std::vector<int> tokens = tok.encode(" Hello world, it's");
  tokens.push_back(tok.special().eot);
  const WordTokens w = split_to_word_tokens(tok, tokens, "en");
  EXPECT_EQ(w.words, (std::vector<std::string>{" Hello", " world", ",", " it's", "<|endoftext|>"}));
  std::vector<int> joined;
  for (const auto& t : w.tokens) joined.insert(joined.end(), t.begin(), t.end());
  EXPECT_EQ(joined, tokens);
  EXPECT_EQ(w.tokens.back(), std::vector<int>{tok.special().eot});
}

TEST(SplitWords, MultiByteCharactersStayWhole) {
  const Tokenizer& tok = tokenizer();
  const int e4 = byte_token(0xE4), bd = byte_token(0xBD), a0 = byte_token(0xA0);
  ASSERT_GE(e4, 0);
  ASSERT_GE(bd, 0);
  ASSERT_GE(a0, 0);
  // 你 = E4 BD A0 in three byte tokens, then a lone E4 that never completes.
  WordTokens w = split_to_word_tokens(tok, {e4, bd, a0, e4}, "zh");
  EXPECT_EQ(w.words, (std::vector<std::string>{"\u4f60", "\ufffd"}));
  EXPECT_EQ(w.tokens, (std::vector<std::vector<int>>{{e4, bd, a0}, {e4}}));
  // On spaces, the character is one piece glued to the preceding word.
  std::vector<int> tokens = tok.encode(" ok");
  tokens.insert(tokens.end(), {e4, bd, a0});
  const std::vector<int> hello = tok.encode(" hello");
  tokens.insert(tokens.end(), hello.begin(), hello.end());
  w = split_to_word_tokens(tok, tokens, "en");
  EXPECT_EQ(w.words, (std::vector<std::string>{" ok\u4f60", " hello"}));
  // Chinese text: every word is whole characters and the words give the text back.
  const std::string text = "\u9f98\u9750\u4f60\u597d\uff0c\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002";
  tokens = tok.encode(text);
  w = split_to_word_tokens(tok, tokens, "zh");
  std::string all;
  bool multi = false;
  for (size_t i = 0; i < w.words.size(); ++i) {
    EXPECT_EQ(w.words[i].find("\xEF\xBF\xBD"), std::string::npos) << i;
    all += w.words[i];
    multi |= w.tokens[i].size() > 1;
  }
  EXPECT_EQ(all, text);
  EXPECT_TRUE(multi) << "no character of the test text spans several tokens";
}

// ------------------------------------------------------------------ find_alignment, crafted

TEST(FindAlignment, CraftedWeightsGiveTheWordBoundaries) {
  const Tokenizer& tok = tokenizer();
  const int eot = tok.special().eot, V = tok.n_vocab(), ctx = 1500;
  const std::vector<int> text = tok.encode(" Hello world");
  ASSERT_EQ(text.size(), 2u);
  const int n_sot = 1, T = n_sot + 2 + 2;
  // Row p attends to the audio of the token it predicts: no_timestamps ->
  // " Hello" at frames 10-39, " Hello" -> " world" at 40-79, " world" ->
  // eot at 80-99; sot and eot rows uniform. Positions past 100 get weight
  // too (cut by num_frames).
  std::vector<float> w(static_cast<size_t>(T) * ctx, 1.0f);
  auto attend = [&](int row, int b, int e) {
    for (int f = 0; f < ctx; ++f) w[static_cast<size_t>(row) * ctx + f] = f >= b && f < e ? 50.0f : 1.0f;
  };
  attend(1, 0, 40);
  attend(2, 40, 80);
  attend(3, 80, 100);
  for (int r = 0; r < T; ++r) {
    double s = 0;
    for (int f = 0; f < ctx; ++f) s += w[static_cast<size_t>(r) * ctx + f];
    for (int f = 0; f < ctx; ++f) w[static_cast<size_t>(r) * ctx + f] /= static_cast<float>(s);
  }
  std::vector<float> logits(static_cast<size_t>(T) * V, 0.0f);
  logits[static_cast<size_t>(1) * V + text[0]] = 100.0f;                           // " Hello" certain
  for (int v = eot; v < V; ++v) logits[static_cast<size_t>(2) * V + v] = 1000.0f;  // specials ignored
  AlignmentInput in{w.data(), 1, T, ctx, logits.data(), V};
  auto a = find_alignment(tok, "en", n_sot, text, in, 200);
  ASSERT_TRUE(a.ok()) << a.message();
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].word, " Hello");
  EXPECT_EQ((*a)[1].word, " world");
  EXPECT_DOUBLE_EQ((*a)[0].start, 0.0);
  EXPECT_DOUBLE_EQ((*a)[0].end, 0.8);
  EXPECT_DOUBLE_EQ((*a)[1].start, 0.8);
  EXPECT_DOUBLE_EQ((*a)[1].end, 1.6);
  EXPECT_NEAR((*a)[0].probability, 1.0, 1e-9);
  EXPECT_NEAR((*a)[1].probability, 1.0 / eot, 1e-9);
  // Wrong row count.
  in.n_tokens = T - 1;
  EXPECT_FALSE(find_alignment(tok, "en", n_sot, text, in, 200).ok());
  // No text: no words.
  EXPECT_TRUE(find_alignment(tok, "en", n_sot, {}, in, 200)->empty());
}

// ------------------------------------------------------------------ DecoderStage::align

// float64 cross-attention weights [layer][head][token][frame] for tokens fed
// from position 0, recomputed from the model file and the encoder output.
std::vector<double> reference_cross_weights(const test::RefWhisper& m, const std::vector<float>& enc_f,
                                            const std::vector<int>& tokens) {
  const HParams& hp = m.hp;
  const int T = static_cast<int>(tokens.size()), S = hp.n_text_state, H = hp.n_text_head, d = S / H;
  const int Ta = hp.n_audio_ctx;
  const std::vector<double> enc(enc_f.begin(), enc_f.end());
  auto linear = [&](const std::string& p, const std::vector<double>& x, int rows, int n, int k, bool bias) {
    std::vector<double> y(static_cast<size_t>(rows) * n);
    test::ref_gemm(rows, n, k, x.data(), k, m.get(p + ".weight", {n, k}), k, true,
                   bias ? m.get(p + ".bias", {n}) : nullptr, y.data(), n, 1);
    return y;
  };
  auto norm = [&](const std::string& p, const std::vector<double>& x) {
    std::vector<double> y(x.size());
    const double *g = m.get(p + ".weight", {S}), *b = m.get(p + ".bias", {S});
    for (int t = 0; t < T; ++t) {
      const double* r = x.data() + static_cast<size_t>(t) * S;
      double mean = 0, var = 0;
      for (int c = 0; c < S; ++c) mean += r[c];
      mean /= S;
      for (int c = 0; c < S; ++c) var += (r[c] - mean) * (r[c] - mean);
      const double inv = 1.0 / std::sqrt(var / S + 1e-5);
      for (int c = 0; c < S; ++c) y[static_cast<size_t>(t) * S + c] = (r[c] - mean) * inv * g[c] + b[c];
    }
    return y;
  };
  // softmax(q k^T / sqrt(d)) per head; optionally the attention output.
  auto attend = [&](const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>* v, int Tk,
                    bool causal, std::vector<double>* weights) {
    std::vector<double> o(static_cast<size_t>(T) * S, 0.0), row(Tk);
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < T; ++i) {
        double mx = -INFINITY, sum = 0;
        const int n = causal ? i + 1 : Tk;
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int c = 0; c < d; ++c) s += q[static_cast<size_t>(i) * S + h * d + c] * k[static_cast<size_t>(j) * S + h * d + c];
          row[j] = s / std::sqrt(static_cast<double>(d));
          mx = std::max(mx, row[j]);
        }
        for (int j = 0; j < n; ++j) sum += (row[j] = std::exp(row[j] - mx));
        for (int j = 0; j < n; ++j) {
          row[j] /= sum;
          if (weights) weights->push_back(row[j]);
          if (v)
            for (int c = 0; c < d; ++c) o[static_cast<size_t>(i) * S + h * d + c] += row[j] * (*v)[static_cast<size_t>(j) * S + h * d + c];
        }
      }
    return o;
  };
  const double* emb = m.get("decoder.token_embedding.weight", {hp.n_vocab, S});
  const double* pos = m.get("decoder.positional_embedding", {hp.n_text_ctx, S});
  std::vector<double> x(static_cast<size_t>(T) * S), out;
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < S; ++c) x[static_cast<size_t>(t) * S + c] = emb[static_cast<size_t>(tokens[t]) * S + c] + pos[static_cast<size_t>(t) * S + c];
  auto add = [&](const std::vector<double>& y) {
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  };
  for (int l = 0; l < hp.n_text_layer; ++l) {
    const std::string p = "decoder.blocks." + std::to_string(l);
    std::vector<double> h = norm(p + ".attn_ln", x);
    std::vector<double> q = linear(p + ".attn.query", h, T, S, S, true), k = linear(p + ".attn.key", h, T, S, S, false),
                        v = linear(p + ".attn.value", h, T, S, S, true);
    add(linear(p + ".attn.out", attend(q, k, &v, T, true, nullptr), T, S, S, true));
    h = norm(p + ".cross_attn_ln", x);
    q = linear(p + ".cross_attn.query", h, T, S, S, true);
    k.assign(static_cast<size_t>(Ta) * S, 0);
    test::ref_gemm(Ta, S, S, enc.data(), S, m.get(p + ".cross_attn.key.weight", {S, S}), S, true, nullptr, k.data(), S, 1);
    v.assign(static_cast<size_t>(Ta) * S, 0);
    test::ref_gemm(Ta, S, S, enc.data(), S, m.get(p + ".cross_attn.value.weight", {S, S}), S, true,
                   m.get(p + ".cross_attn.value.bias", {S}), v.data(), S, 1);
    add(linear(p + ".cross_attn.out", attend(q, k, &v, Ta, false, &out), T, S, S, true));
    h = norm(p + ".mlp_ln", x);
    std::vector<double> u = linear(p + ".mlp.0", h, T, 4 * S, S, true);
    for (double& e : u) e = 0.5 * e * (1.0 + std::erf(e / std::sqrt(2.0)));
    add(linear(p + ".mlp.2", u, T, S, 4 * S, true));
  }
  return out;
}

class Align : public ::testing::TestWithParam<ComputeType> {};

TEST_P(Align, WeightsLogitsAndErrors) {
  SmallModel& sm = SmallModel::get();
  const bool f32 = GetParam() == ComputeType::f32;
  auto model = f32 ? sm.f32 : sm.bf16;
  Backend& be = f32 ? *sm.be_f32 : *sm.be_bf16;
  ASSERT_TRUE(model);
  const HParams& hp = model->hp;
  CpuEncoderStage enc(model, be, true);
  CpuDecoderStage dec(model, be);
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 0.5f);
  std::vector<float> mel(static_cast<size_t>(hp.n_mels) * kNFramesPerWindow);
  for (float& v : mel) v = g(rng);
  auto states = enc.encode(mel.data(), 1, mel.size(), kNFramesPerWindow);
  ASSERT_TRUE(states.ok()) << states.message();
  auto state = (*states)[0];
  const SpecialTokens& sp = model->tokenizer.special();
  std::vector<int> tokens = {sp.sot, sp.language_begin, sp.transcribe, sp.no_timestamps};
  for (int t : model->tokenizer.encode(" The quick brown fox.")) tokens.push_back(t);
  tokens.push_back(sp.eot);
  const int T = static_cast<int>(tokens.size()), A = hp.n_audio_ctx;
  const std::vector<AttentionHead> heads = {{1, 1}, {0, 0}, {1, 0}, {0, 1}};

  std::vector<float> weights, logits;
  Status st = dec.align(state, tokens, heads, weights, logits);
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(weights.size(), heads.size() * T * A);
  EXPECT_EQ(dec.size(), 0);
  for (size_t r = 0; r < heads.size() * T; ++r) {
    double s = 0;
    for (int f = 0; f < A; ++f) s += weights[r * A + f];
    EXPECT_NEAR(s, 1.0, 1e-4) << "row " << r;
  }
  // The logits are the normal step's, bit for bit.
  auto seq = dec.add_sequence(state);
  ASSERT_TRUE(seq.ok());
  std::vector<float> step_logits;
  ASSERT_TRUE(dec.step({{*seq, tokens, true}}, step_logits).ok());
  ASSERT_EQ(logits.size(), step_logits.size());
  EXPECT_EQ(std::memcmp(logits.data(), step_logits.data(), logits.size() * sizeof(float)), 0);

  // An align between two steps of a live sequence does not disturb it.
  const std::vector<int> more = {tokens[4], tokens[5]};
  std::vector<float> a1, a2;
  ASSERT_TRUE(dec.step({{*seq, more, false}}, a1).ok());
  auto seq2 = dec.add_sequence(state);
  ASSERT_TRUE(dec.step({{*seq2, tokens, false}}, step_logits).ok());
  std::vector<float> w2, l2;
  ASSERT_TRUE(dec.align(state, {sp.sot, sp.eot}, heads, w2, l2).ok());
  ASSERT_TRUE(dec.step({{*seq2, more, false}}, a2).ok());
  EXPECT_EQ(a1, a2);
  dec.free(*seq);
  dec.free(*seq2);

  // Against the float64 recomputation from the encoder output.
  auto ref = test::RefWhisper::load(sm.path);
  ASSERT_TRUE(ref.ok()) << ref.message();
  auto enc_out = enc.encoder_output(*state);
  ASSERT_TRUE(enc_out.ok());
  const std::vector<double> rw = reference_cross_weights(*ref, *enc_out, tokens);
  const int H = hp.n_text_head;
  double max_err = 0, max_w = 0, other = 0;
  for (size_t i = 0; i < heads.size(); ++i)
    for (size_t k = 0; k < static_cast<size_t>(T) * A; ++k) {
      const double r = rw[(static_cast<size_t>(heads[i].layer) * H + heads[i].head) * T * A + k];
      const double o = rw[(static_cast<size_t>(heads[i].layer) * H + (1 - heads[i].head)) * T * A + k];
      max_err = std::max(max_err, std::fabs(weights[i * T * A + k] - r));
      other = std::max(other, std::fabs(o - r));
      max_w = std::max(max_w, r);
    }
  // Measured: f32 8e-9, bf16 9e-5 (bf16 queries and keys), largest weight ~0.01.
  const double tol = (f32 ? 1e-5 : 2e-2) * max_w;
  EXPECT_LE(max_err, tol) << "largest weight " << max_w;
  EXPECT_GT(other, 10 * tol) << "the heads are too alike for the check to mean anything";

  // Errors, and nothing left behind.
  const int V = hp.n_vocab;
  EXPECT_FALSE(dec.align(state, tokens, {{2, 0}}, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, tokens, {{-1, 0}}, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, tokens, {{0, 2}}, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, tokens, {{0, -1}}, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, tokens, {}, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, {}, heads, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, {sp.sot, -1}, heads, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, {sp.sot, V}, heads, weights, logits).ok());
  EXPECT_FALSE(dec.align(state, std::vector<int>(hp.n_text_ctx + 1, sp.sot), heads, weights, logits).ok());
  EXPECT_FALSE(dec.align(nullptr, tokens, heads, weights, logits).ok());
  EXPECT_TRUE(dec.align(state, std::vector<int>(hp.n_text_ctx, sp.sot), {{0, 0}}, weights, logits).ok());
  EXPECT_EQ(dec.size(), 0);

  // The whole path: add_word_timestamps over two segments of this window.
  std::vector<int> t1 = {sp.timestamp_begin}, t2 = {sp.timestamp_begin + 50};
  for (int t : model->tokenizer.encode(" The quick brown fox.")) t1.push_back(t);
  for (int t : model->tokenizer.encode(" Jumps over, it said.")) t2.push_back(t);
  t1.push_back(sp.timestamp_begin + 50);
  t2.push_back(sp.timestamp_begin + 150);
  std::vector<Segment> segs = {segment(31.0, 32.0, t1, 3100), segment(32.0, 34.0, t2, 3100)};
  double last = 30.0;
  st = add_word_timestamps(dec, state, model->tokenizer, {sp.sot, sp.language_begin, sp.transcribe}, "en",
                           alignment_heads(hp), 3000, segs, last);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(dec.size(), 0);
  for (const Segment& s : segs) {
    ASSERT_FALSE(s.words.empty());
    std::string text;
    for (const Word& w : s.words) {
      text += w.word;
      EXPECT_LE(w.start, w.end);
      EXPECT_GE(w.start, 29.5);  // the pause rule may start 1.4 s early
      EXPECT_LE(w.end, 61.0);
      EXPECT_GT(w.probability, 0.0);
    }
    EXPECT_EQ(text, model->tokenizer.decode(s.tokens));
  }
  EXPECT_EQ(last, segs.back().words.back().end);
}

INSTANTIATE_TEST_SUITE_P(ComputeTypes, Align, ::testing::Values(ComputeType::f32, ComputeType::bf16),
                         [](const auto& info) { return info.param == ComputeType::f32 ? "f32" : "bf16"; });

// The encoder stage hands a released state's cross K/V buffers to the next
// window, and a window's results do not depend on whether its buffers were
// fresh or recycled (their old contents are overwritten, not added to).
TEST(EncoderStage, RecyclesCrossBuffersWithoutChangingResults) {
  SmallModel& sm = SmallModel::get();
  auto model = sm.bf16;
  ASSERT_TRUE(model);
  const HParams& hp = model->hp;
  CpuEncoderStage enc(model, *sm.be_bf16, false);
  CpuDecoderStage dec(model, *sm.be_bf16);
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 0.5f);
  std::vector<float> mel_a(static_cast<size_t>(hp.n_mels) * kNFramesPerWindow), mel_b(mel_a.size());
  for (float& v : mel_a) v = g(rng);
  for (float& v : mel_b) v = g(rng);
  const SpecialTokens& sp = model->tokenizer.special();
  const std::vector<int> tokens = {sp.sot, sp.language_begin, sp.transcribe, sp.no_timestamps};
  auto logits_of = [&](const std::shared_ptr<const EncoderState>& state) {
    auto seq = dec.add_sequence(state);
    EXPECT_TRUE(seq.ok());
    std::vector<float> logits;
    EXPECT_TRUE(dec.step({{*seq, tokens, false}}, logits).ok());
    dec.free(*seq);
    return logits;
  };
  EXPECT_EQ(enc.spare_cross_buffers(), 0u);
  auto fresh_b = enc.encode(mel_b.data(), 1, mel_b.size(), kNFramesPerWindow);
  ASSERT_TRUE(fresh_b.ok()) << fresh_b.message();
  const std::vector<float> want_b = logits_of((*fresh_b)[0]);
  {
    auto a = enc.encode(mel_a.data(), 1, mel_a.size(), kNFramesPerWindow);
    ASSERT_TRUE(a.ok()) << a.message();
    const std::vector<float> la = logits_of((*a)[0]);
    EXPECT_NE(la, want_b);  // the two windows differ, so a stale buffer would show
  }  // window a's state is released here: its buffers go to the pool
  EXPECT_EQ(enc.spare_cross_buffers(), 1u);
  auto again_b = enc.encode(mel_b.data(), 1, mel_b.size(), kNFramesPerWindow);
  ASSERT_TRUE(again_b.ok()) << again_b.message();
  EXPECT_EQ(enc.spare_cross_buffers(), 0u);  // taken by the new window
  EXPECT_EQ(logits_of((*again_b)[0]), want_b);
  fresh_b->clear();
  again_b->clear();
  EXPECT_EQ(enc.spare_cross_buffers(), CrossKvPool::kMaxSpare);  // bounded
}

}  // namespace
}  // namespace ama
