// `amanuensis serve`: the OpenAI-compatible transcription server
// (src/server/server.h). POST /v1/audio/transcriptions and /translations,
// GET /v1/models, /health, /metrics and the web page at /.
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "command.h"
#include "server/server.h"

namespace ama::cli {

namespace {

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

int run_serve(server::ServerOptions o) {
  if (o.api_key.empty())
    if (const char* env = std::getenv("AMANUENSIS_API_KEY"); env && *env) o.api_key = env;
  if (o.vad_model.empty()) o.vad_model = default_vad_model();
  auto model = resolve_model(o.model_path);  // a file, or a model name (pulled on first use)
  if (!model) return fail(model.message());
  o.model_path = *model;
  // The model loads after the server listens (/health says "loading" until
  // then); a missing file is refused before that.
  for (const std::string* path : {&o.model_path, &o.vad_model}) {
    std::error_code ec;
    // The model may also be a Hugging Face checkpoint directory (load_model).
    const bool dir_ok = path == &o.model_path && std::filesystem::is_directory(*path, ec);
    if (!dir_ok && !std::filesystem::is_regular_file(*path, ec)) return fail("cannot read " + *path + ": no such file");
  }
  if (o.port < 0 || o.port > 65535) return fail("--port must be in [0, 65535]");
  if (o.max_queue < 1) return fail("--max-queue must be at least 1");
  if (o.max_prepare < 1) return fail("--max-prepare must be at least 1");
  if (o.max_batch < 0 || o.max_batch > 256) return fail("--max-batch must be in [0, 256] (0: the default)");
  if (!(o.max_upload_mb > 0) || o.max_upload_mb > 64 * 1024) return fail("--max-upload-mb must be in (0, 65536]");
  if (!(o.request_timeout >= 0)) return fail("--request-timeout must be >= 0 seconds (0: none)");
  if (o.beam_size < 1 || o.best_of < 1) return fail("--beam-size and --best-of must be at least 1");
  if (!is_loopback(o.host) && o.api_key.empty())
    std::fprintf(stderr,
                 "amanuensis: warning: listening on %s without an API key: anyone who can reach it can use it "
                 "(set --api-key or AMANUENSIS_API_KEY)\n",
                 o.host.c_str());
  return server::run_server(o);
}

}  // namespace

Command add_serve_command(CLI::App& root) {
  auto* sub = root.add_subcommand("serve", "an OpenAI-compatible transcription server (POST /v1/audio/transcriptions)");
  auto o = std::make_shared<server::ServerOptions>();
  sub->add_option("-m,--model", o->model_path, "ggml model file, or a model name (`models list`)")->required();
  sub->add_option("--host", o->host, "address to listen on (127.0.0.1)");
  sub->add_option("--port", o->port, "port (8080; 0: any free port, printed on standard output)");
  sub->add_option("--max-batch", o->max_batch, "windows decoded together across requests (0: the default, 8)");
  sub->add_option("--max-queue", o->max_queue,
                  "requests admitted at once, uploading, preparing or decoding (16); more get 429");
  sub->add_option("--max-prepare", o->max_prepare, "requests in pass 1 (audio decoding and VAD) at once (2)");
  sub->add_option("--max-upload-mb", o->max_upload_mb, "largest uploaded file in MiB (25); larger gets 413");
  sub->add_option("--api-key", o->api_key,
                  "require Authorization: Bearer KEY on /v1/* (default: $AMANUENSIS_API_KEY; none: open)");
  sub->add_option("--request-timeout", o->request_timeout,
                  "seconds a request may take before it is cancelled with 504 (0: no limit)");
  sub->add_option("-t,--threads", o->threads, "compute threads (0: all cores)");
  sub->add_option("--compute", o->compute, "auto|f32|bf16|int8");
  sub->add_option("--vad-model", o->vad_model, "Silero VAD safetensors (default: the shared one)");
  sub->add_option("--beam-size", o->beam_size, "beams at temperature 0 (5; 1 is greedy)");
  sub->add_option("--best-of", o->best_of, "samples at temperatures above 0 (5)");
  auto no_fallback = std::make_shared<bool>(false);
  sub->add_flag("--no-fallback", *no_fallback, "decode at the request's temperature only (no fallback schedule)");
  return {sub, [o, no_fallback] {
            o->temperature_fallback = !*no_fallback;
            return run_serve(*o);
          }};
}

}  // namespace ama::cli
