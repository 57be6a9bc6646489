// `amanuensis bench`: whisper.cpp-style model timings (see bench_command.cpp).
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/result.h"
#include "model/whisper_model.h"

namespace ama {

struct BenchOptions {
  int encode_runs = 3;
  bool json = false;
};

// Runs the workload and returns the report (one JSON object with --json).
Result<std::string> run_model_bench(std::shared_ptr<const WhisperModel> model, Backend& backend,
                                    const BenchOptions& options);

}  // namespace ama
