// The stage-level seam: what a backend implements to run Whisper.
//
// `Backend` (backend/backend.h) is an op-level seam over host float
// pointers; model code does host work between its ops (im2col, the token
// embedding gather, KV-cache writes), so a device behind it would copy
// activations in and out about ten times per layer. These two stages are the
// level above: a device backend implements them whole and keeps its state
// (encoder outputs, cross-attention K/V, self-attention KV caches) on the
// device. The transcription pipelines, the server and the decoding
// strategies are written against these interfaces only.
// docs/npu-backend.md sketches an AMD XDNA implementation.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/result.h"

namespace ama {

// One audio window after the encoder, including the cross-attention K/V of
// every decoder layer. Opaque: only the stage that made it can read it.
class EncoderState {
 public:
  virtual ~EncoderState() = default;
};

class EncoderStage {
 public:
  virtual ~EncoderStage() = default;
  // n_windows normalized log-mel windows, window w at mel + w * window_stride,
  // each [n_mels][ld] with 3000 frames (ld >= 3000). One state per window.
  virtual Result<std::vector<std::shared_ptr<const EncoderState>>> encode(const float* mel, int n_windows,
                                                                          size_t window_stride, int ld) = 0;
  // The encoder output [n_audio_ctx][n_audio_state] of a state, copied to
  // the host (for tests and the `logits --encoder-out` command).
  virtual Result<std::vector<float>> encoder_output(const EncoderState& state) const = 0;
};

class DecoderStage {
 public:
  using SeqId = int;
  virtual ~DecoderStage() = default;

  // A new empty sequence decoding against `encoder`. The stage owns the
  // sequence's self-attention KV cache.
  virtual Result<SeqId> add_sequence(std::shared_ptr<const EncoderState> encoder) = 0;
  // A copy of `parent`: same window, same tokens so far (beams, best-of).
  virtual Result<SeqId> fork(SeqId parent) = 0;
  // Frees a sequence; unknown ids are ignored.
  virtual void free(SeqId seq) = 0;
  // Tokens fed so far (the next token's position); -1 for an unknown id.
  virtual int n_past(SeqId seq) const = 0;
  // Sequences alive.
  virtual int size() const = 0;

  struct Input {
    SeqId seq;
    std::vector<int> tokens;  // appended at the sequence's position; a prompt may be several
    bool all_logits = false;  // logits of every fed token instead of the last one
  };
  // One step for a batch of distinct sequences. logits receives, per input in
  // order, [1 or tokens.size()][n_vocab] rows. A sequence's logits do not
  // depend on which other sequences share the step (bit for bit). On error
  // (unknown or repeated sequence, a bad token, context overflow) nothing changes.
  virtual Status step(const std::vector<Input>& batch, std::vector<float>& logits) = 0;

  // Word alignment (openai timing.py): feeds `tokens` from position 0 in a
  // fresh sequence over `encoder`, and returns the cross-attention weights
  // (softmax over the audio frames, before the value product) of each
  // requested head: weights [heads.size()][tokens.size()][n_audio_ctx], and
  // the logits of every token: [tokens.size()][n_vocab]. Leaves no sequence
  // behind. Errors on a bad head, token or length.
  struct AttentionHead {
    int layer, head;
  };
  virtual Status align(std::shared_ptr<const EncoderState> encoder, const std::vector<int>& tokens,
                       const std::vector<AttentionHead>& heads, std::vector<float>& weights,
                       std::vector<float>& logits) = 0;

  virtual int n_vocab() const = 0;
  virtual int n_text_ctx() const = 0;
};

}  // namespace ama
