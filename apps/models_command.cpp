// `amanuensis models list|pull|rm`: whisper.cpp's model names, downloaded
// into the cache folder on request (src/model/model_registry.h).
#include <filesystem>
#include <memory>
#include <vector>

#include "command.h"
#include "model/model_registry.h"

namespace ama::cli {

namespace {

namespace fs = std::filesystem;

std::string size_text(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

int run_list() {
  auto dir = models::cache_dir();
  if (!dir) return fail(dir.message());
  std::printf("cache: %s\n", dir->c_str());
  std::printf("%-22s %-8s %12s  %s\n", "name", "cached", "size", "note");
  for (const models::KnownModel& m : models::known_models()) {
    const std::string path = *dir + "/" + models::model_file_name(m.name);
    std::error_code ec;
    std::string cached = "no", size = "-";
    if (fs::is_regular_file(path, ec)) {
      cached = "yes";
      const auto n = fs::file_size(path, ec);
      if (!ec) size = size_text(n);
    } else if (fs::is_regular_file(path + ".part", ec)) {
      cached = "partial";
      const auto n = fs::file_size(path + ".part", ec);
      if (!ec) size = size_text(n);
    }
    std::printf("%-22s %-8s %12s%s\n", m.name.c_str(), cached.c_str(), size.c_str(), m.quantized ? "  quantized" : "");
  }
  return 0;
}

int run_pull(const std::vector<std::string>& names) {
  for (const std::string& name : names)
    if (!models::is_known_model(name)) return fail("unknown model name \"" + name + "\"; " + models::known_model_list());
  for (const std::string& name : names) {
    auto path = pull_model_with_notice(name);
    if (!path) return fail(path.message());
    std::printf("%s\n", path->c_str());
  }
  return 0;
}

int run_rm(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    auto freed = models::remove_model(name);
    if (!freed) return fail(freed.message());
    std::fprintf(stderr, "amanuensis: removed %s (%s)\n", name.c_str(), size_text(*freed).c_str());
  }
  return 0;
}

}  // namespace

Command add_models_command(CLI::App& root) {
  auto* sub = root.add_subcommand("models", "models by name: list, pull or rm whisper.cpp's models in the cache");
  sub->require_subcommand(1);
  auto* list = sub->add_subcommand("list", "every known name, whether it is in the cache, and its size");
  auto pull_names = std::make_shared<std::vector<std::string>>();
  auto* pull = sub->add_subcommand("pull", "download models into the cache (resumes a partial download)");
  pull->add_option("NAME", *pull_names, "model names (see `models list`)")->required();
  auto rm_names = std::make_shared<std::vector<std::string>>();
  auto* rm = sub->add_subcommand("rm", "delete models (and partial downloads) from the cache");
  rm->add_option("NAME", *rm_names, "model names")->required();
  return {sub, [=] {
            if (list->parsed()) return run_list();
            if (pull->parsed()) return run_pull(*pull_names);
            if (rm->parsed()) return run_rm(*rm_names);
            return fail("models: choose list, pull or rm");
          }};
}

}  // namespace ama::cli
