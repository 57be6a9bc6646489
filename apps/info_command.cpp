// `amanuensis info`: CPU features, the ISA chosen and why.
#include "backend/cpu/cpu_features.h"
#include "command.h"

namespace ama::cli {

Command add_info_command(CLI::App& root) {
  auto* sub = root.add_subcommand("info", "print CPU features and the chosen ISA");
  return {sub, [] {
            std::printf("%s", describe_cpu().c_str());
            return 0;
          }};
}

}  // namespace ama::cli
