// Models by name: the names whisper.cpp's models/download-ggml-model.sh
// knows (tiny ... large-v3-turbo-q8_0), where each is downloaded from, and
// where it is kept on this machine.
//
// A name NAME is the file ggml-NAME.bin under a base URL, by default
// whisper.cpp's Hugging Face repository (small.en-tdrz, the tinydiarize
// model, lives in its own repository, as in the script);
// $AMANUENSIS_MODEL_URL replaces the base URL of every name (a mirror, or
// the tests' loopback server). Downloaded files live in the cache folder
// $XDG_CACHE_HOME/amanuensis (default ~/.cache/amanuensis) under their
// upstream file names, so a folder filled by whisper.cpp's script can be
// used as the cache as it is.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/download.h"

namespace ama::models {

struct KnownModel {
  std::string name;       // "base.en"
  bool quantized = false;  // q5_0, q5_1 or q8_0 weights
};

// Every name, in the script's order.
const std::vector<KnownModel>& known_models();
bool is_known_model(const std::string& name);
// "Known models: tiny, tiny.en, ..." for error messages.
std::string known_model_list();

// "ggml-NAME.bin".
std::string model_file_name(const std::string& name);
// The base URL for a name: $AMANUENSIS_MODEL_URL (a trailing '/' dropped)
// if set, else the upstream repository's.
std::string model_base_url(const std::string& name);
// model_base_url(name) + "/ggml-NAME.bin".
std::string model_url(const std::string& name);

// $XDG_CACHE_HOME/amanuensis, else $HOME/.cache/amanuensis. A relative
// XDG_CACHE_HOME is ignored, as the XDG spec says. Error when neither
// variable gives an absolute folder. Does not create it.
Result<std::string> cache_dir();
// cache_dir()/ggml-NAME.bin (whether or not it exists).
Result<std::string> cached_model_path(const std::string& name);

struct PullResult {
  std::string path;          // the model file in the cache
  bool already_cached = false;  // nothing was downloaded
  DownloadResult download;   // when something was
};

// Downloads NAME into the cache (created as needed) unless it is already
// there; see download.h for resume, checks and errors.
Result<PullResult> pull_model(const std::string& name, const DownloadOptions& options);

// Deletes NAME's file and any partial download from the cache; returns the
// number of bytes freed. Error when neither exists.
Result<uint64_t> remove_model(const std::string& name);

}  // namespace ama::models
