// `amanuensis make-test-model`: deterministic random-weight ggml models at
// any standard or custom shape (real weights cannot be downloaded here),
// optionally quantized like whisper.cpp's `quantize` output.
#include <memory>
#include <sstream>

#include "command.h"
#include "model/ggml_quants.h"
#include "model/hparams.h"
#include "model/test_model.h"

namespace ama::cli {

namespace {
struct MakeOptions {
  std::string arch = "base", vocab, out, dims, quant;
  uint64_t seed = 1;
  bool f32 = false;
};

int run_make(const MakeOptions& m) {
  TestModelOptions o;
  o.seed = m.seed;
  o.output = m.out;
  if (!m.dims.empty()) {
    std::vector<int> d;
    std::stringstream ss(m.dims);
    for (std::string s; std::getline(ss, s, ',');) {
      if (s.empty()) continue;
      try {
        d.push_back(std::stoi(s));
      } catch (...) {
        return fail("--dims: '" + s + "' is not a number");
      }
    }
    if (d.size() < 4 || d.size() > 7) return fail("--dims needs 4 to 7 numbers");
    HParams hp;
    hp.n_audio_state = hp.n_text_state = d[0];
    hp.n_audio_head = hp.n_text_head = d[1];
    hp.n_audio_layer = d[2];
    hp.n_text_layer = d[3];
    hp.n_mels = d.size() > 4 ? d[4] : 80;
    hp.n_vocab = d.size() > 5 ? d[5] : 51865;
    hp.n_text_ctx = d.size() > 6 ? d[6] : 448;
    hp.n_audio_ctx = kAudioCtx;
    hp.ftype = 1;
    o.hp = hp;
  } else {
    auto hp = standard_hparams(m.arch);
    if (!hp) return fail(hp.message());
    o.hp = *hp;
  }
  if (m.f32) o.hp.ftype = 0;
  if (!m.quant.empty()) {
    auto t = ggml_type_from_name(m.quant);
    if (!t || !ggml_is_quantized(t->type))
      return fail("--quant: unknown type '" + m.quant + "' (one of " + ggml_quant_type_list() + ")");
    o.quant = t->type;
  }
  o.vocab_source = !m.vocab.empty() ? m.vocab
                                    : shared_dir() + "/models/whisper-vocab/for-tests-ggml-base" +
                                          (o.hp.multilingual() ? "" : ".en") + ".bin";
  if (Status s = write_test_model(o); !s) return fail(s.message());
  return 0;
}
}  // namespace

Command add_make_test_model_command(CLI::App& root) {
  auto* sub = root.add_subcommand("make-test-model", "write a random-weight ggml model");
  auto o = std::make_shared<MakeOptions>();
  sub->add_option("--arch", o->arch, "tiny|base|small|medium|large-v1|large-v2|large-v3|large-v3-turbo[.en] or custom");
  sub->add_option("--dims", o->dims, "custom: n_state,n_head,n_audio_layer,n_text_layer[,n_mels[,n_vocab[,n_text_ctx]]]");
  sub->add_option("--seed", o->seed, "random seed");
  sub->add_option("--vocab", o->vocab, "ggml file with vocabulary and mel filters");
  sub->add_option("-o,--output", o->out, "output file")->required();
  sub->add_flag("--f32", o->f32, "store matrices as f32 instead of f16");
  sub->add_option("--quant", o->quant,
                  "quantize as whisper.cpp's quantize does: q4_0|q4_1|q5_0|q5_1|q8_0|q2_k|q3_k|q4_k|q5_k|q6_k");
  return {sub, [o] { return run_make(*o); }};
}

}  // namespace ama::cli
