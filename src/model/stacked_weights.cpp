// stack_projections (whisper_model.h): the fused Q/K/V of each encoder layer
// and the cross-attention K/V of all decoder layers.
#include <algorithm>

#include "model/whisper_model.h"

namespace ama {

namespace {

// Stacks parts into one LinearWeights whose bias is the parts' biases end to
// end (zeros for a part without one). On success the parts' matrices are
// released; on failure nothing changes.
bool stack(const Backend& backend, const std::vector<LinearWeights*>& parts, LinearWeights& out) {
  std::vector<const PackedMatrix*> mats;
  bool any_bias = false;
  for (const LinearWeights* p : parts) {
    if (!p->w) return false;
    mats.push_back(p->w.get());
    any_bias = any_bias || !p->b.empty();
  }
  auto stacked = backend.stack_packed(mats);
  if (!stacked) return false;
  out.w = std::move(stacked.value());
  out.b.clear();
  if (any_bias)
    for (LinearWeights* p : parts) {
      if (p->b.empty())
        out.b.insert(out.b.end(), p->w->n_out, 0.0f);
      else
        out.b.insert(out.b.end(), p->b.begin(), p->b.end());
    }
  for (LinearWeights* p : parts) {
    p->w.reset();
    p->b.clear();
  }
  return true;
}

}  // namespace

void stack_projections(const Backend& backend, WhisperModel& model) {
  for (EncoderLayerWeights& e : model.encoder)
    stack(backend, {&e.attn.query, &e.attn.key, &e.attn.value}, e.qkv);
  std::vector<LinearWeights*> keys, values;
  for (DecoderLayerWeights& d : model.decoder) {
    keys.push_back(&d.cross.key);
    values.push_back(&d.cross.value);
  }
  // Keys and values independently: at the int8 compute type they are
  // packed at different types (whisper_model.cpp, layer_compute_type).
  stack(backend, keys, model.cross_k);
  stack(backend, values, model.cross_v);
}

}  // namespace ama
