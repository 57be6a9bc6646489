#include "engine/cpu_stages.h"

#include <algorithm>
#include <set>

namespace ama {

namespace {

struct CpuEncoderState final : EncoderState {
  const WhisperModel* model = nullptr;  // the model whose stage made it
  std::vector<float> out;               // kept only when asked for
  CrossKv cross;
  std::shared_ptr<CrossKvPool> pool;    // where cross goes back to
  ~CpuEncoderState() override {
    if (!pool) return;
    std::lock_guard<std::mutex> lock(pool->mu);
    if (pool->spare.size() < CrossKvPool::kMaxSpare) pool->spare.push_back(std::move(cross));
  }
};

const CpuEncoderState* as_cpu_state(const EncoderState* s, const WhisperModel* model) {
  const auto* c = dynamic_cast<const CpuEncoderState*>(s);
  return c && c->model == model ? c : nullptr;
}

}  // namespace

CpuEncoderStage::CpuEncoderStage(std::shared_ptr<const WhisperModel> model, Backend& backend, bool keep_output)
    : model_(std::move(model)),
      encoder_(*model_, backend),
      cross_(*model_, backend),
      keep_output_(keep_output),
      cross_pool_(std::make_shared<CrossKvPool>()) {}

size_t CpuEncoderStage::spare_cross_buffers() const {
  std::lock_guard<std::mutex> lock(cross_pool_->mu);
  return cross_pool_->spare.size();
}

Result<std::vector<std::shared_ptr<const EncoderState>>> CpuEncoderStage::encode(const float* mel, int n_windows,
                                                                                 size_t window_stride, int ld) {
  const int n_mels = model_->hp.n_mels;
  if (!mel || n_windows < 0) return make_error("encode: no mel windows given");
  if (ld < kNFramesPerWindow) return make_error("encode: a window needs 3000 frames, got a row stride of " + std::to_string(ld));
  if (n_windows > 1 && window_stride < static_cast<size_t>(n_mels) * ld)
    return make_error("encode: windows overlap (stride " + std::to_string(window_stride) + ")");
  std::vector<std::shared_ptr<const EncoderState>> states;
  // Windows run one after another: at 1500 rows a window's GEMMs already
  // fill the machine, so stacking windows would only grow the scratch.
  for (int w = 0; w < n_windows; ++w) {
    auto st = std::make_shared<CpuEncoderState>();
    st->model = model_.get();
    st->pool = cross_pool_;
    {
      std::lock_guard<std::mutex> lock(cross_pool_->mu);
      if (!cross_pool_->spare.empty()) {
        st->cross = std::move(cross_pool_->spare.back());
        cross_pool_->spare.pop_back();
      }
    }
    encoder_.run(mel + w * window_stride, ld, out_);
    cross_.compute_cross(out_.data(), st->cross);
    if (keep_output_) st->out = out_;
    states.push_back(std::move(st));
  }
  return states;
}

Result<std::vector<float>> CpuEncoderStage::encoder_output(const EncoderState& state) const {
  const CpuEncoderState* s = as_cpu_state(&state, model_.get());
  if (!s) return make_error("encoder_output: the state was not made by this model's CPU encoder stage");
  if (s->out.empty()) return make_error("encoder_output: the stage was made without keep_output");
  return s->out;
}

CpuDecoderStage::CpuDecoderStage(std::shared_ptr<const WhisperModel> model, Backend& backend)
    : model_(std::move(model)), decoder_(*model_, backend) {}

Result<DecoderStage::SeqId> CpuDecoderStage::add_sequence(std::shared_ptr<const EncoderState> encoder) {
  if (!as_cpu_state(encoder.get(), model_.get()))
    return make_error("add_sequence: the encoder state was not made by this model's CPU encoder stage");
  Sequence s;
  s.encoder = std::move(encoder);
  if (!spare_.empty()) {
    s.cache = std::move(spare_.back());
    spare_.pop_back();
    s.cache.reset();
  } else {
    s.cache = decoder_.new_cache();
  }
  const SeqId id = next_id_++;
  seqs_.emplace(id, std::move(s));
  return id;
}

Result<DecoderStage::SeqId> CpuDecoderStage::fork(SeqId parent) {
  auto it = seqs_.find(parent);
  if (it == seqs_.end()) return make_error("fork: unknown sequence " + std::to_string(parent));
  auto child = add_sequence(it->second.encoder);
  if (!child) return child;
  decoder_.copy_cache(seqs_.at(parent).cache, seqs_.at(*child).cache);
  return child;
}

void CpuDecoderStage::free(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  // Keep a few caches for the next sequences: a continuous-batching slot
  // frees and adds one per window.
  if (spare_.size() < 16) spare_.push_back(std::move(it->second.cache));
  seqs_.erase(it);
}

int CpuDecoderStage::n_past(SeqId seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? -1 : it->second.cache.n_past;
}

Status CpuDecoderStage::step(const std::vector<Input>& batch, std::vector<float>& logits) {
  const HParams& hp = model_->hp;
  if (batch.empty()) return make_error("step: empty batch");
  groups_.clear();
  std::set<SeqId> seen;
  for (const Input& in : batch) {
    auto it = seqs_.find(in.seq);
    if (it == seqs_.end()) return make_error("step: unknown sequence " + std::to_string(in.seq));
    if (!seen.insert(in.seq).second) return make_error("step: sequence " + std::to_string(in.seq) + " appears twice");
    if (in.tokens.empty()) return make_error("step: sequence " + std::to_string(in.seq) + " has no tokens");
    for (int t : in.tokens)
      if (t < 0 || t >= hp.n_vocab)
        return make_error("step: token " + std::to_string(t) + " is outside the vocabulary [0, " +
                          std::to_string(hp.n_vocab) + ")");
    if (it->second.cache.n_past + static_cast<int>(in.tokens.size()) > hp.n_text_ctx)
      return make_error("step: sequence " + std::to_string(in.seq) + " would exceed the text context of " +
                        std::to_string(hp.n_text_ctx) + " tokens");
    const auto* st = static_cast<const CpuEncoderState*>(it->second.encoder.get());  // checked in add_sequence
    groups_.push_back(Decoder::Group{&it->second.cache, &st->cross, in.tokens.data(),
                                     static_cast<int>(in.tokens.size()), in.all_logits});
  }
  // Consecutive inputs over the same window (beams) share one cross-attention call.
  if (!decoder_.step(groups_, logits)) return make_error("step: the decoder refused the batch");
  return Status::Ok();
}

Status CpuDecoderStage::align(std::shared_ptr<const EncoderState> encoder, const std::vector<int>& tokens,
                              const std::vector<AttentionHead>& heads, std::vector<float>& weights,
                              std::vector<float>& logits) {
  const HParams& hp = model_->hp;
  const auto* st = as_cpu_state(encoder.get(), model_.get());
  if (!st) return make_error("align: the encoder state was not made by this model's CPU encoder stage");
  if (tokens.empty()) return make_error("align: no tokens");
  if (static_cast<int>(tokens.size()) > hp.n_text_ctx)
    return make_error("align: " + std::to_string(tokens.size()) + " tokens exceed the text context of " +
                      std::to_string(hp.n_text_ctx));
  for (int t : tokens)
    if (t < 0 || t >= hp.n_vocab)
      return make_error("align: token " + std::to_string(t) + " is outside the vocabulary [0, " +
                        std::to_string(hp.n_vocab) + ")");
  if (heads.empty()) return make_error("align: no attention heads requested");
  Decoder::AttentionCapture capture;
  for (const AttentionHead& h : heads) {
    if (h.layer < 0 || h.layer >= hp.n_text_layer || h.head < 0 || h.head >= hp.n_text_head)
      return make_error("align: attention head (layer " + std::to_string(h.layer) + ", head " +
                        std::to_string(h.head) + ") is outside the decoder's " + std::to_string(hp.n_text_layer) +
                        " layers x " + std::to_string(hp.n_text_head) + " heads");
    capture.heads.emplace_back(h.layer, h.head);
  }
  // A temporary sequence over a spare cache, returned to the spares after.
  KvCache cache;
  if (!spare_.empty()) {
    cache = std::move(spare_.back());
    spare_.pop_back();
  } else {
    cache = decoder_.new_cache();
  }
  cache.reset();
  capture.out = &weights;
  const std::vector<Decoder::Group> group{
      Decoder::Group{&cache, &st->cross, tokens.data(), static_cast<int>(tokens.size()), true}};
  const bool ok = decoder_.step(group, logits, &capture);
  cache.reset();
  if (spare_.size() < 16) spare_.push_back(std::move(cache));
  if (!ok) return make_error("align: the decoder refused the tokens");
  return Status::Ok();
}

}  // namespace ama
