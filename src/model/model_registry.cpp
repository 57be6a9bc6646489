// See model_registry.h.
#include "model/model_registry.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace ama::models {

namespace fs = std::filesystem;

namespace {

// whisper.cpp's Hugging Face repository, and the tinydiarize model's own.
constexpr const char* kWhisperCppRepo = "https://huggingface.co/ggerganov/whisper.cpp/resolve/main";
constexpr const char* kTinydiarizeRepo = "https://huggingface.co/akashmjn/tinydiarize-whisper.cpp/resolve/main";

bool is_quantized(const std::string& name) {
  return name.find("-q5_0") != std::string::npos || name.find("-q5_1") != std::string::npos ||
         name.find("-q8_0") != std::string::npos;
}

}  // namespace

const std::vector<KnownModel>& known_models() {
  // The list in whisper.cpp's models/download-ggml-model.sh (2025), in its order.
  static const std::vector<KnownModel> models = [] {
    std::vector<KnownModel> v;
    for (const char* n :
         {"tiny",           "tiny.en",        "tiny-q5_1",     "tiny.en-q5_1",   "tiny-q8_0",      "base",
          "base.en",        "base-q5_1",      "base.en-q5_1",  "base-q8_0",      "small",          "small.en",
          "small.en-tdrz",  "small-q5_1",     "small.en-q5_1", "small-q8_0",     "medium",         "medium.en",
          "medium-q5_0",    "medium.en-q5_0", "medium-q8_0",   "large-v1",       "large-v2",       "large-v2-q5_0",
          "large-v2-q8_0",  "large-v3",       "large-v3-q5_0", "large-v3-turbo", "large-v3-turbo-q5_0",
          "large-v3-turbo-q8_0"})
      v.push_back({n, is_quantized(n)});
    return v;
  }();
  return models;
}

bool is_known_model(const std::string& name) {
  for (const KnownModel& m : known_models())
    if (m.name == name) return true;
  return false;
}

std::string known_model_list() {
  std::string s = "known models:";
  for (const KnownModel& m : known_models()) s += " " + m.name;
  return s;
}

std::string model_file_name(const std::string& name) { return "ggml-" + name + ".bin"; }

std::string model_base_url(const std::string& name) {
  if (const char* env = std::getenv("AMANUENSIS_MODEL_URL"); env && *env) {
    std::string base = env;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base;
  }
  return name.find("tdrz") != std::string::npos ? kTinydiarizeRepo : kWhisperCppRepo;
}

std::string model_url(const std::string& name) { return model_base_url(name) + "/" + model_file_name(name); }

Result<std::string> cache_dir() {
  // XDG Base Directory spec: a relative $XDG_CACHE_HOME is invalid and is ignored.
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && xdg[0] == '/') return std::string(xdg) + "/amanuensis";
  if (const char* home = std::getenv("HOME"); home && home[0] == '/')
    return std::string(home) + "/.cache/amanuensis";
  return make_error("no cache folder: set XDG_CACHE_HOME or HOME to an absolute path");
}

Result<std::string> cached_model_path(const std::string& name) {
  auto dir = cache_dir();
  if (!dir) return dir.error();
  return *dir + "/" + model_file_name(name);
}

Result<PullResult> pull_model(const std::string& name, const DownloadOptions& options) {
  if (!is_known_model(name)) return make_error("unknown model name \"" + name + "\"; " + known_model_list());
  auto path = cached_model_path(name);
  if (!path) return path.error();
  PullResult r;
  r.path = *path;
  std::error_code ec;
  if (fs::is_regular_file(r.path, ec)) {
    r.already_cached = true;
    return r;
  }
  const std::string dir = fs::path(r.path).parent_path().string();
  fs::create_directories(dir, ec);
  if (ec) return make_error("cannot create the cache folder " + dir + ": " + ec.message());
  auto d = download_file(model_url(name), r.path, options);
  if (!d) return d.error();
  r.download = *d;
  return r;
}

Result<uint64_t> remove_model(const std::string& name) {
  if (!is_known_model(name)) return make_error("unknown model name \"" + name + "\"; " + known_model_list());
  auto path = cached_model_path(name);
  if (!path) return path.error();
  uint64_t freed = 0;
  bool found = false;
  for (const std::string& p : {*path, *path + ".part"}) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) continue;
    found = true;
    const auto size = fs::file_size(p, ec);
    if (!ec) freed += size;
    if (!fs::remove(p, ec) || ec)
      return make_error("cannot remove " + p + (ec ? ": " + ec.message() : std::string()));
  }
  if (!found) return make_error(name + " is not in the cache (" + *path + ")");
  return freed;
}

}  // namespace ama::models
