// Whisper's text decoder (openai/whisper model.py TextDecoder): token and
// learned positional embeddings, causal self-attention over a KV cache,
// cross-attention over K/V computed once per audio window, and logits
// against the token embedding.
#pragma once

#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/huge_pages.h"
#include "core/zero_pages.h"
#include "model/whisper_model.h"

namespace ama {

// One sequence's self-attention cache: [n_layer][n_text_ctx][n_text_state],
// in f32 for the f32 reference path and in bf16 otherwise (half the memory
// traffic per decoded token). On zero pages (core/zero_pages.h): only the
// positions written take memory, ~half of the 5.5 MB per bf16 cache for base
// (best-of-5 sampling holds 5 caches).
struct KvCache {
  std::vector<float, ZeroPageAllocator<float>> k, v;
  std::vector<uint16_t, ZeroPageAllocator<uint16_t>> k16, v16;
  int n_past = 0;
  void reset() { n_past = 0; }
};

// Cross-attention K/V of one audio window: [n_layer][n_audio_ctx][n_text_state],
// f32 or bf16 like KvCache. Base reads 6 layers x 1500 x 512 x 2 of these per
// token: 37 MB in f32, 18 MB in bf16.
// In huge pages (core/huge_pages.h): fresh 4 KiB pages made a first
// window's 18 MB of bf16 K/V 47 ms of page faults on our VMs.
struct CrossKv {
  HugeVector<float> k, v;
  HugeVector<uint16_t> k16, v16;
};

class Decoder {
 public:
  Decoder(const WhisperModel& model, Backend& backend)
      : m_(model), be_(backend), bf16_kv_(backend.compute_type() != ComputeType::f32) {}

  KvCache new_cache() const;

  // Computes cross-attention K/V from the encoder output [n_audio_ctx][n_state].
  void compute_cross(const float* encoder_out, CrossKv& cross);

  // Feeds n tokens at positions cache.n_past.., appending to the cache.
  // logits receives [n][n_vocab] when all_logits, else only the last row.
  // Returns false (and changes nothing) if the tokens would overflow n_text_ctx.
  bool forward(KvCache& cache, const CrossKv& cross, const int* tokens, int n, bool all_logits,
               std::vector<float>& logits);

  // One token for each of several sequences over the same audio window
  // (whisper.cpp's batch-5 bench shape). logits receives [caches.size()][n_vocab].
  bool forward_batch(const std::vector<KvCache*>& caches, const CrossKv& cross, const int* tokens,
                     std::vector<float>& logits);

  // The general step: several sequences, each with its own cache, its own
  // audio window and one or more new tokens. The GEMMs run over all rows at
  // once; attention runs per sequence. Every row's arithmetic is independent
  // of the other rows, so a sequence's logits are bit-identical whatever it
  // is batched with. logits receives, for each group in order, all of its
  // rows when all_logits, else its last row: [rows][n_vocab].
  struct Group {
    KvCache* cache;
    const CrossKv* cross;
    const int* tokens;
    int n;
    bool all_logits = false;
  };
  bool step(const std::vector<Group>& groups, std::vector<float>& logits);

  // Optional capture of cross-attention weights (for word alignment): for a
  // step of exactly one group, the weights softmax(q k^T / sqrt(d_head)) over
  // the n_audio_ctx frames of each requested (layer, head), computed in plain
  // scalar f32 from the layer's cross-attention queries and the window's
  // cross K (f32 or bf16). out receives [heads.size()][n][n_audio_ctx].
  // Heads must be in range (layer < n_text_layer, head < n_text_head); the
  // step returns false otherwise. Does not change the step's logits.
  struct AttentionCapture {
    std::vector<std::pair<int, int>> heads;  // (layer, head)
    std::vector<float>* out = nullptr;
  };
  bool step(const std::vector<Group>& groups, std::vector<float>& logits, AttentionCapture* capture);

  // Copies the first n_past positions of `from` into `to` (a fork for beams).
  void copy_cache(const KvCache& from, KvCache& to) const;

 private:
  const WhisperModel& m_;
  Backend& be_;
  bool bf16_kv_;
  std::vector<float> x_, h_, q_, k_, v_, att_, mlp_;
  std::vector<int> first_row_;

  void capture_layer(int layer, const CrossKv& cross, int rows, AttentionCapture& capture);
};

}  // namespace ama
