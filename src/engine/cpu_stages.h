// The CPU implementation of the stages: the model's Encoder and Decoder
// (src/model) over a Backend's ops.
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>

#include "backend/backend.h"
#include "engine/stages.h"
#include "model/decoder.h"
#include "model/encoder.h"
#include "model/whisper_model.h"

namespace ama {

// Cross-attention K/V buffers of released encoder states, reused by the
// next windows: writing a window's K/V (18 MB for base) into fresh memory
// cost 56.5 ms against 46.8 ms into reused buffers (base, one thread, AMD
// EPYC Zen 4), the zero-fill and page faults of a new allocation. Shared
// with the states, which may outlive the stage.
struct CrossKvPool {
  static constexpr size_t kMaxSpare = 2;  // bounds the memory kept beyond the live states
  std::mutex mu;
  std::vector<CrossKv> spare;
};

class CpuEncoderStage final : public EncoderStage {
 public:
  CpuEncoderStage(std::shared_ptr<const WhisperModel> model, Backend& backend, bool keep_output);
  Result<std::vector<std::shared_ptr<const EncoderState>>> encode(const float* mel, int n_windows,
                                                                  size_t window_stride, int ld) override;
  Result<std::vector<float>> encoder_output(const EncoderState& state) const override;
  // Buffers of released states waiting for the next window (for tests).
  size_t spare_cross_buffers() const;

 private:
  std::shared_ptr<const WhisperModel> model_;
  Encoder encoder_;
  Decoder cross_;  // computes the cross-attention K/V from the encoder output
  bool keep_output_;
  std::vector<float> out_;
  std::shared_ptr<CrossKvPool> cross_pool_;
};

class CpuDecoderStage final : public DecoderStage {
 public:
  CpuDecoderStage(std::shared_ptr<const WhisperModel> model, Backend& backend);
  Result<SeqId> add_sequence(std::shared_ptr<const EncoderState> encoder) override;
  Result<SeqId> fork(SeqId parent) override;
  void free(SeqId seq) override;
  int n_past(SeqId seq) const override;
  int size() const override { return static_cast<int>(seqs_.size()); }
  Status step(const std::vector<Input>& batch, std::vector<float>& logits) override;
  Status align(std::shared_ptr<const EncoderState> encoder, const std::vector<int>& tokens,
               const std::vector<AttentionHead>& heads, std::vector<float>& weights,
               std::vector<float>& logits) override;
  int n_vocab() const override { return model_->hp.n_vocab; }
  int n_text_ctx() const override { return model_->hp.n_text_ctx; }

 private:
  struct Sequence {
    std::shared_ptr<const EncoderState> encoder;
    KvCache cache;
  };
  std::shared_ptr<const WhisperModel> model_;
  Decoder decoder_;
  std::unordered_map<SeqId, Sequence> seqs_;
  std::vector<KvCache> spare_;  // freed caches, reused (5.5 MB each for base)
  SeqId next_id_ = 1;
  std::vector<Decoder::Group> groups_;
};

}  // namespace ama
