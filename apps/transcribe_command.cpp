// `amanuensis transcribe`: any audio or video file to txt/srt/vtt/json.
// Batched mode (the default) streams the file through the VAD and the
// continuous-batching pipeline (decode/pipeline.h); sequential mode is
// openai/whisper's seek-and-condition loop (decode/transcriber.h).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <memory>
#include <sstream>
#include <unistd.h>

#include "audio/audio_source.h"
#include "audio/vad.h"
#include "backend/cpu/cpu_features.h"
#include "command.h"
#include "core/progress.h"
#include "decode/output_formats.h"
#include "decode/pipeline.h"
#include "decode/transcriber.h"
#include "engine/engine.h"

namespace ama::cli {

namespace {

struct TranscribeCliOptions {
  std::string model, file, language = "auto", task = "transcribe", out, formats, compute = "auto", prompt;
  std::string mode = "batched", vad_model, prefix, suppress_tokens = "-1";
  int threads = 0, batch_size = 0;
  bool no_timestamps = false, verbose = false, no_condition = false, word_timestamps = false, quiet = false;
  WriterOptions writer;
  // openai's command-line defaults.
  int beam_size = 5, best_of = 5;
  float patience = 1.0f, temperature = 0.0f, max_initial_timestamp = 1.0f;
  uint64_t seed = 0;
  std::string length_penalty = "none", temperature_increment = "0.2", compression_ratio_threshold = "2.4",
              logprob_threshold = "-1.0", no_speech_threshold = "0.6", hallucination_silence_threshold = "none",
              condition_on_previous_text = "true";
  float vad_threshold = 0.5f;
  int vad_min_speech_ms = 250, vad_min_silence_ms = 100, vad_pad_ms = 30;
};

// openai's optional_float: a number, or "none".
Result<std::optional<float>> optional_float(const std::string& name, const std::string& text) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (t == "none") return std::optional<float>();
  char* end = nullptr;
  const float v = std::strtof(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v)) return make_error(name + " must be a number or none, not '" + text + "'");
  return std::optional<float>(v);
}

