// A DecoderStage whose logits come from a script: a function of the tokens
// a sequence has been fed so far. Tests of the decoding strategies and
// guards craft the model's answers with it, and read back what was fed.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "engine/stages.h"

namespace ama::test {

class ScriptedEncoderState final : public EncoderState {
 public:
  explicit ScriptedEncoderState(int window) : window(window) {}
  int window;  // the n-th window encoded
};

// Encodes nothing: every window gets a state numbered by its order.
class ScriptedEncoderStage final : public EncoderStage {
 public:
  Result<std::vector<std::shared_ptr<const EncoderState>>> encode(const float*, int n_windows, size_t, int) override {
    std::vector<std::shared_ptr<const EncoderState>> out;
    for (int i = 0; i < n_windows; ++i) out.push_back(std::make_shared<ScriptedEncoderState>(windows++));
    return out;
  }
  Result<std::vector<float>> encoder_output(const EncoderState&) const override {
    return make_error("a scripted encoder has no output");
  }
  int windows = 0;
};

class ScriptedDecoderStage final : public DecoderStage {
 public:
  // Fills row [n_vocab] given the tokens fed so far (the last one included)
  // and the window the sequence decodes.
  using Script = std::function<void(const std::vector<int>& history, int window, float* row)>;

  ScriptedDecoderStage(int n_vocab, int n_text_ctx, Script script)
      : n_vocab_(n_vocab), n_ctx_(n_text_ctx), script_(std::move(script)) {}

  Result<SeqId> add_sequence(std::shared_ptr<const EncoderState> encoder) override {
    auto* s = dynamic_cast<const ScriptedEncoderState*>(encoder.get());
    seqs_[next_] = Seq{{}, s ? s->window : 0};
    ++added;
    return next_++;
  }
  Result<SeqId> fork(SeqId parent) override {
    auto it = seqs_.find(parent);
    if (it == seqs_.end()) return make_error("unknown sequence");
    seqs_[next_] = it->second;
    ++forks;
    return next_++;
  }
  void free(SeqId seq) override { seqs_.erase(seq); }
  int n_past(SeqId seq) const override {
    auto it = seqs_.find(seq);
    return it == seqs_.end() ? -1 : static_cast<int>(it->second.history.size());
  }
  int size() const override { return static_cast<int>(seqs_.size()); }
  Status step(const std::vector<Input>& batch, std::vector<float>& logits) override {
    size_t rows = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      auto it = seqs_.find(batch[i].seq);
      if (it == seqs_.end()) return make_error("unknown sequence");
      for (size_t j = 0; j < i; ++j)
        if (batch[j].seq == batch[i].seq) return make_error("a sequence twice in one step");
      if (batch[i].tokens.empty()) return make_error("no tokens");
      if (it->second.history.size() + batch[i].tokens.size() > static_cast<size_t>(n_ctx_))
        return make_error("context overflow");
      for (int t : batch[i].tokens)
        if (t < 0 || t >= n_vocab_) return make_error("bad token");
      rows += batch[i].all_logits ? batch[i].tokens.size() : 1;
    }
    logits.assign(rows * n_vocab_, 0.0f);
    size_t r = 0;
    for (const Input& in : batch) {
      Seq& s = seqs_[in.seq];
      if (s.history.empty()) prompts.push_back(in.tokens);  // the first feed of a sequence
      feeds.push_back(in.tokens);
      for (size_t k = 0; k < in.tokens.size(); ++k) {
        s.history.push_back(in.tokens[k]);
        if (in.all_logits || k + 1 == in.tokens.size()) script_(s.history, s.window, logits.data() + n_vocab_ * r++);
      }
    }
    ++steps;
    max_batch = std::max(max_batch, batch.size());
    return Status::Ok();
  }
  Status align(std::shared_ptr<const EncoderState>, const std::vector<int>&, const std::vector<AttentionHead>&,
               std::vector<float>&, std::vector<float>&) override {
    return make_error("a scripted decoder has no attention");
  }
  int n_vocab() const override { return n_vocab_; }
  int n_text_ctx() const override { return n_ctx_; }

  // What happened: the first tokens fed to each new sequence, steps, forks.
  std::vector<std::vector<int>> prompts, feeds;
  int steps = 0, forks = 0, added = 0;
  size_t max_batch = 0;

 private:
  struct Seq {
    std::vector<int> history;
    int window;
  };
  int n_vocab_, n_ctx_;
  Script script_;
  std::map<SeqId, Seq> seqs_;
  SeqId next_ = 1;
};

}  // namespace ama::test
