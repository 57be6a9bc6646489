// `amanuensis bench`: the model workload (bench_command.cpp, whisper.cpp's
// bench) and, with --e2e FILE, the whole batched pipeline on a file: audio
// decoding, VAD, log-mel, encoder, decoder and writing the outputs, timed
// per stage. Random-weight models never end a window by themselves, so
// --tokens-per-window forces the number of decoded tokens per 30 s of speech
// (110 is typical for conversational English with timestamps).
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "audio/vad.h"
#include "backend/cpu/cpu_features.h"
#include "bench_command.h"
#include "command.h"
#include "decode/output_formats.h"
#include "decode/pipeline.h"
#include "engine/engine.h"

namespace ama::cli {

namespace {

struct BenchCliOptions {
  std::string model, compute = "auto", e2e, vad_model, out;
  int threads = 0, runs = 3, tokens_per_window = 110, batch_size = 0, beam_size = 1;
  bool json = false;
};

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // KiB on Linux
}

int run_e2e(const BenchCliOptions& c, const Engine& engine) {
  auto vad = SileroVad::load(c.vad_model.empty() ? default_vad_model() : c.vad_model);
  if (!vad) return fail(vad.message());
  PipelineOptions o;
  o.forced_tokens_per_30s = c.tokens_per_window;
  o.batch_size = c.batch_size;
  // The model workload: one pass, no fallback (random weights would fall
  // back at every window); beams as asked.
  o.decoding = DecodingOptions::greedy();
  o.decoding.beam_size = c.beam_size;
  // No guards either: a looping random model would have its text cut and
  // silent-looking windows skipped, and the count of decoded tokens with them.
  o.decoding.compression_ratio_threshold.reset();
  o.decoding.logprob_threshold.reset();
  o.decoding.no_speech_threshold.reset();
  o.language = engine.model().tokenizer.multilingual() ? "en" : "auto";
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto r = transcribe_file_batched(engine, *vad, c.e2e, o);
  if (!r) return fail(r.message());
  const auto t1 = clock::now();
  // Writing: every format, to files when -o is given, else formatted only.
  for (const std::string& f : output_format_names()) {
    auto text = format_transcript(r->transcript, f);
    if (!text) return fail(text.message());
    if (!c.out.empty())
      if (Status s = write_text(c.out + "." + f, *text); !s) return fail(s.message());
  }
  const auto t2 = clock::now();
  const double wall = std::chrono::duration<double>(t2 - t0).count();
  const double write_s = std::chrono::duration<double>(t2 - t1).count();
  nlohmann::json j;
  j["file"] = c.e2e;
  j["model"] = engine.model().path;
  j["arch"] = arch_name(engine.model().hp);
  j["cpu"] = cpu_features().brand;
  j["backend"] = engine.backend().describe();
  j["threads"] = engine.backend().n_threads();
  j["batch_size"] = c.batch_size == 0 ? default_batch_size() : c.batch_size;
  j["tokens_per_window"] = c.tokens_per_window;
  j["beam_size"] = c.beam_size;
  j["forks"] = r->forks;
  j["audio_s"] = r->transcript.duration;
  j["wall_s"] = wall;
  j["rtf_x"] = r->transcript.duration / wall;
  j["peak_rss_mb"] = peak_rss_mb();
  j["windows"] = r->windows;
  j["decoded_tokens"] = r->decoded_tokens;
  j["stages_s"] = {{"decode_audio", r->times.decode_audio}, {"vad", r->times.vad},       {"mel", r->times.mel},
                   {"encode", r->times.encode},             {"decode", r->times.decode}, {"write", write_s}};
  if (c.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s\n", j.dump(2).c_str());
  }
  return 0;
}

int run_bench(const BenchCliOptions& c) {
  auto model = resolve_model(c.model);  // a file, or a model name (pulled on first use)
  if (!model) return fail(model.message());
  auto engine = Engine::load(*model, {c.threads, c.compute});
  if (!engine) return fail(engine.message());
  if (!c.e2e.empty()) {
    if (c.tokens_per_window < 1 || c.tokens_per_window > (*engine)->model().hp.n_text_ctx / 2)
      return fail("--tokens-per-window must be in [1, " + std::to_string((*engine)->model().hp.n_text_ctx / 2) + "]");
    return run_e2e(c, **engine);
  }
  BenchOptions bo;
  bo.encode_runs = c.runs;
  bo.json = c.json;
  auto report = run_model_bench((*engine)->model_ptr(), (*engine)->backend(), bo);
  if (!report) return fail(report.message());
  std::printf("%s", report->c_str());
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& root) {
  auto* sub = root.add_subcommand("bench", "time the encoder and decoder (whisper.cpp's bench workload), or --e2e FILE");
  auto o = std::make_shared<BenchCliOptions>();
  sub->add_option("-m,--model", o->model, "ggml model file, or a model name (`models list`)")->required();
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("--compute", o->compute, "auto|f32|bf16|int8");
  sub->add_option("--runs", o->runs, "encoder runs (the median is reported)");
  sub->add_flag("--json", o->json, "print one JSON object");
  sub->add_option("--e2e", o->e2e, "time the whole batched pipeline on this audio file");
  sub->add_option("--tokens-per-window", o->tokens_per_window, "--e2e: decoded tokens per 30 s of speech (110)");
  sub->add_option("--batch-size", o->batch_size, "--e2e: windows decoded together (0: the default)");
  sub->add_option("--beam-size", o->beam_size, "--e2e: beam search width (1: greedy)");
  sub->add_option("--vad-model", o->vad_model, "--e2e: Silero VAD safetensors (default: the shared one)");
  sub->add_option("-o,--output", o->out, "--e2e: also write PATH.txt, PATH.srt, ... (default: format only)");
  return {sub, [o] { return run_bench(*o); }};
}

}  // namespace ama::cli
