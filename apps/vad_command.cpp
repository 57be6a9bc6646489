// `amanuensis vad`: Silero VAD v5 speech probabilities and segments.
//   plain:  one line per speech segment, "START END" in seconds (3 decimals: 1 ms)
//   --json: {"chunk": 512, "probs": [one per 512 samples], "segments": [{"start": s, "end": s}, ...]}
#include <charconv>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "audio/audio_source.h"
#include "audio/resample.h"
#include "audio/vad.h"
#include "command.h"

namespace ama::cli {

namespace {

struct VadCliOptions {
  std::string file, weights;
  bool json = false;
  VadOptions vad;
};

// Shortest text that reads back to the same value (std::to_chars).
template <typename T>
void append_number(std::string& out, T v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

int run_vad(const VadCliOptions& o) {
  if (Status s = validate(o.vad); !s) return fail(s.message());
  const std::string weights = o.weights.empty() ? default_vad_model() : o.weights;
  auto vad = SileroVad::load(weights);
  if (!vad) return fail(vad.message());
  auto audio = load_audio(o.file);
  if (!audio) return fail(audio.message());
  const std::vector<float> probs = vad->probabilities(*audio);
  auto segments = speech_segments(probs, audio->size(), o.vad);
  if (!segments) return fail(o.file + ": " + segments.message());

  const double sr = kVadSampleRate;
  std::string out;
  if (o.json) {
    out = "{\"chunk\": " + std::to_string(kVadChunk) + ", \"probs\": [";
    for (size_t i = 0; i < probs.size(); ++i) {
      if (i) out += ", ";
      append_number(out, probs[i]);
    }
    out += "], \"segments\": [";
    for (size_t i = 0; i < segments->size(); ++i) {
      out += i ? ", {\"start\": " : "{\"start\": ";
      append_number(out, (*segments)[i].start / sr);
      out += ", \"end\": ";
      append_number(out, (*segments)[i].end / sr);
      out += "}";
    }
    out += "]}\n";
  } else {
    char line[64];
    for (const SpeechSegment& s : *segments) {
      std::snprintf(line, sizeof line, "%.3f %.3f\n", s.start / sr, s.end / sr);
      out += line;
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (std::fflush(stdout) != 0) return fail("cannot write to standard output");
  return 0;
}

}  // namespace

Command add_vad_command(CLI::App& root) {
  auto* sub = root.add_subcommand("vad", "speech segments by Silero VAD v5 (16 kHz, 512-sample chunks)");
  auto o = std::make_shared<VadCliOptions>();
  sub->add_option("file", o->file, "audio file")->required();
  sub->add_flag("--json", o->json, "print {\"chunk\", \"probs\", \"segments\"} as JSON");
  sub->add_option("--threshold", o->vad.threshold, "speech starts at probability >= this (default 0.5)");
  sub->add_option("--neg-threshold", o->vad.neg_threshold,
                  "speech ends below this (default: max(threshold - 0.15, 0.01))");
  sub->add_option("--min-speech-ms", o->vad.min_speech_ms, "drop shorter segments (default 250)");
  sub->add_option("--min-silence-ms", o->vad.min_silence_ms, "silence that ends a segment (default 100)");
  sub->add_option("--speech-pad-ms", o->vad.speech_pad_ms, "padding on each side (default 30)");
  sub->add_option("--max-speech-s", o->vad.max_speech_s,
                  "split longer segments, at the longest silence over 98 ms if any (default: unlimited)");
  sub->add_option("--weights", o->weights, "Silero VAD safetensors (default: $AMANUENSIS_VAD_MODEL, else <shared>/models/silero_vad_16k.safetensors)");
  return {sub, [o] { return run_vad(*o); }};
}

}  // namespace ama::cli
