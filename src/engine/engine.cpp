#include "engine/engine.h"

#include "backend/cpu/cpu_backend.h"
#include "engine/cpu_stages.h"

namespace ama {

Result<std::unique_ptr<Engine>> Engine::load(const std::string& model_path, const EngineOptions& o) {
  auto ct = parse_compute_type(o.compute);
  if (!ct) return ct.error();
  if (o.threads < 0 || o.threads > 256)
    return make_error("--threads " + std::to_string(o.threads) + " is out of range [0, 256]");
  CpuBackendOptions bo;
  bo.n_threads = o.threads;
  bo.compute = *ct;
  auto backend = make_cpu_backend(bo);
  if (!backend) return backend.error();
  auto model = load_model(model_path, **backend);
  if (!model) return model.error();
  return std::make_unique<Engine>(std::move(model.value()), std::move(backend.value()));
}

Engine::Engine(std::shared_ptr<const WhisperModel> model, std::unique_ptr<Backend> backend)
    : model_(std::move(model)), backend_(std::move(backend)) {}

std::unique_ptr<EncoderStage> Engine::new_encoder_stage(bool keep_output) const {
  return std::make_unique<CpuEncoderStage>(model_, *backend_, keep_output);
}

std::unique_ptr<DecoderStage> Engine::new_decoder_stage() const {
  return std::make_unique<CpuDecoderStage>(model_, *backend_);
}

}  // namespace ama
