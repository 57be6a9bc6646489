#include "model/test_model.h"

#include <cmath>
#include <vector>

#include "audio/mel.h"
#include "core/splitmix64.h"
#include "model/ggml_file.h"

namespace ama {

namespace {

// splitmix64: tiny, fast, and identical on every platform (unlike
// std::normal_distribution, whose algorithm is implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t next() { return g_.next(); }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  // Box-Muller; both outputs used.
  double normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = 2.0 * M_PI * uniform();
    spare_ = r * std::sin(t);
    have_spare_ = true;
    return r * std::cos(t);
  }

 private:
  SplitMix64 g_;
  double spare_ = 0;
  bool have_spare_ = false;
};

uint64_t hash_name(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

void sinusoids(int length, int channels, float* out) {
  const int half = channels / 2;
  const double inc = std::log(10000.0) / (half - 1);
  for (int t = 0; t < length; ++t)
    for (int i = 0; i < half; ++i) {
      const double a = t * std::exp(-inc * i);
      out[static_cast<size_t>(t) * channels + i] = static_cast<float>(std::sin(a));
      out[static_cast<size_t>(t) * channels + half + i] = static_cast<float>(std::cos(a));
    }
}

}  // namespace

bool whisper_quantizes(const std::string& name, const std::vector<int>& shape) {
  return shape.size() == 2 && name != "encoder.conv1.bias" && name != "encoder.conv2.bias" &&
         name != "encoder.positional_embedding" && name != "decoder.positional_embedding";
}

namespace {
// The quantized ftype of `quant`, after checking that every tensor it will
// quantize has whole blocks per row (whisper.cpp's quantize would assert;
// tiny's 384 is not a multiple of the k-quants' 256, for example).
Result<int32_t> quant_ftype(GgmlType quant, const std::vector<TensorSpec>& tensors) {
  const auto info = ggml_type_info(static_cast<int32_t>(quant));
  if (!info || !ggml_is_quantized(quant))
    return make_error("cannot quantize to " + ggml_type_name(static_cast<int32_t>(quant)) + " (quantized types: " +
                      ggml_quant_type_list() + ")");
  for (const TensorSpec& t : tensors)
    if (whisper_quantizes(t.name, t.shape) && t.shape.back() % info->block != 0)
      return make_error(std::string(info->name) + " needs rows that are a multiple of " +
                        std::to_string(info->block) + " elements, but tensor '" + t.name + "' has rows of " +
                        std::to_string(t.shape.back()));
  return kGgmlQntVersion * kGgmlQntVersionFactor + info->ftype;
}
}  // namespace

