// amanuensis: the command-line interface. Each subcommand lives in its own
// file (apps/*_command.cpp) and registers itself through command.h.
#include <vector>

#include "command.h"

int main(int argc, char** argv) {
  using namespace ama::cli;
  CLI::App app{"amanuensis: Whisper speech-to-text on our own CPU kernels"};
  app.require_subcommand(1);
  const std::vector<Command> commands = {
      add_transcribe_command(app), add_vad_command(app),     add_bench_command(app),
      add_kernels_command(app),    add_mel_command(app),     add_logits_command(app),
      add_make_test_model_command(app), add_info_command(app), add_serve_command(app),
      add_models_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }
  for (const Command& c : commands)
    if (c.app->parsed()) return c.run();
  return 0;
}
