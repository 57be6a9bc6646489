// The engine: a loaded model, the backend that runs it, and factories for
// its stages. One Engine serves any number of streams; each stream makes its
// own stages (they hold per-stream scratch and, for the decoder, the KV
// caches). Streams that share the engine take turns on its backend.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/result.h"
#include "engine/stages.h"
#include "model/whisper_model.h"

namespace ama {

struct EngineOptions {
  int threads = 0;                // 0: all cores
  std::string compute = "auto";   // auto|f32|bf16|int8
};

class Engine {
 public:
  // Loads a model file for the CPU backend chosen at run time.
  static Result<std::unique_ptr<Engine>> load(const std::string& model_path, const EngineOptions& options);
  // Wraps a model already packed for `backend`.
  Engine(std::shared_ptr<const WhisperModel> model, std::unique_ptr<Backend> backend);

  const WhisperModel& model() const { return *model_; }
  const std::shared_ptr<const WhisperModel>& model_ptr() const { return model_; }
  Backend& backend() const { return *backend_; }

  // keep_output: also keep each window's encoder output for encoder_output().
  std::unique_ptr<EncoderStage> new_encoder_stage(bool keep_output = false) const;
  std::unique_ptr<DecoderStage> new_decoder_stage() const;

 private:
  std::shared_ptr<const WhisperModel> model_;
  std::unique_ptr<Backend> backend_;
};

}  // namespace ama