Status write_test_model(const TestModelOptions& o) {
  AMA_TRY(validate_hparams(o.hp));
  if (o.hp.ftype != 0 && o.hp.ftype != 1) return make_error("test models are f32 (ftype 0) or f16 (ftype 1)");
  int32_t file_ftype = o.hp.ftype;
  if (o.quant) {
    auto f = quant_ftype(*o.quant, expected_tensors(o.hp));
    if (!f) return f.error();
    file_ftype = *f;
  }
  if (o.hp.n_audio_state % 2 != 0) return make_error("n_audio_state must be even for the sinusoidal embedding");
  auto reader = GgmlReader::open(o.vocab_source);
  if (!reader) return reader.error();
  auto src = reader->read_header();
  if (!src) return src.error();

  GgmlHeader h;
  h.hp = o.hp;
  h.hp.ftype = file_ftype;
  h.n_filter_bins = src->n_filter_bins;
  h.mel_filters = src->mel_filters;
  // A source with other filters (large-v3's 128 from a base vocabulary):
  // compute Whisper's filterbank for the model's n_mels instead.
  if (src->hp.n_mels != o.hp.n_mels) {
    if (o.hp.n_mels != 80 && o.hp.n_mels != 128)
      return make_error(o.vocab_source + " has " + std::to_string(src->hp.n_mels) + " mel filters and n_mels " +
                        std::to_string(o.hp.n_mels) + " is not one of Whisper's filterbanks (80, 128)");
    h.mel_filters = slaney_mel_filters(o.hp.n_mels);
  }
  h.vocab = src->vocab;
  const bool src_multi = src->hp.n_vocab >= 51865, dst_multi = o.hp.n_vocab >= 51865;
  if (src_multi != dst_multi)
    return make_error(o.vocab_source + " holds " + (src_multi ? "a multilingual" : "an English-only") +
                      " vocabulary, but n_vocab " + std::to_string(o.hp.n_vocab) + " needs " +
                      (dst_multi ? "a multilingual" : "an English-only") + " one");

  auto writer = GgmlWriter::create(o.output);
  if (!writer) return writer.error();
  AMA_TRY(writer->write_header(h));
  std::vector<float> data;
  for (const TensorSpec& t : expected_tensors(o.hp)) {
    size_t n = 1;
    for (int d : t.shape) n *= static_cast<size_t>(d);
    data.resize(n);
    Rng rng(hash_name(t.name, o.seed));
    const bool is_norm = t.name.find("_ln.") != std::string::npos || t.name.find("ln_post.") != std::string::npos ||
                         t.name.rfind("decoder.ln.", 0) == 0;
    const bool is_gain = is_norm && t.name.ends_with(".weight");
    GgmlType type = GgmlType::f32;
    if (t.name == "encoder.positional_embedding") {
      sinusoids(t.shape[0], t.shape[1], data.data());
    } else if (t.kind == TensorKind::positional || t.name == "decoder.token_embedding.weight") {
      for (auto& v : data) v = static_cast<float>(0.5 * rng.normal());
      if (t.kind == TensorKind::matrix && o.hp.ftype == 1) type = GgmlType::f16;
    } else if (t.kind == TensorKind::matrix) {
      size_t fan_in = n / static_cast<size_t>(t.shape[0]);
      const double sd = 1.0 / std::sqrt(static_cast<double>(fan_in));
      for (auto& v : data) v = static_cast<float>(sd * rng.normal());
      if (o.hp.ftype == 1) type = GgmlType::f16;
    } else {
      for (auto& v : data) v = static_cast<float>((is_gain ? 1.0 : 0.0) + 0.1 * rng.normal());
    }
    if (o.quant && whisper_quantizes(t.name, t.shape)) type = *o.quant;
    AMA_TRY(writer->write_tensor(t.name, t.shape, type, data.data()));
  }
  return writer->close();
}

Status convert_ggml_model(const std::string& src, const std::string& dst, std::optional<GgmlType> quant) {
  auto reader = GgmlReader::open(src);
  if (!reader) return reader.error();
  auto header = reader->read_header();
  if (!header) return header.error();
  GgmlHeader h = std::move(*header);
  if (quant) {
    auto f = quant_ftype(*quant, expected_tensors(h.hp));
    if (!f) return f.error();
    h.hp.ftype = *f;
  } else {
    h.hp.ftype = 0;
  }
  auto writer = GgmlWriter::create(dst);
  if (!writer) return writer.error();
  AMA_TRY(writer->write_header(h));
  std::vector<float> data;
  for (;;) {
    auto rec = reader->next_tensor();
    if (!rec) return rec.error();
    if (rec->name.empty()) break;
    data.resize(rec->n_elements);
    AMA_TRY(reader->read_tensor_data(*rec, data.data()));
    GgmlType type = GgmlType::f32;
    if (quant && whisper_quantizes(rec->name, rec->shape)) {
      type = *quant;
    } else if (quant && rec->type == static_cast<int32_t>(GgmlType::f16)) {
      type = GgmlType::f16;  // what quantize leaves alone keeps its type
    }
    AMA_TRY(writer->write_tensor(rec->name, rec->shape, type, data.data()));
  }
  return writer->close();
}

}  // namespace ama
