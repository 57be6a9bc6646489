// amanuensis: the command-line interface.
//   transcribe       audio -> txt/srt/vtt/json
//   mel              audio -> raw float32 log-mel [n_mels x frames]
//   logits           model + audio + tokens -> raw float32 logits [n_tokens x n_vocab]
//   make-test-model  random-weight ggml models at real shapes
//   info             CPU features and the chosen ISA
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "audio/mel.h"
#include "bench_command.h"
#include "kernels_command.h"
#include "audio/resample.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "decode/output_formats.h"
#include "decode/transcriber.h"
#include "model/ggml_file.h"
#include "model/test_model.h"
#include "model/whisper_model.h"

namespace {

using namespace ama;

int fail(const std::string& message) {
  std::fprintf(stderr, "amanuensis: error: %s\n", message.c_str());
  return 1;
}

Status write_f32(const std::string& path, const float* data, size_t n) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return make_error(path + ": cannot create file");
  const bool ok = std::fwrite(data, sizeof(float), n, f) == n;
  if (std::fclose(f) != 0 || !ok) return make_error(path + ": write failed");
  return Status::Ok();
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return make_error(path + ": cannot create file");
  f << text;
  f.close();
  if (!f) return make_error(path + ": write failed");
  return Status::Ok();
}

struct Engine {
  std::unique_ptr<Backend> backend;
  std::shared_ptr<const WhisperModel> model;
};

