// `amanuensis mel`: the log-mel spectrogram of a file as raw float32
// [n_mels x frames], audio plus 30 s of padding (openai/whisper's
// log_mel_spectrogram(audio, padding=N_SAMPLES)).
#include <memory>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "command.h"
#include "model/ggml_file.h"

namespace ama::cli {

namespace {
struct MelOptions {
  std::string audio, out, filters_from;
  int n_mels = 80;
};

int run_mel(const MelOptions& o) {
  if (o.n_mels != 80 && o.n_mels != 128) return fail("--n-mels must be 80 or 128");
  // Filters: from a model file when given, else computed (Slaney mel, as
  // openai/whisper's mel_filters.npz; tests/test_mel.cpp checks they match).
  std::vector<float> filters = slaney_mel_filters(o.n_mels);
  if (!o.filters_from.empty()) {
    auto reader = GgmlReader::open(o.filters_from);
    if (!reader) return fail(reader.message());
    auto header = reader->read_header();
    if (!header) return fail(header.message());
    if (header->hp.n_mels != o.n_mels)
      return fail(o.filters_from + " holds " + std::to_string(header->hp.n_mels) + " mel filters, not " +
                  std::to_string(o.n_mels) + " (--n-mels)");
    filters = std::move(header->mel_filters);
  }
  auto audio = load_audio(o.audio);
  if (!audio) return fail(audio.message());
  LogMel lm(filters, o.n_mels);
  std::vector<float> m = lm.compute(audio->data(), audio->size());
  if (Status s = write_f32(o.out, m.data(), m.size()); !s) return fail(s.message());
  return 0;
}
}  // namespace

Command add_mel_command(CLI::App& root) {
  auto* sub = root.add_subcommand("mel", "write the log-mel spectrogram as raw float32 [n_mels x frames]");
  auto o = std::make_shared<MelOptions>();
  sub->add_option("--audio", o->audio, "audio file ('-' reads standard input)")->required();
  sub->add_option("--out", o->out, "output file")->required();
  sub->add_option("--n-mels", o->n_mels, "80 or 128");
  sub->add_option("--filters", o->filters_from, "ggml model whose mel filterbank to use (default: computed)");
  return {sub, [o] { return run_mel(*o); }};
}

}  // namespace ama::cli
