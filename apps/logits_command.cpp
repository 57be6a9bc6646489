// `amanuensis logits`: decoder logits [n_tokens x n_vocab] for the first
// 30 s window, tokens fed from position 0; row i predicts token i+1. The
// oracle tests compare these with an independent implementation.
#include <memory>
#include <sstream>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "command.h"
#include "decode/transcriber.h"
#include "engine/engine.h"

namespace ama::cli {

namespace {
struct LogitsOptions {
  std::string model, audio, tokens, out, compute = "f32", encoder_out;
  int threads = 0;
};

int run_logits(const LogitsOptions& o) {
  std::vector<int> tokens;
  std::stringstream ss(o.tokens);
  for (std::string s; std::getline(ss, s, ',');) {
    if (s.empty()) continue;
    try {
      size_t pos = 0;
      tokens.push_back(std::stoi(s, &pos));
      if (pos != s.size()) throw std::invalid_argument(s);
    } catch (...) {
      return fail("--tokens: '" + s + "' is not a token id");
    }
  }
  if (tokens.empty()) return fail("--tokens is empty");
  auto audio = load_audio(o.audio);
  if (!audio) return fail(audio.message());
  auto model = resolve_model(o.model);  // a file, or a model name (pulled on first use)
  if (!model) return fail(model.message());
  auto engine = Engine::load(*model, {o.threads, o.compute});
  if (!engine) return fail(engine.message());
  Transcriber t(**engine);
  const HParams& hp = (*engine)->model().hp;
  LogMel lm((*engine)->model().mel_filters, hp.n_mels);
  std::vector<float> m = lm.compute(audio->data(), audio->size());
  if (Status s = t.encode_window(m.data(), LogMel::total_frames(audio->size())); !s)  // the first 3000 columns
    return fail(s.message());
  auto logits = t.logits_for(tokens);
  if (!logits) return fail(logits.message());
  if (Status s = write_f32(o.out, logits->data(), logits->size()); !s) return fail(s.message());
  if (!o.encoder_out.empty()) {
    auto e = t.encoder_output();
    if (!e) return fail(e.message());
    if (Status s = write_f32(o.encoder_out, e->data(), e->size()); !s) return fail(s.message());
  }
  return 0;
}
}  // namespace

Command add_logits_command(CLI::App& root) {
  auto* sub = root.add_subcommand("logits", "write decoder logits for a token sequence as raw float32 [n x n_vocab]");
  auto o = std::make_shared<LogitsOptions>();
  sub->add_option("-m,--model", o->model, "ggml model file, or a model name (`models list`)")->required();
  sub->add_option("--audio", o->audio, "audio file")->required();
  sub->add_option("--tokens", o->tokens, "comma-separated token ids, fed from position 0")->required();
  sub->add_option("--out", o->out, "output file")->required();
  sub->add_option("--compute", o->compute, "f32 (default: the reference) | bf16 | int8 | auto");
  sub->add_option("-t,--threads", o->threads, "threads (0: all cores)");
  sub->add_option("--encoder-out", o->encoder_out, "also write the encoder output [n_audio_ctx x n_state]");
  return {sub, [o] { return run_logits(*o); }};
}

}  // namespace ama::cli