Result<Engine> load_engine(const std::string& model_path, int threads, const std::string& compute, bool verbose) {
  auto ct = parse_compute_type(compute);
  if (!ct) return ct.error();
  if (threads < 0 || threads > 256) return make_error("--threads " + std::to_string(threads) + " is out of range [0, 256]");
  CpuBackendOptions bo;
  bo.n_threads = threads;
  bo.compute = *ct;
  auto backend = make_cpu_backend(bo);
  if (!backend) return backend.error();
  if (verbose) std::fprintf(stderr, "amanuensis: backend: %s (%s)\n", (*backend)->describe().c_str(), selected_isa().reason.c_str());
  auto model = load_model(model_path, **backend);
  if (!model) return model.error();
  return Engine{std::move(backend.value()), std::move(model.value())};
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"amanuensis: Whisper speech-to-text on our own CPU kernels"};
  app.require_subcommand(1);

  // transcribe
  auto* tr = app.add_subcommand("transcribe", "transcribe an audio file");
  std::string tr_model, tr_file, tr_language = "auto", tr_task = "transcribe", tr_out, tr_formats, tr_compute = "auto",
                        tr_prompt;
  int tr_threads = 0;
  bool tr_no_ts = false, tr_verbose = false, tr_no_context = false;
  tr->add_option("-m,--model", tr_model, "ggml model file")->required();
  tr->add_option("file", tr_file, "audio file")->required();
  tr->add_option("-l,--language", tr_language, "language code, or auto to detect");
  tr->add_option("--task", tr_task, "transcribe or translate");
  tr->add_flag("--no-timestamps", tr_no_ts, "decode without timestamps");
  tr->add_option("-t,--threads", tr_threads, "threads (0: all cores)");
  tr->add_option("-o,--output", tr_out, "output path without extension: writes PATH.txt, PATH.srt, ...");
  tr->add_option("-f,--format", tr_formats, "comma-separated: txt,srt,vtt,json (default txt with -o)");
  tr->add_option("--compute", tr_compute, "auto|f32|bf16|int8 (auto: the fastest that meets the accuracy bar here)");
  tr->add_option("--prompt", tr_prompt, "initial prompt text");
  tr->add_flag("--no-condition", tr_no_context, "do not condition on the previous window's text");
  tr->add_flag("-v,--verbose", tr_verbose, "log the backend and kernels chosen");

  // mel
  auto* mel = app.add_subcommand("mel", "write the log-mel spectrogram as raw float32 [n_mels x frames]");
  std::string mel_audio, mel_out;
  int mel_n = 80;
  std::string mel_filters_from;
  mel->add_option("--audio", mel_audio, "audio file")->required();
  mel->add_option("--out", mel_out, "output file")->required();
  mel->add_option("--n-mels", mel_n, "80 or 128");
  mel->add_option("--filters", mel_filters_from, "ggml model whose mel filterbank to use (default: computed)");

  // logits
  auto* lg = app.add_subcommand("logits", "write decoder logits for a token sequence as raw float32 [n x n_vocab]");
  std::string lg_model, lg_audio, lg_tokens, lg_out, lg_compute = "f32", lg_encoder_out;
  int lg_threads = 0;
  lg->add_option("-m,--model", lg_model, "ggml model file")->required();
  lg->add_option("--audio", lg_audio, "audio file")->required();
  lg->add_option("--tokens", lg_tokens, "comma-separated token ids, fed from position 0")->required();
  lg->add_option("--out", lg_out, "output file")->required();
  lg->add_option("--compute", lg_compute, "f32 (default: the reference) | bf16 | int8 | auto");
  lg->add_option("-t,--threads", lg_threads, "threads (0: all cores)");
  lg->add_option("--encoder-out", lg_encoder_out, "also write the encoder output [n_audio_ctx x n_state]");

  // make-test-model
  auto* mk = app.add_subcommand("make-test-model", "write a random-weight ggml model");
  std::string mk_arch = "base", mk_vocab, mk_out, mk_dims;
  uint64_t mk_seed = 1;
  bool mk_f32 = false;
  mk->add_option("--arch", mk_arch, "tiny|base|small|medium|large-v1|large-v2|large-v3|large-v3-turbo[.en] or custom");
  mk->add_option("--dims", mk_dims,
                 "custom: n_state,n_head,n_audio_layer,n_text_layer[,n_mels[,n_vocab[,n_text_ctx]]]");
  mk->add_option("--seed", mk_seed, "random seed");
  mk->add_option("--vocab", mk_vocab, "ggml file with vocabulary and mel filters");
  mk->add_option("-o,--output", mk_out, "output file")->required();
  mk->add_flag("--f32", mk_f32, "store matrices as f32 instead of f16");

  auto* info = app.add_subcommand("info", "print CPU features and the chosen ISA");

  // kernels
  auto* kn = app.add_subcommand("kernels", "the kernel harness: time and check each kernel at Whisper's shapes");
  KernelsOptions ko;
  kn->add_option("--kernel", ko.kernel, "only kernels whose name contains this");
  kn->add_option("--shape", ko.shape, "MxKxN for GEMMs, ROWSxCOLS for row ops");
  kn->add_option("--isa", ko.isa, "scalar|avx2|avx512|amx (default: every supported one)");
  kn->add_option("--arch", ko.arch, "Whisper shapes: tiny|base|small|medium|large-v3|all");
  kn->add_option("--iters", ko.iters, "timed iterations (after one warm-up)");
  kn->add_option("-t,--threads", ko.threads, "threads (0: all cores)");
  kn->add_flag("--json", ko.json, "print JSON");

  // bench
  auto* bn = app.add_subcommand("bench", "time the encoder and decoder (whisper.cpp's bench workload)");
  std::string bn_model, bn_compute = "auto";
  int bn_threads = 0, bn_runs = 3;
  bool bn_json = false;
  bn->add_option("-m,--model", bn_model, "ggml model file")->required();
  bn->add_option("-t,--threads", bn_threads, "threads (0: all cores)");
  bn->add_option("--compute", bn_compute, "auto|f32|bf16|int8");
  bn->add_option("--runs", bn_runs, "encoder runs (the median is reported)");
  bn->add_flag("--json", bn_json, "print one JSON object");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }

  const std::string shared = AMA_DEFAULT_SHARED_DIR;

  if (*info) {
    std::printf("%s", describe_cpu().c_str());
    return 0;
  }

  if (*kn) {
    auto report = run_kernel_harness(ko);
    if (!report) return fail(report.message());
    std::printf("%s", report->c_str());
    return 0;
  }

  if (*bn) {
    auto engine = load_engine(bn_model, bn_threads, bn_compute, false);
    if (!engine) return fail(engine.message());
    BenchOptions bo;
    bo.encode_runs = bn_runs;
    bo.json = bn_json;
    auto report = run_model_bench(engine->model, *engine->backend, bo);
    if (!report) return fail(report.message());
    std::printf("%s", report->c_str());
    return 0;
  }

  if (*mk) {
    TestModelOptions o;
    o.seed = mk_seed;
    o.output = mk_out;
    if (!mk_dims.empty()) {
      std::vector<int> d;
      for (const auto& s : split_list(mk_dims)) {
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
      auto hp = standard_hparams(mk_arch);
      if (!hp) return fail(hp.message());
      o.hp = *hp;
    }
    if (mk_f32) o.hp.ftype = 0;
    o.vocab_source = !mk_vocab.empty() ? mk_vocab
                                       : shared + "/models/whisper-vocab/for-tests-ggml-base" +
                                             (o.hp.multilingual() ? "" : ".en") + ".bin";
    if (Status s = write_test_model(o); !s) return fail(s.message());
    return 0;
  }

  if (*mel) {
    if (mel_n != 80 && mel_n != 128) return fail("--n-mels must be 80 or 128");
    // Filters: from a model file when given, else computed (Slaney mel, as
    // openai/whisper's mel_filters.npz; tests/test_mel.cpp checks they match).
    std::vector<float> filters = slaney_mel_filters(mel_n);
    if (!mel_filters_from.empty()) {
      auto reader = GgmlReader::open(mel_filters_from);
      if (!reader) return fail(reader.message());
      auto header = reader->read_header();
      if (!header) return fail(header.message());
      if (header->hp.n_mels != mel_n)
        return fail(mel_filters_from + " holds " + std::to_string(header->hp.n_mels) + " mel filters, not " +
                    std::to_string(mel_n) + " (--n-mels)");
      filters = std::move(header->mel_filters);
    }
    auto audio = load_audio_16k(mel_audio);
    if (!audio) return fail(audio.message());
    LogMel lm(filters, mel_n);
    std::vector<float> m = lm.compute(audio->data(), audio->size());
    if (Status s = write_f32(mel_out, m.data(), m.size()); !s) return fail(s.message());
    return 0;
  }

  if (*lg) {
    std::vector<int> tokens;
    for (const auto& s : split_list(lg_tokens)) {
      try {
        size_t pos = 0;
        tokens.push_back(std::stoi(s, &pos));
        if (pos != s.size()) throw std::invalid_argument(s);
      } catch (...) {
        return fail("--tokens: '" + s + "' is not a token id");
      }
    }
    if (tokens.empty()) return fail("--tokens is empty");
    auto audio = load_audio_16k(lg_audio);
    if (!audio) return fail(audio.message());
    auto engine = load_engine(lg_model, lg_threads, lg_compute, false);
    if (!engine) return fail(engine.message());
    Transcriber t(engine->model, *engine->backend);
    const HParams& hp = engine->model->hp;
    LogMel lm(engine->model->mel_filters, hp.n_mels);
    std::vector<float> m = lm.compute(audio->data(), audio->size());
    const int total = LogMel::total_frames(audio->size());
    t.encode_window(m.data(), total);  // the first 3000 columns
    auto logits = t.logits_for(tokens);
    if (!logits) return fail(logits.message());
    if (Status s = write_f32(lg_out, logits->data(), logits->size()); !s) return fail(s.message());
    if (!lg_encoder_out.empty()) {
      const auto& e = t.encoder_output();
      if (Status s = write_f32(lg_encoder_out, e.data(), e.size()); !s) return fail(s.message());
    }
    return 0;
  }

  if (*tr) {
    TranscribeOptions o;
    o.language = tr_language;
    if (tr_task == "transcribe") o.task = Task::transcribe;
    else if (tr_task == "translate") o.task = Task::translate;
    else return fail("--task must be transcribe or translate");
    o.timestamps = !tr_no_ts;
    o.initial_prompt = tr_prompt;
    o.condition_on_previous_text = !tr_no_context;
    std::vector<std::string> formats = split_list(tr_formats);
    if (formats.empty() && !tr_out.empty()) formats = {"txt"};
    for (const auto& f : formats)
      if (std::find(output_format_names().begin(), output_format_names().end(), f) == output_format_names().end())
        return fail("unknown format '" + f + "' (txt, srt, vtt, json)");
    if (!formats.empty() && tr_out.empty()) return fail("--format needs -o PATH");
    auto audio = load_audio_16k(tr_file);
    if (!audio) return fail(audio.message());
    auto engine = load_engine(tr_model, tr_threads, tr_compute, tr_verbose);
    if (!engine) return fail(engine.message());
    Transcriber t(engine->model, *engine->backend);
    const bool show_progress = audio->size() > static_cast<size_t>(kNSamplesPerWindow);
    if (show_progress)
      o.on_progress = [](double done, double total) {
        std::fprintf(stderr, "amanuensis: progress %5.1f%% (%.1f / %.1f s)\n", 100.0 * done / total, done, total);
      };
    auto result = t.transcribe(*audio, o);
    if (!result) return fail(result.message());
    for (const Segment& s : result->segments)
      std::printf("[%s --> %s] %s\n", format_timestamp(s.start, '.').c_str(), format_timestamp(s.end, '.').c_str(),
                  s.text.c_str());
    for (const auto& f : formats) {
      auto text = format_transcript(*result, f);
      if (!text) return fail(text.message());
      if (Status s = write_text(tr_out + "." + f, *text); !s) return fail(s.message());
    }
    return 0;
  }
  return 0;
}
