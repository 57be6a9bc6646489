// `amanuensis transcribe`: any audio or video file to txt/srt/vtt/json.
// Batched mode (the default) streams the file through the VAD and the
// continuous-batching pipeline (decode/pipeline.h); sequential mode is
// openai/whisper's seek-and-condition loop (decode/transcriber.h).
#include <algorithm>
#include <memory>
#include <sstream>
#include <unistd.h>

#include "audio/audio_source.h"
#include "audio/vad.h"
#include "backend/cpu/cpu_features.h"
#include "command.h"
#include "decode/output_formats.h"
#include "decode/pipeline.h"
#include "decode/transcriber.h"
#include "engine/engine.h"

namespace ama::cli {

namespace {

struct TranscribeCliOptions {
  std::string model, file, language = "auto", task = "transcribe", out, formats, compute = "auto", prompt;
  std::string mode = "batched", vad_model;
  int threads = 0, batch_size = 0;
  bool no_timestamps = false, verbose = false, no_condition = false;
  float vad_threshold = 0.5f;
  int vad_min_speech_ms = 250, vad_min_silence_ms = 100, vad_pad_ms = 30;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_transcribe(const TranscribeCliOptions& c) {
  Task task;
  if (c.task == "transcribe") task = Task::transcribe;
  else if (c.task == "translate") task = Task::translate;
  else return fail("--task must be transcribe or translate");
  if (c.mode != "batched" && c.mode != "sequential") return fail("--mode must be batched or sequential");
  std::vector<std::string> formats = split_list(c.formats);
  if (formats.empty() && !c.out.empty()) formats = {"txt"};
  for (const auto& f : formats)
    if (std::find(output_format_names().begin(), output_format_names().end(), f) == output_format_names().end())
      return fail("unknown format '" + f + "' (txt, srt, vtt, json)");
  if (!formats.empty() && c.out.empty()) return fail("--format needs -o PATH");

  auto engine = Engine::load(c.model, {c.threads, c.compute});
  if (!engine) return fail(engine.message());
  if (c.verbose)
    std::fprintf(stderr, "amanuensis: backend: %s (%s)\n", (*engine)->backend().describe().c_str(),
                 selected_isa().reason.c_str());
  const bool tty = isatty(STDERR_FILENO);
  auto progress = [tty](double done, double total) {
    if (tty && total > kChunkSeconds)
      std::fprintf(stderr, "amanuensis: progress %5.1f%% (%.1f / %.1f s)\n", 100.0 * done / total, done, total);
  };

  Transcript transcript;
  if (c.mode == "sequential") {
    TranscribeOptions o;
    o.language = c.language;
    o.task = task;
    o.timestamps = !c.no_timestamps;
    o.initial_prompt = c.prompt;
    o.condition_on_previous_text = !c.no_condition;
    o.on_progress = progress;
    auto audio = load_audio(c.file);
    if (!audio) return fail(audio.message());
    Transcriber t(**engine);
    auto result = t.transcribe(*audio, o);
    if (!result) return fail(result.message());
    transcript = std::move(*result);
  } else {
    auto vad = SileroVad::load(c.vad_model.empty() ? default_vad_model() : c.vad_model);
    if (!vad) return fail(vad.message());
    PipelineOptions o;
    o.language = c.language;
    o.task = task;
    o.timestamps = !c.no_timestamps;
    o.initial_prompt = c.prompt;
    o.batch_size = c.batch_size;
    o.vad.threshold = c.vad_threshold;
    o.vad.min_speech_ms = c.vad_min_speech_ms;
    o.vad.min_silence_ms = c.vad_min_silence_ms;
    o.vad.speech_pad_ms = c.vad_pad_ms;
    o.on_progress = progress;
    auto result = transcribe_file_batched(**engine, *vad, c.file, o);
    if (!result) return fail(result.message());
    transcript = std::move(result->transcript);
  }
  for (const Segment& s : transcript.segments)
    std::printf("[%s --> %s] %s\n", format_timestamp(s.start, '.').c_str(), format_timestamp(s.end, '.').c_str(),
                s.text.c_str());
  for (const auto& f : formats) {
    auto text = format_transcript(transcript, f);
    if (!text) return fail(text.message());
    if (Status s = write_text(c.out + "." + f, *text); !s) return fail(s.message());
  }
  return 0;
}

}  // namespace

Command add_transcribe_command(CLI::App& root) {
  auto* sub = root.add_subcommand("transcribe", "transcribe an audio or video file");
  auto o = std::make_shared<TranscribeCliOptions>();
  sub->add_option("-m,--model", o->model, "ggml model file")->required();
  sub->add_option("file", o->file, "audio or video file ('-' reads standard input)")->required();
  sub->add_option("-l,--language", o->language, "language code, or auto to detect");
  sub->add_option("--task", o->task, "transcribe or translate");
  sub->add_flag("--no-timestamps", o->no_timestamps, "decode without timestamps");
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("-o,--output", o->out, "output path without extension: writes PATH.txt, PATH.srt, ...");
  sub->add_option("-f,--format", o->formats, "comma-separated: txt,srt,vtt,json (default txt with -o)");
  sub->add_option("--compute", o->compute, "auto|f32|bf16|int8 (auto: the fastest that meets the accuracy bar here)");
  sub->add_option("--prompt", o->prompt, "initial prompt text");
  sub->add_flag("--no-condition", o->no_condition, "sequential mode: do not condition on the previous window's text");
  sub->add_option("--mode", o->mode, "batched (default: VAD chunks decoded together) or sequential (openai's loop)");
  sub->add_option("--batch-size", o->batch_size, "batched mode: sequences decoded together (0: the default, 8)");
  sub->add_option("--vad-model", o->vad_model, "Silero VAD safetensors (default: the shared one)");
  sub->add_option("--vad-threshold", o->vad_threshold, "speech probability threshold (0.5)");
  sub->add_option("--vad-min-speech-ms", o->vad_min_speech_ms, "drop speech shorter than this (250)");
  sub->add_option("--vad-min-silence-ms", o->vad_min_silence_ms, "silence that ends speech (100)");
  sub->add_option("--vad-pad-ms", o->vad_pad_ms, "padding around speech (30)");
  sub->add_flag("-v,--verbose", o->verbose, "log the backend and kernels chosen");
  return {sub, [o] { return run_transcribe(*o); }};
}

}  // namespace ama::cli