// The shared options from the command line: decoding strategy, fallback,
// prompts and guards (each with openai's meaning).
Result<TranscribeOptions> decoding_options(const TranscribeCliOptions& c, Task task) {
  TranscribeOptions o;
  o.language = c.language;
  o.task = task;
  o.timestamps = !c.no_timestamps;
  o.word_timestamps = c.word_timestamps;
  o.initial_prompt = c.prompt;
  o.prefix = c.prefix;
  o.suppress_tokens = c.suppress_tokens;
  o.max_initial_timestamp = c.max_initial_timestamp;
  std::string cond = c.condition_on_previous_text;
  std::transform(cond.begin(), cond.end(), cond.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (cond != "true" && cond != "false") return make_error("--condition-on-previous-text must be true or false");
  o.condition_on_previous_text = cond == "true" && !c.no_condition;
  DecodingOptions& d = o.decoding;
  d.beam_size = c.beam_size;
  d.best_of = c.best_of;
  d.patience = c.patience;
  d.seed = c.seed;
  auto lp = optional_float("--length-penalty", c.length_penalty);
  auto inc = optional_float("--temperature-increment-on-fallback", c.temperature_increment);
  auto cr = optional_float("--compression-ratio-threshold", c.compression_ratio_threshold);
  auto lt = optional_float("--logprob-threshold", c.logprob_threshold);
  auto ns = optional_float("--no-speech-threshold", c.no_speech_threshold);
  auto hs = optional_float("--hallucination-silence-threshold", c.hallucination_silence_threshold);
  for (auto* r : {&lp, &inc, &cr, &lt, &ns, &hs})
    if (!*r) return r->error();
  if (*lp && **lp < 0) return make_error("--length-penalty must be >= 0 (or none)");
  d.length_penalty = *lp ? **lp : -1.0f;
  // openai: temperatures from --temperature to 1.0 by the increment; one
  // temperature without it.
  if (!std::isfinite(c.temperature) || c.temperature < 0 || c.temperature > 1)
    return make_error("--temperature must be in [0, 1]");
  d.temperatures = {c.temperature};
  if (*inc) {
    if (**inc <= 0 || **inc > 1) return make_error("--temperature-increment-on-fallback must be in (0, 1] (or none)");
    d.temperatures.clear();
    for (int i = 0;; ++i) {
      const double t = c.temperature + i * static_cast<double>(**inc);
      if (t > 1.0 + 1e-6) break;
      d.temperatures.push_back(static_cast<float>(t));
    }
  }
  d.compression_ratio_threshold = *cr;
  d.logprob_threshold = *lt;
  d.no_speech_threshold = *ns;
  o.hallucination_silence_threshold = *hs;
  if (*hs && **hs <= 0) return make_error("--hallucination-silence-threshold must be > 0 seconds (or none)");
  if (*hs && !c.word_timestamps) return make_error("--hallucination-silence-threshold needs --word-timestamps");
  AMA_TRY(validate(d));
  return o;
}

int run_transcribe(const TranscribeCliOptions& c) {
  Task task;
  if (c.task == "transcribe") task = Task::transcribe;
  else if (c.task == "translate") task = Task::translate;
  else return fail("--task must be transcribe or translate");
  if (c.mode != "batched" && c.mode != "sequential") return fail("--mode must be batched or sequential");
  std::vector<std::string> formats;
  if (!c.formats.empty()) {
    auto f = parse_output_formats(c.formats);
    if (!f) return fail(f.message());
    formats = *f;
  }
  if (formats.empty() && !c.out.empty()) formats = {"txt"};
  if (!formats.empty() && c.out.empty()) return fail("--format needs -o PATH");
  if (Status s = c.writer.validate(); !s) return fail(s.message());
  // openai's CLI refuses subtitle options that need words without them.
  if (c.writer.uses_words() && !c.word_timestamps)
    return fail("--max-line-width, --max-line-count, --max-words-per-line and --highlight-words need --word-timestamps");

  auto model = resolve_model(c.model);  // a file, or a model name (pulled on first use)
  if (!model) return fail(model.message());
  auto engine = Engine::load(*model, {c.threads, c.compute});
  if (!engine) return fail(engine.message());
  if (c.verbose)
    std::fprintf(stderr, "amanuensis: backend: %s (%s)\n", (*engine)->backend().describe().c_str(),
                 selected_isa().reason.c_str());
  // On a terminal only, and not with --quiet.
  ProgressBar bar = ProgressBar::for_stderr(c.quiet);
  auto progress = bar.callback();

  auto shared = decoding_options(c, task);
  if (!shared) return fail(shared.message());
  Transcript transcript;
  if (c.mode == "sequential") {
    TranscribeOptions o = *shared;
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
    static_cast<TranscribeOptions&>(o) = *shared;
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
  bar.finish();
  if (!c.quiet)
    for (const Segment& s : transcript.segments)
      std::printf("[%s --> %s] %s\n", format_timestamp(s.start, '.').c_str(), format_timestamp(s.end, '.').c_str(),
                s.text.c_str());
  for (const auto& f : formats) {
    auto text = format_transcript(transcript, f, c.writer, task);
    if (!text) return fail(text.message());
    if (Status s = write_text(c.out + "." + output_format_extension(f), *text); !s) return fail(s.message());
  }
  return 0;
}

}  // namespace

Command add_transcribe_command(CLI::App& root) {
  auto* sub = root.add_subcommand("transcribe", "transcribe an audio or video file");
  auto o = std::make_shared<TranscribeCliOptions>();
  sub->add_option("-m,--model", o->model, "ggml model file, or a model name (`models list`)")->required();
  sub->add_option("file", o->file, "audio or video file ('-' reads standard input)")->required();
  sub->add_option("-l,--language", o->language, "language code, or auto to detect");
  sub->add_option("--task", o->task, "transcribe or translate");
  sub->add_flag("--no-timestamps", o->no_timestamps, "decode without timestamps");
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("-o,--output", o->out, "output path without extension: writes PATH.txt, PATH.srt, ...");
  sub->add_option("-f,--format", o->formats,
                  "comma-separated: txt,srt,vtt,tsv,json,verbose_json, or all (default txt with -o)");
  sub->add_option("--max-line-width", o->writer.max_line_width, "srt/vtt: characters per line (needs --word-timestamps)");
  sub->add_option("--max-line-count", o->writer.max_line_count, "srt/vtt: lines per cue (with --max-line-width)");
  sub->add_option("--max-words-per-line", o->writer.max_words_per_line, "srt/vtt: words per cue line");
  sub->add_flag("--highlight-words", o->writer.highlight_words, "srt/vtt: underline each word as it is spoken");
  sub->add_flag("-q,--quiet", o->quiet, "no progress bar and no transcript on standard output");
  sub->add_option("--compute", o->compute, "auto|f32|bf16|int8 (auto: the fastest that meets the accuracy bar here)");
  sub->add_option("--initial-prompt,--prompt", o->prompt, "text to provide as a prompt for the first window");
  sub->add_option("--prefix", o->prefix, "text the first window's transcript is forced to start with");
  sub->add_option("--condition-on-previous-text", o->condition_on_previous_text,
                  "sequential mode: the previous window's text is the next one's prompt (true|false)");
  sub->add_flag("--no-condition", o->no_condition, "same as --condition-on-previous-text false");
  sub->add_option("--beam-size", o->beam_size, "beams at temperature 0 (5; 1 is greedy)");
  sub->add_option("--best-of", o->best_of, "samples at temperatures above 0 (5)");
  sub->add_option("--patience", o->patience, "beam search patience (1.0)");
  sub->add_option("--length-penalty", o->length_penalty,
                  "alpha of the length penalty ((5+len)/6)^alpha, or none: rank by log-probability / length");
  sub->add_option("--temperature", o->temperature, "the first sampling temperature (0)");
  sub->add_option("--temperature-increment-on-fallback", o->temperature_increment,
                  "temperature step when a window fails the thresholds (0.2; none: no fallback)");
  sub->add_option("--compression-ratio-threshold", o->compression_ratio_threshold,
                  "retry a window whose text's gzip ratio is above this (2.4; none)");
  sub->add_option("--logprob-threshold", o->logprob_threshold,
                  "retry a window whose average log-probability is below this (-1.0; none)");
  sub->add_option("--no-speech-threshold", o->no_speech_threshold,
                  "skip a window whose no-speech probability is above this and log-probability below the threshold (0.6; none)");
  sub->add_option("--suppress-tokens", o->suppress_tokens,
                  "comma-separated token ids to suppress; -1: the non-speech symbols (default -1)");
  sub->add_option("--max-initial-timestamp", o->max_initial_timestamp,
                  "latest first timestamp in seconds (1.0; negative: no limit)");
  sub->add_flag("--word-timestamps", o->word_timestamps, "word-level timestamps (cross-attention alignment and DTW)");
  sub->add_option("--hallucination-silence-threshold", o->hallucination_silence_threshold,
                  "with --word-timestamps: skip silences longer than this (s) around likely hallucinations (none)");
  sub->add_option("--seed", o->seed, "random seed for sampling: the same seed gives the same transcript");
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
