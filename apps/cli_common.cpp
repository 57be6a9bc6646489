// Helpers shared by the subcommands (see command.h).
#include <cstdlib>
#include <fstream>

#include "command.h"

namespace ama::cli {

std::string shared_dir() { return AMA_DEFAULT_SHARED_DIR; }

std::string default_vad_model() {
  const char* env = std::getenv("AMANUENSIS_VAD_MODEL");
  return env && *env ? env : shared_dir() + "/models/silero_vad_16k.safetensors";
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
