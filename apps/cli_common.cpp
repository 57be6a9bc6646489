// Helpers shared by the subcommands (see command.h).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "command.h"
#include "model/model_registry.h"

namespace ama::cli {

std::string shared_dir() { return AMA_DEFAULT_SHARED_DIR; }

std::string default_vad_model() {
  const char* env = std::getenv("AMANUENSIS_VAD_MODEL");
  return env && *env ? env : shared_dir() + "/models/silero_vad_16k.safetensors";
}

Result<std::string> pull_model_with_notice(const std::string& name) {
  auto path = models::cached_model_path(name);
  if (!path) return path.error();
  std::error_code ec;
  if (std::filesystem::is_regular_file(*path, ec)) return *path;
  auto options = models::download_options_from_env();
  if (!options) return options.error();
  const std::string url = models::model_url(name);
  std::string resume;
  if (std::filesystem::is_regular_file(*path + ".part", ec)) {
    const auto n = std::filesystem::file_size(*path + ".part", ec);
    if (!ec && n > 0) resume = " (resuming after " + std::to_string(n) + " bytes)";
  }
  std::fprintf(stderr, "amanuensis: %s is not in the cache; downloading it from %s to %s%s\n", name.c_str(),
               url.c_str(), path->c_str(), resume.c_str());
  auto progress = models::DownloadProgress::for_stderr("amanuensis: " + name);
  options->on_progress = progress.callback();
  auto pulled = models::pull_model(name, *options);
  progress.finish();
  if (!pulled) return pulled.error();
  const models::DownloadResult& d = pulled->download;
  if (d.verified)
    std::fprintf(stderr, "amanuensis: %s: %llu bytes, SHA-256 %s verified\n", name.c_str(),
                 static_cast<unsigned long long>(d.bytes), d.sha256.c_str());
  else
    // What users of whisper.cpp's download script get, said out loud.
    std::fprintf(stderr,
                 "amanuensis: %s: %llu bytes; the server reported no SHA-256, so the file is kept unchecked "
                 "(its SHA-256 is %s)\n",
                 name.c_str(), static_cast<unsigned long long>(d.bytes), d.sha256.c_str());
  return pulled->path;
}

Result<std::string> resolve_model(const std::string& arg) {
  std::error_code ec;
  if (std::filesystem::exists(arg, ec)) return arg;
  if (models::is_known_model(arg)) return pull_model_with_notice(arg);
  return make_error(arg + ": no such file, and not a model name. Pass a ggml model file, or a name that "
                    "`amanuensis models list` shows (e.g. -m base.en: downloaded into the cache on first use; "
                    "`amanuensis models pull NAME` downloads ahead)");
}

Status write_f32(const std::string& path, const float* data, size_t n) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return make_error(path + ": cannot create file");
  const bool ok = std::fwrite(data, sizeof(float), n, f) == n;
  if (std::fclose(f) != 0 || !ok) return make_error(path + ": write failed");
  return Status::Ok();
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return make_error(path + ": cannot create file");
  f << text;
  f.close();
  if (!f) return make_error(path + ": write failed");
  return Status::Ok();
}

}  // namespace ama::cli
