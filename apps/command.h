// One file per subcommand: each apps/*_command.cpp defines an add_*_command
// function that registers its options on the root CLI::App and returns the
// function to run when that subcommand is chosen. main.cpp only lists them.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>

#include "core/result.h"

namespace ama::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // exit code
};

// Prints "amanuensis: error: MESSAGE" on stderr; returns the exit code 1.
inline int fail(const std::string& message) {
  std::fprintf(stderr, "amanuensis: error: %s\n", message.c_str());
  return 1;
}

// The folder with the shared test data (vocabularies for make-test-model, VAD weights).
std::string shared_dir();
// The Silero VAD weights: $AMANUENSIS_VAD_MODEL, else the shared folder's.
std::string default_vad_model();

// The model a -m argument names: an existing file or folder as it is; else a
// known model name (`models list`) as its file in the cache, downloaded
// first if it is not there yet (with a notice and progress on stderr); else
// an error saying how to get models.
Result<std::string> resolve_model(const std::string& arg);
// Downloads a known model into the cache unless it is there, with a notice
// and progress on stderr; returns its path.
Result<std::string> pull_model_with_notice(const std::string& name);

// Writes raw little-endian float32 / a text file.
Status write_f32(const std::string& path, const float* data, size_t n);
Status write_text(const std::string& path, const std::string& text);

Command add_transcribe_command(CLI::App& root);
Command add_mel_command(CLI::App& root);
Command add_logits_command(CLI::App& root);
Command add_make_test_model_command(CLI::App& root);
Command add_info_command(CLI::App& root);
Command add_kernels_command(CLI::App& root);
Command add_bench_command(CLI::App& root);
Command add_vad_command(CLI::App& root);
Command add_serve_command(CLI::App& root);
Command add_models_command(CLI::App& root);

}  // namespace ama::cli
