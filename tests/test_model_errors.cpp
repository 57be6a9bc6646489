// Every bad model input must fail with one clear message that names the file
// and the problem, never crash: through ama::load_model and through the CLI.
//
// The bad files are made from a small valid custom model (64 state, 2 heads,
// one layer each) by patching bytes, cutting the file, or writing the tensor
// list with GgmlWriter directly.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/ggml_file.h"
#include "model/hparams.h"
#include "model/test_model.h"
#include "model/whisper_model.h"
#include "test_util.h"

#ifndef AMA_CLI_PATH
#define AMA_CLI_PATH "amanuensis"
#endif

namespace ama {
namespace {

const std::string kVocab = AMA_SHARED_DIR "/models/whisper-vocab/for-tests-ggml-base.bin";
const std::string kVocabEn = AMA_SHARED_DIR "/models/whisper-vocab/for-tests-ggml-base.en.bin";
const std::string kMicro = AMA_SHARED_DIR "/oracle/micro/model.bin";
const std::string kJfk = AMA_SHARED_DIR "/audio/jfk.wav";

// Byte offsets of the hparams in a ggml file (after the 4-byte magic).
enum HpOffset : size_t {
  kOffVocab = 4,
  kOffAudioCtx = 8,
  kOffAudioState = 12,
  kOffAudioHead = 16,
  kOffAudioLayer = 20,
  kOffTextCtx = 24,
  kOffTextState = 28,
  kOffTextHead = 32,
  kOffTextLayer = 36,
  kOffMels = 40,
  kOffFtype = 44,
  kOffFilterMels = 48,
  kOffFilterBins = 52,
};

const test::ProcessTempDir kTmp("ama_model_errors");  // removed when the tests end
std::string tmp(const std::string& name) { return kTmp.file(name); }

HParams small_hp(int state = 64, int heads = 2, int enc_layers = 1, int dec_layers = 1, int text_ctx = 64) {
  HParams hp;
  hp.n_vocab = 51865;
  hp.n_audio_ctx = 1500;
  hp.n_audio_state = state;
  hp.n_audio_head = heads;
  hp.n_audio_layer = enc_layers;
  hp.n_text_ctx = text_ctx;
  hp.n_text_state = state;
  hp.n_text_head = heads;
  hp.n_text_layer = dec_layers;
  hp.n_mels = 80;
  hp.ftype = 1;
  return hp;
}

const Backend& backend() {
  static const std::unique_ptr<Backend> b = [] {
    CpuBackendOptions o;
    o.n_threads = 2;
    auto r = make_cpu_backend(o);
    if (!r) {
      ADD_FAILURE() << r.message();
      std::abort();
    }
    return std::move(r.value());
  }();
  return *b;
}

Result<std::shared_ptr<const WhisperModel>> load(const std::string& path) { return load_model(path, backend()); }

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const char* data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data, static_cast<std::streamsize>(n));
  ASSERT_TRUE(f.good()) << path;
}
void write_file(const std::string& path, const std::vector<char>& b) { write_file(path, b.data(), b.size()); }
void write_file(const std::string& path, const std::string& s) { write_file(path, s.data(), s.size()); }

int32_t get_i32(const std::vector<char>& b, size_t off) {
  int32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}
void put_i32(std::vector<char>& b, size_t off, int32_t v) { std::memcpy(b.data() + off, &v, 4); }
void append_i32(std::vector<char>& b, int32_t v) {
  char c[4];
  std::memcpy(c, &v, 4);
  b.insert(b.end(), c, c + 4);
}

// The valid small model, written once per process.
const std::string& base_model() {
  static const std::string path = [] {
    std::string p = tmp("base.bin");
    TestModelOptions o;
    o.hp = small_hp();
    o.vocab_source = kVocab;
    o.output = p;
    Status s = write_test_model(o);
    if (!s) ADD_FAILURE() << s.message();
    return p;
  }();
  return path;
}
const std::vector<char>& base_bytes() {
  static const std::vector<char> b = read_file(base_model());
  return b;
}

// Where things are in a valid ggml file.
struct RecordPos {
  std::string name;
  int32_t type = 0;
  size_t start = 0, dims = 0, name_at = 0, data = 0, end = 0;
};
struct Layout {
  size_t vocab_at = 0;  // the int32 token count
  size_t tensors_at = 0;
  std::vector<RecordPos> records;
  const RecordPos& at(const std::string& name) const {
    for (const auto& r : records)
      if (r.name == name) return r;
    ADD_FAILURE() << "no tensor " << name;
    return records.front();
  }
};

Layout scan(const std::vector<char>& b) {
  Layout l;
  size_t o = kOffFilterMels;
  const size_t n_filters = static_cast<size_t>(get_i32(b, o)) * static_cast<size_t>(get_i32(b, o + 4));
  o += 8 + n_filters * 4;
  l.vocab_at = o;
  const int n_tokens = get_i32(b, o);
  o += 4;
  for (int i = 0; i < n_tokens; ++i) o += 4 + static_cast<uint32_t>(get_i32(b, o));
  l.tensors_at = o;
  while (o < b.size()) {
    RecordPos r;
    r.start = o;
    const int n_dims = get_i32(b, o), name_len = get_i32(b, o + 4);
    r.type = get_i32(b, o + 8);
    r.dims = o + 12;
    size_t n = 1;
    for (int d = 0; d < n_dims; ++d) n *= static_cast<size_t>(get_i32(b, r.dims + 4 * d));
    r.name_at = r.dims + 4 * static_cast<size_t>(n_dims);
    r.name.assign(b.data() + r.name_at, static_cast<size_t>(name_len));
    r.data = r.name_at + static_cast<size_t>(name_len);
    r.end = r.data + n * (r.type == 0 ? 4 : 2);
    o = r.end;
    l.records.push_back(r);
  }
  return l;
}

const Layout& base_layout() {
  static const Layout l = scan(base_bytes());
  return l;
}

// The vocabulary file's header (mel filters and tokens), read once.
const GgmlHeader& vocab_header() {
  static const GgmlHeader h = [] {
    auto r = GgmlReader::open(kVocab);
    if (!r) {
      ADD_FAILURE() << r.message();
      return GgmlHeader{};
    }
    auto hd = r->read_header();
    if (!hd) {
      ADD_FAILURE() << hd.message();
      return GgmlHeader{};
    }
    return std::move(hd.value());
  }();
  return h;
}

struct TensorOut {
  std::string name;
  std::vector<int> shape;
  GgmlType type = GgmlType::f32;
};

std::vector<TensorOut> tensor_list(const HParams& hp) {
  std::vector<TensorOut> out;
  for (const auto& t : expected_tensors(hp))
    out.push_back({t.name, t.shape, t.kind == TensorKind::matrix && hp.ftype == 1 ? GgmlType::f16 : GgmlType::f32});
  return out;
}

std::vector<TensorOut>::iterator find_tensor(std::vector<TensorOut>& ts, const std::string& name) {
  auto it = std::find_if(ts.begin(), ts.end(), [&](const TensorOut& t) { return t.name == name; });
  EXPECT_NE(it, ts.end()) << name;
  return it;
}

// Writes a model with the vocabulary file's filters and tokens, hparams hp,
// and exactly the given tensors (zero data).
void write_model(const std::string& path, const HParams& hp, const std::vector<TensorOut>& tensors) {
  GgmlHeader h = vocab_header();
  h.hp = hp;
  auto w = GgmlWriter::create(path);
  ASSERT_TRUE(w.ok()) << w.message();
  ASSERT_TRUE(w->write_header(h).ok());
  std::vector<float> zeros;
  for (const auto& t : tensors) {
    size_t n = 1;
    for (int d : t.shape) n *= static_cast<size_t>(d);
    if (zeros.size() < n) zeros.resize(n, 0.0f);
    Status s = w->write_tensor(t.name, t.shape, t.type, zeros.data());
    ASSERT_TRUE(s.ok()) << s.message();
  }
  ASSERT_TRUE(w->close().ok());
}

// load_model(path) must fail with a message naming the file and containing
// every phrase.
::testing::AssertionResult LoadFails(const std::string& path, std::initializer_list<std::string> phrases) {
  auto r = load(path);
  if (r.ok()) return ::testing::AssertionFailure() << path << " loaded, but should have failed";
  const std::string& m = r.message();
  if (m.find(path) == std::string::npos)
    return ::testing::AssertionFailure() << "message does not name the file " << path << ": " << m;
  for (const auto& p : phrases)
    if (m.find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks \"" << p << "\": " << m;
  return ::testing::AssertionSuccess() << m;
}

// Writes the base model with one int32 patched and expects a failure.
::testing::AssertionResult PatchedFails(const std::string& tag, size_t off, int32_t value,
                                        std::initializer_list<std::string> phrases) {
  std::vector<char> b = base_bytes();
  put_i32(b, off, value);
  const std::string p = tmp(tag + ".bin");
  write_file(p, b);
  return LoadFails(p, phrases);
}

// ---------------------------------------------------------------------------
// Positive controls

TEST(ModelErrors, ValidSmallModelLoads) {
  auto m = load(base_model());
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ((*m)->hp, small_hp());
  EXPECT_EQ((*m)->path, base_model());
  EXPECT_EQ((*m)->encoder.size(), 1u);
  EXPECT_EQ((*m)->decoder.size(), 1u);
  EXPECT_EQ((*m)->mel_filters.size(), 80u * 201u);
  ASSERT_TRUE((*m)->logits.w);  // the token embedding, packed [51865][64]; also its lookup (whisper_model.h)
  EXPECT_EQ((*m)->logits.w->n_out, 51865);
  EXPECT_EQ((*m)->logits.w->n_in, 64);
  EXPECT_EQ((*m)->decoder_pos.size(), 64u * 64u);
  EXPECT_EQ((*m)->encoder_pos.size(), 1500u * 64u);
  EXPECT_EQ((*m)->tokenizer.n_vocab(), 51865);
  EXPECT_EQ(arch_name((*m)->hp), "custom");
  // The layout scanner agrees with expected_tensors.
  const auto specs = expected_tensors(small_hp());
  ASSERT_EQ(base_layout().records.size(), specs.size());
  EXPECT_EQ(base_layout().records.back().end, base_bytes().size());
}

TEST(ModelErrors, OracleMicroModelLoads) {
  auto m = load(kMicro);
  ASSERT_TRUE(m.ok()) << m.message();
  const HParams& hp = (*m)->hp;
  EXPECT_EQ(hp.n_audio_state, 128);
  EXPECT_EQ(hp.n_text_state, 128);
  EXPECT_EQ(hp.n_audio_head, 2);
  EXPECT_EQ(hp.n_audio_layer, 2);
  EXPECT_EQ(hp.n_text_layer, 2);
  EXPECT_EQ(hp.n_text_ctx, 448);
  EXPECT_EQ(hp.n_vocab, 51865);
}

TEST(ModelErrors, CustomDimModelsLoad) {
  struct Case {
    const char* tag;
    HParams hp;
    std::string vocab;
  };
  HParams f32 = small_hp();
  f32.ftype = 0;
  HParams en = small_hp(32, 4, 1, 1, 448);
  en.n_vocab = 51864;
  const Case cases[] = {
      {"c32x4", small_hp(32, 4, 2, 1, 448), kVocab},
      {"c96x3", small_hp(96, 3, 1, 2, 64), kVocab},
      {"c16x1", small_hp(16, 1, 1, 1, 4), kVocab},
      {"f32", f32, kVocab},
      {"english", en, kVocabEn},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.tag);
    const std::string p = tmp(std::string("custom_") + c.tag + ".bin");
    TestModelOptions o;
    o.hp = c.hp;
    o.vocab_source = c.vocab;
    o.output = p;
    Status s = write_test_model(o);
    ASSERT_TRUE(s.ok()) << s.message();
    auto m = load(p);
    ASSERT_TRUE(m.ok()) << m.message();
    EXPECT_EQ((*m)->hp, c.hp);
    EXPECT_EQ(static_cast<int>((*m)->encoder.size()), c.hp.n_audio_layer);
    EXPECT_EQ(static_cast<int>((*m)->decoder.size()), c.hp.n_text_layer);
    EXPECT_EQ((*m)->tokenizer.n_vocab(), c.hp.n_vocab);
  }
}

TEST(ModelErrors, CustomModelWith128MelsAnd51866TokensLoads) {
  // A large-v3-like vocabulary and filterbank at a tiny width: the vocabulary
  // source is a header-only file with 128 (made-up) filters.
  GgmlHeader h = vocab_header();
  h.hp.n_mels = 128;
  h.mel_filters.assign(128u * 201u, 0.01f);
  const std::string vocab = tmp("vocab128.bin");
  {
    auto w = GgmlWriter::create(vocab);
    ASSERT_TRUE(w.ok()) << w.message();
    ASSERT_TRUE(w->write_header(h).ok());
    ASSERT_TRUE(w->close().ok());
  }
  // The header-only file itself is not a model.
  EXPECT_TRUE(LoadFails(vocab, {"missing tensor"}));

  HParams hp = small_hp();
  hp.n_mels = 128;
  hp.n_vocab = 51866;
  TestModelOptions o;
  o.hp = hp;
  o.vocab_source = vocab;
  o.output = tmp("mels128.bin");
  Status s = write_test_model(o);
  ASSERT_TRUE(s.ok()) << s.message();
  auto m = load(o.output);
  ASSERT_TRUE(m.ok()) << m.message();
  EXPECT_EQ((*m)->hp, hp);
  EXPECT_EQ((*m)->mel_filters.size(), 128u * 201u);
}

TEST(ModelErrors, OneDimensionalConvBiasIsAccepted) {
  // whisper.cpp may store the conv biases as [n] instead of [n, 1].
  auto ts = tensor_list(small_hp());
  find_tensor(ts, "encoder.conv1.bias")->shape = {64};
  find_tensor(ts, "encoder.conv2.bias")->shape = {64};
  const std::string p = tmp("conv_bias_1d.bin");
  write_model(p, small_hp(), ts);
  auto m = load(p);
  EXPECT_TRUE(m.ok()) << m.message();
}

TEST(ModelErrors, ZeroWeightModelWrittenByGgmlWriterLoads) {
  // Control for the GgmlWriter-made bad files below.
  const std::string p = tmp("zeros.bin");
  write_model(p, small_hp(), tensor_list(small_hp()));
  auto m = load(p);
  EXPECT_TRUE(m.ok()) << m.message();
}

// ---------------------------------------------------------------------------
// Tensor list

TEST(ModelErrors, MissingTensor) {
  for (const std::string name : {"decoder.blocks.0.mlp.2.bias", "encoder.positional_embedding",
                                 "decoder.token_embedding.weight", "decoder.ln.bias", "encoder.conv1.weight"}) {
    SCOPED_TRACE(name);
    auto ts = tensor_list(small_hp());
    ts.erase(find_tensor(ts, name));
    const std::string p = tmp("missing.bin");
    write_model(p, small_hp(), ts);
    EXPECT_TRUE(LoadFails(p, {"missing tensor '" + name + "'"}));
  }
}

TEST(ModelErrors, MissingLayerWhenHparamsClaimMoreLayers) {
  EXPECT_TRUE(PatchedFails("more_enc_layers", kOffAudioLayer, 2, {"missing tensor 'encoder.blocks.1."}));
  EXPECT_TRUE(PatchedFails("more_dec_layers", kOffTextLayer, 3, {"missing tensor 'decoder.blocks."}));
}

TEST(ModelErrors, NoTensorsAtAll) {
  const std::string p = tmp("no_tensors.bin");
  write_model(p, small_hp(), {});
  EXPECT_TRUE(LoadFails(p, {"missing tensor"}));
}

TEST(ModelErrors, UnexpectedTensor) {
  struct Case {
    std::string name;
    std::vector<int> shape;
  };
  const Case cases[] = {
      {"encoder.blocks.0.attn.key.bias", {64}},           // Whisper's keys have no bias
      {"decoder.blocks.1.attn.query.weight", {64, 64}},   // a layer beyond n_text_layer
      {"encoder.blocks.7.mlp_ln.weight", {64}},
      {"model.extra", {1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto ts = tensor_list(small_hp());
    ts.insert(ts.begin() + 7, {c.name, c.shape, GgmlType::f32});
    const std::string p = tmp("extra.bin");
    write_model(p, small_hp(), ts);
    EXPECT_TRUE(LoadFails(p, {"unexpected tensor '" + c.name + "'"}));
  }
  // Fewer layers in hparams than in the file: the extra layer is unexpected.
  const std::string p = tmp("fewer_layers.bin");
  write_model(p, small_hp(), tensor_list(small_hp(64, 2, 1, 2)));
  EXPECT_TRUE(LoadFails(p, {"unexpected tensor 'decoder.blocks.1.", "1 encoder and 1 decoder layers"}));
}

TEST(ModelErrors, DuplicatedTensor) {
  for (const std::string name : {"encoder.ln_post.weight", "decoder.blocks.0.cross_attn.value.weight"}) {
    SCOPED_TRACE(name);
    auto ts = tensor_list(small_hp());
    TensorOut copy = *find_tensor(ts, name);
    ts.push_back(copy);
    const std::string p = tmp("dup.bin");
    write_model(p, small_hp(), ts);
    EXPECT_TRUE(LoadFails(p, {"tensor '" + name + "' appears twice"}));
  }
}

TEST(ModelErrors, MisShapedTensor) {
  struct Case {
    std::string name;
    std::vector<int> shape;
    std::string phrase;
  };
  const Case cases[] = {
      {"encoder.blocks.0.mlp.0.weight", {64, 256}, "has shape [64, 256], expected [256, 64]"},
      {"decoder.token_embedding.weight", {51864, 64}, "has shape [51864, 64], expected [51865, 64]"},
      {"encoder.positional_embedding", {1499, 64}, "expected [1500, 64]"},
      {"decoder.positional_embedding", {448, 64}, "has shape [448, 64], expected [64, 64]"},
      {"encoder.conv1.weight", {64, 80}, "has shape [64, 80], expected [64, 80, 3]"},
      {"encoder.conv1.bias", {64, 2}, "expected [64, 1]"},
      {"decoder.ln.weight", {65}, "has shape [65], expected [64]"},
      {"decoder.ln.bias", {1, 64}, "has shape [1, 64], expected [64]"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto ts = tensor_list(small_hp());
    find_tensor(ts, c.name)->shape = c.shape;
    const std::string p = tmp("shape.bin");
    write_model(p, small_hp(), ts);
    EXPECT_TRUE(LoadFails(p, {"tensor '" + c.name + "'", c.phrase}));
  }
}

TEST(ModelErrors, BadTensorRecordHeader) {
  const Layout& l = base_layout();
  const RecordPos& r = l.at("encoder.conv2.weight");
  EXPECT_TRUE(PatchedFails("ndims0", r.start, 0, {"0 dimensions (expected 1 to 4)"}));
  EXPECT_TRUE(PatchedFails("ndims5", r.start, 5, {"5 dimensions (expected 1 to 4)"}));
  EXPECT_TRUE(PatchedFails("ndims_neg", r.start, -3, {"-3 dimensions"}));
  EXPECT_TRUE(PatchedFails("namelen0", r.start + 4, 0, {"name of length 0"}));
  EXPECT_TRUE(PatchedFails("namelen_huge", r.start + 4, 1 << 30, {"name of length"}));
  EXPECT_TRUE(PatchedFails("namelen_neg", r.start + 4, -1, {"name of length -1"}));
  EXPECT_TRUE(PatchedFails("dim0", r.dims, 0, {"encoder.conv2.weight", "absurd dimension 0"}));
  EXPECT_TRUE(PatchedFails("dim_neg", r.dims + 4, -64, {"encoder.conv2.weight", "absurd dimension -64"}));
  EXPECT_TRUE(PatchedFails("dim_huge", r.dims + 8, INT32_MAX, {"absurd dimension"}));
  // A valid-looking but wrong dimension is a shape error.
  EXPECT_TRUE(PatchedFails("dim_wrong", r.dims + 8, 65, {"encoder.conv2.weight", "has shape"}));
}

TEST(ModelErrors, QuantizedTensorType) {
  // Quantized tensors load (tests/test_ggml_quants.cpp), but only of the type
  // the header's ftype names, as whisper.cpp requires; unknown ids never.
  EXPECT_EQ(ggml_type_name(8), "q8_0");
  EXPECT_EQ(ggml_type_name(2), "q4_0");
  const RecordPos& r = base_layout().at("encoder.blocks.0.attn.query.weight");
  ASSERT_EQ(r.type, 1);
  EXPECT_TRUE(PatchedFails("q8_0", r.start + 8, 8,
                           {"tensor 'encoder.blocks.0.attn.query.weight'", "is q8_0", "ftype 1 says an unquantized model"}));
  EXPECT_TRUE(PatchedFails("q4_0", r.start + 8, 2, {"is q4_0", "unquantized"}));
  EXPECT_TRUE(PatchedFails("q6_k", r.start + 8, 14, {"is q6_k", "unquantized"}));
  EXPECT_TRUE(PatchedFails("q8_1", r.start + 8, 9, {"type q8_1", "activations"}));
  EXPECT_TRUE(PatchedFails("type99", r.start + 8, 99, {"unknown type id 99"}));
  EXPECT_TRUE(PatchedFails("type_neg", r.start + 8, -1, {"unknown type id -1"}));
  // Same through GgmlWriter: a 1-D tensor declared as q8_0 in an f16 model...
  auto ts = tensor_list(small_hp());
  find_tensor(ts, "decoder.ln.weight")->type = GgmlType::q8_0;
  const std::string p = tmp("q8_writer.bin");
  write_model(p, small_hp(), ts);
  EXPECT_TRUE(LoadFails(p, {"tensor 'decoder.ln.weight'", "is q8_0", "unquantized"}));
  // ...loads in a q8_0 model (ftype 2007): each tensor carries its own type.
  HParams q8 = small_hp();
  q8.ftype = 2007;
  const std::string p2 = tmp("q8_writer_ok.bin");
  write_model(p2, q8, ts);
  auto m = load(p2);
  EXPECT_TRUE(m.ok()) << m.message();
}

TEST(ModelErrors, QuantizedFtype) {
  // whisper.cpp's quantize tool writes ftype = GGML_QNT_VERSION (2) * 1000 +
  // ggml_ftype; versions 0 and 1 had other block layouts.
  EXPECT_TRUE(PatchedFails("ftype7", kOffFtype, 7, {"ftype 7", "q8_0 model with ggml quantization version 0", "re-quantize"}));
  EXPECT_TRUE(PatchedFails("ftype2", kOffFtype, 2, {"ftype 2", "quantization version 0"}));
  EXPECT_TRUE(PatchedFails("ftype1007", kOffFtype, 1007, {"ftype 1007", "quantization version 1"}));
  EXPECT_TRUE(PatchedFails("ftype3007", kOffFtype, 3007, {"ftype 3007", "newer"}));
  EXPECT_TRUE(PatchedFails("ftype1001", kOffFtype, 1001, {"ftype 1001", "not a known model type"}));
  EXPECT_TRUE(PatchedFails("ftype2004", kOffFtype, 2004, {"ftype 2004", "not a model type we read"}));
  EXPECT_TRUE(PatchedFails("ftype2099", kOffFtype, 2099, {"ftype 2099", "not a model type we read"}));
  EXPECT_TRUE(PatchedFails("ftype_neg", kOffFtype, -1, {"hparam ftype = -1"}));
  // ftype 0, or a quantized ftype, with f16 tensors inside is fine: each
  // tensor carries its own type (whisper.cpp's quantize leaves some alone).
  for (int32_t ftype : {0, 2007, 2012}) {
    std::vector<char> b = base_bytes();
    put_i32(b, kOffFtype, ftype);
    const std::string p = tmp("ftype" + std::to_string(ftype) + "_f16.bin");
    write_file(p, b);
    auto m = load(p);
    EXPECT_TRUE(m.ok()) << ftype << ": " << m.message();
  }
}

// ---------------------------------------------------------------------------
// Truncation

TEST(ModelErrors, TruncatedAtManyOffsets) {
  const std::vector<char>& b = base_bytes();
  const Layout& l = base_layout();
  const auto& rs = l.records;
  ASSERT_GE(rs.size(), 10u);
  const RecordPos& emb = l.at("decoder.token_embedding.weight");
  std::vector<size_t> offsets = {
      1, 3,                                        // magic
      4, 10, 47,                                   // hparams
      48, 50, 52, 55,                              // filter count and bins
      56, 1000, l.vocab_at - 1,                    // filter data
      l.vocab_at, l.vocab_at + 2,                  // token count
      l.vocab_at + 4, l.vocab_at + 6,              // first token length
      l.vocab_at + 9,                              // first token bytes
      (l.vocab_at + l.tensors_at) / 2,             // middle of the vocabulary
      l.tensors_at - 1,                            // last token byte
      l.tensors_at,                                // no tensors at all
      l.tensors_at + 5, rs[0].dims + 1,            // first record header and dims
      rs[0].name_at + 3,                           // inside its name
      rs[0].data, rs[0].data + 1,                  // no data / one byte of data
      (rs[0].data + rs[0].end) / 2,                // inside the data
      rs[0].end - 1,
      rs[1].start,                                 // clean boundary between records
      rs[3].start + 2, rs[3].data + 7,
      emb.start + 11, emb.data + 1, (emb.data + emb.end) / 2, emb.end - 2, emb.end,
      rs[rs.size() / 2].name_at + 1,
      rs.back().start, rs.back().start + 1, rs.back().data + 1,
      b.size() - 1,
  };
  // Plus deterministic pseudo-random offsets over the whole file.
  uint64_t x = 12345;
  for (int i = 0; i < 20; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    offsets.push_back(1 + (x >> 33) % (b.size() - 1));
  }
  // Whole-record boundaries end the tensor list cleanly: the rest is missing.
  auto at_boundary = [&](size_t off) {
    if (off == l.tensors_at) return true;
    for (const auto& r : rs)
      if (off == r.start) return true;
    return false;
  };
  const std::string p = tmp("truncated.bin");
  for (size_t off : offsets) {
    ASSERT_GT(off, 0u);
    ASSERT_LT(off, b.size());
    SCOPED_TRACE("truncated to " + std::to_string(off) + " of " + std::to_string(b.size()) + " bytes");
    write_file(p, b.data(), off);
    if (at_boundary(off))
      EXPECT_TRUE(LoadFails(p, {"missing tensor"}));
    else
      EXPECT_TRUE(LoadFails(p, {"truncated file"}));
  }
  // Inside a tensor's data, the message names the tensor.
  write_file(p, b.data(), (emb.data + emb.end) / 2);
  EXPECT_TRUE(LoadFails(p, {"truncated file", "decoder.token_embedding.weight"}));
  write_file(p, b.data(), l.vocab_at + 9);
  EXPECT_TRUE(LoadFails(p, {"truncated file", "token"}));
  write_file(p, b.data(), 1000);
  EXPECT_TRUE(LoadFails(p, {"truncated file", "mel filters"}));
}

TEST(ModelErrors, TrailingGarbage) {
  std::vector<char> b = base_bytes();
  for (const int extra : {1, 5, 11, 12, 40}) {
    SCOPED_TRACE(extra);
    std::vector<char> c = b;
    c.insert(c.end(), static_cast<size_t>(extra), '\x07');
    const std::string p = tmp("trailing.bin");
    write_file(p, c);
    auto r = load(p);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.message().find(p), std::string::npos) << r.message();
  }
}

// ---------------------------------------------------------------------------
// Header

TEST(ModelErrors, EmptyFile) {
  const std::string p = tmp("empty.bin");
  write_file(p, std::string());
  EXPECT_TRUE(LoadFails(p, {"truncated file", "magic"}));
}

TEST(ModelErrors, BadMagic) {
  std::vector<char> b = base_bytes();
  std::memcpy(b.data(), "abcd", 4);
  const std::string p = tmp("badmagic.bin");
  write_file(p, b);
  EXPECT_TRUE(LoadFails(p, {"bad magic 0x64636261", "expected 0x67676d6c"}));
  // Byte-swapped magic (big-endian writer).
  b = base_bytes();
  std::swap(b[0], b[3]);
  std::swap(b[1], b[2]);
  write_file(p, b);
  EXPECT_TRUE(LoadFails(p, {"bad magic"}));
  // A text file.
  write_file(p, std::string("hello, this is not a model\n"));
  EXPECT_TRUE(LoadFails(p, {"bad magic"}));
}

TEST(ModelErrors, GgufFileMentionsGguf) {
  std::vector<char> b = {'G', 'G', 'U', 'F'};
  append_i32(b, 3);  // version
  for (int i = 0; i < 8; ++i) append_i32(b, 0);
  const std::string p = tmp("model.gguf");
  write_file(p, b);
  EXPECT_TRUE(LoadFails(p, {"GGUF", "bad magic"}));
  // A GGUF file of just four bytes, too.
  write_file(p, std::string("GGUF"));
  EXPECT_TRUE(LoadFails(p, {"GGUF"}));
}

TEST(ModelErrors, AbsurdHparams) {
  struct Case {
    const char* tag;
    size_t off;
    int32_t value;
    std::string phrase;
  };
  const Case cases[] = {
      {"vocab_neg", kOffVocab, -1, "n_vocab = -1"},
      {"vocab_zero", kOffVocab, 0, "n_vocab = 0"},
      {"vocab_small", kOffVocab, 1000, "n_vocab = 1000"},
      {"vocab_huge", kOffVocab, 1 << 30, "n_vocab = 1073741824"},
      {"vocab_max", kOffVocab, INT32_MAX, "n_vocab"},
      {"vocab_min", kOffVocab, INT32_MIN, "n_vocab"},
      {"audio_ctx_1000", kOffAudioCtx, 1000, "exactly 1500"},
      {"audio_ctx_3000", kOffAudioCtx, 3000, "exactly 1500"},
      {"audio_ctx_zero", kOffAudioCtx, 0, "n_audio_ctx = 0"},
      {"audio_state_zero", kOffAudioState, 0, "n_audio_state = 0"},
      {"audio_state_neg", kOffAudioState, -64, "n_audio_state = -64"},
      {"audio_state_huge", kOffAudioState, 1 << 24, "n_audio_state"},
      {"audio_state_other", kOffAudioState, 128, "differs from n_text_state"},
      {"audio_head_zero", kOffAudioHead, 0, "n_audio_head = 0"},
      {"audio_head_3", kOffAudioHead, 3, "n_audio_state 64 is not divisible by n_audio_head 3"},
      {"audio_head_neg", kOffAudioHead, -2, "n_audio_head = -2"},
      {"audio_layer_zero", kOffAudioLayer, 0, "n_audio_layer = 0"},
      {"audio_layer_huge", kOffAudioLayer, 100000, "n_audio_layer = 100000"},
      {"text_ctx_zero", kOffTextCtx, 0, "n_text_ctx = 0"},
      {"text_ctx_neg", kOffTextCtx, -448, "n_text_ctx = -448"},
      {"text_ctx_huge", kOffTextCtx, 1 << 28, "n_text_ctx"},
      {"text_state_zero", kOffTextState, 0, "n_text_state = 0"},
      {"text_head_zero", kOffTextHead, 0, "n_text_head = 0"},
      {"text_head_3", kOffTextHead, 3, "n_text_state 64 is not divisible by n_text_head 3"},
      {"text_head_128", kOffTextHead, 128, "not divisible by n_text_head 128"},
      {"text_layer_neg", kOffTextLayer, -1, "n_text_layer = -1"},
      {"mels_zero", kOffMels, 0, "n_mels = 0"},
      {"mels_10000", kOffMels, 10000, "n_mels = 10000"},
      {"mels_neg", kOffMels, -80, "n_mels = -80"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.tag);
    EXPECT_TRUE(PatchedFails(c.tag, c.off, c.value, {c.phrase}));
  }
}

TEST(ModelErrors, HparamsValidatedDirectly) {
  EXPECT_TRUE(validate_hparams(small_hp()).ok());
  HParams hp = small_hp();
  hp.n_audio_head = 0;  // must not divide by zero
  EXPECT_FALSE(validate_hparams(hp).ok());
  hp = small_hp();
  hp.n_text_head = 0;
  EXPECT_FALSE(validate_hparams(hp).ok());
  hp = small_hp();
  hp.n_audio_state = 96;
  EXPECT_NE(validate_hparams(hp).message().find("differs from n_text_state"), std::string::npos);
  // write_test_model refuses bad hparams instead of writing a bad file.
  TestModelOptions o;
  o.hp = small_hp(64, 3);
  o.vocab_source = kVocab;
  o.output = tmp("never_written.bin");
  Status s = write_test_model(o);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not divisible"), std::string::npos) << s.message();
}

TEST(ModelErrors, HugeValidHparamsWithTinyFileFailsWithoutHugeAllocation) {
  // Within every limit, but the token embedding alone would be 2^34 floats:
  // the loader must notice that the file is far too small before allocating.
  HParams hp = small_hp();
  hp.n_vocab = 1 << 20;
  hp.n_audio_state = hp.n_text_state = 16384;
  hp.n_audio_head = hp.n_text_head = 16;
  hp.n_audio_layer = hp.n_text_layer = 512;
  hp.n_text_ctx = 1 << 16;
  ASSERT_TRUE(validate_hparams(hp).ok()) << validate_hparams(hp).message();
  const std::string p = tmp("huge.bin");
  write_model(p, hp, {});
  std::vector<char> b = read_file(p);
  auto record = [&](const std::string& name, std::vector<int32_t> ne_innermost_first, int32_t type) {
    append_i32(b, static_cast<int32_t>(ne_innermost_first.size()));
    append_i32(b, static_cast<int32_t>(name.size()));
    append_i32(b, type);
    for (int32_t n : ne_innermost_first) append_i32(b, n);
    b.insert(b.end(), name.begin(), name.end());
    for (int i = 0; i < 64; ++i) b.push_back(0);  // a little data, far from enough
  };
  record("decoder.token_embedding.weight", {16384, 1 << 20}, 1);
  write_file(p, b);
  EXPECT_TRUE(LoadFails(p, {"truncated file", "decoder.token_embedding.weight"}));

  // The same with the decoder's positional embedding (f32, 4 GiB).
  b = read_file(p);
  b.resize(b.size() - 64 - (12 + 8 + std::string("decoder.token_embedding.weight").size()));
  record("decoder.positional_embedding", {16384, 1 << 16}, 0);
  write_file(p, b);
  EXPECT_TRUE(LoadFails(p, {"truncated file", "decoder.positional_embedding"}));

  // A tensor whose dimensions multiply past 2^64 must not wrap around.
  b = read_file(p);
  b.resize(b.size() - 64 - (12 + 8 + std::string("decoder.positional_embedding").size()));
  record("x", {1 << 24, 1 << 24, 1 << 24, 1 << 16}, 0);
  write_file(p, b);
  auto r = load(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find(p), std::string::npos) << r.message();
  // Through the reader directly (no shape check to hide behind).
  auto reader = GgmlReader::open(p);
  ASSERT_TRUE(reader.ok()) << reader.message();
  ASSERT_TRUE(reader->read_header().ok());
  auto rec = reader->next_tensor();
  ASSERT_FALSE(rec.ok()) << "tensor 'x' accepted with " << rec->n_elements << " elements";
  EXPECT_NE(rec.message().find(p), std::string::npos) << rec.message();
}

TEST(ModelErrors, MelFilterCountMismatch) {
  EXPECT_TRUE(PatchedFails("filters128", kOffFilterMels, 128, {"mel filterbank has 128", "n_mels = 80"}));
  EXPECT_TRUE(PatchedFails("filters0", kOffFilterMels, 0, {"mel filterbank has 0"}));
  EXPECT_TRUE(PatchedFails("filters_neg", kOffFilterMels, -1, {"mel filterbank has -1"}));
  EXPECT_TRUE(PatchedFails("bins100", kOffFilterBins, 100, {"100 frequency bins, expected 201"}));
  EXPECT_TRUE(PatchedFails("bins_neg", kOffFilterBins, -201, {"-201 frequency bins"}));
  EXPECT_TRUE(PatchedFails("bins_huge", kOffFilterBins, INT32_MAX, {"frequency bins, expected 201"}));
  // hparams say 128 mels but the filterbank (and conv1) have 80.
  EXPECT_TRUE(PatchedFails("hp_mels128", kOffMels, 128, {"mel filterbank has 80", "n_mels = 128"}));
}

TEST(ModelErrors, BadVocabulary) {
  const size_t v = base_layout().vocab_at;
  EXPECT_TRUE(PatchedFails("vocab_count_big", v, 60000, {"vocabulary holds 60000 tokens", "n_vocab is 51865"}));
  EXPECT_TRUE(PatchedFails("vocab_count_neg", v, -1, {"vocabulary holds -1 tokens"}));
  EXPECT_TRUE(PatchedFails("vocab_count_max", v, INT32_MAX, {"vocabulary holds"}));
  EXPECT_TRUE(PatchedFails("token_len_huge", v + 4, INT32_MAX, {"token 0 has absurd length"}));
  EXPECT_TRUE(PatchedFails("token_len_neg", v + 4, -1, {"token 0 has absurd length 4294967295"}));
  // A vocabulary of the wrong kind for n_vocab (English-only file, multilingual hparams).
  TestModelOptions o;
  o.hp = small_hp();
  o.hp.n_vocab = 51864;
  o.vocab_source = kVocabEn;
  o.output = tmp("english.bin");
  ASSERT_TRUE(write_test_model(o).ok());
  std::vector<char> b = read_file(o.output);
  put_i32(b, kOffVocab, 51865);
  const std::string p = tmp("english_as_multilingual.bin");
  write_file(p, b);
  EXPECT_TRUE(LoadFails(p, {"tokenizer"}));
}

// ---------------------------------------------------------------------------
// Paths

TEST(ModelErrors, DirectoryInsteadOfFile) {
  const std::string p = tmp("a_directory");
  ::mkdir(p.c_str(), 0755);
  EXPECT_TRUE(LoadFails(p, {"not a regular file"}));
}

TEST(ModelErrors, NonexistentPath) {
  const std::string p = tmp("does_not_exist.bin");
  std::remove(p.c_str());
  EXPECT_TRUE(LoadFails(p, {"cannot open model file", "No such file"}));
  const std::string q = tmp("no_such_dir") + "/model.bin";
  EXPECT_TRUE(LoadFails(q, {"cannot open model file"}));
}

TEST(ModelErrors, UnreadableFile) {
  if (geteuid() == 0) GTEST_SKIP() << "root can read any file";
  const std::string p = tmp("unreadable.bin");
  write_file(p, base_bytes());
  ::chmod(p.c_str(), 0);
  EXPECT_TRUE(LoadFails(p, {"cannot open model file", "Permission denied"}));
  ::chmod(p.c_str(), 0644);
}

// ---------------------------------------------------------------------------
// CLI

std::string quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

struct CliResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string err;
};

// Runs a shell command with stdout discarded and stderr captured in a file
// unique to this process.
CliResult run_cli(const std::string& args) {
  static int counter = 0;
  const std::string errfile = tmp("cli_stderr_" + std::to_string(++counter) + ".txt");
  const std::string cmd = quote(AMA_CLI_PATH) + " " + args + " </dev/null >/dev/null 2>" + quote(errfile);
  const int status = std::system(cmd.c_str());
  CliResult r;
  if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  const std::vector<char> e = read_file(errfile);
  r.err.assign(e.begin(), e.end());
  std::remove(errfile.c_str());
  return r;
}

// Runs the CLI; expects a non-zero exit and exactly one stderr line
// "amanuensis: error: ..." containing every phrase.
::testing::AssertionResult CliFails(const std::string& args, std::initializer_list<std::string> phrases) {
  const CliResult r = run_cli(args);
  if (r.exit_code == 0) return ::testing::AssertionFailure() << "exit code 0 for: " << args;
  if (r.exit_code < 0 || r.exit_code >= 128)
    return ::testing::AssertionFailure() << "crashed (exit " << r.exit_code << ") for: " << args << "\n" << r.err;
  const std::string prefix = "amanuensis: error: ";
  if (r.err.rfind(prefix, 0) != 0)
    return ::testing::AssertionFailure() << "stderr does not start with \"" << prefix << "\": " << r.err;
  if (r.err.empty() || r.err.back() != '\n' || std::count(r.err.begin(), r.err.end(), '\n') != 1)
    return ::testing::AssertionFailure() << "stderr is not exactly one line: " << r.err;
  for (const auto& p : phrases)
    if (r.err.find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "stderr lacks \"" << p << "\": " << r.err;
  return ::testing::AssertionSuccess() << r.err;
}

TEST(ModelErrors, CliTranscribeWithBadModels) {
  std::vector<std::pair<std::string, std::string>> bad;  // path, phrase
  const std::string missing = tmp("cli_missing.bin");
  std::remove(missing.c_str());
  bad.push_back({missing, "no such file, and not a model name"});
  const std::string empty = tmp("cli_empty.bin");
  write_file(empty, std::string());
  bad.push_back({empty, "truncated file"});
  const std::string dir = tmp("cli_dir");
  ::mkdir(dir.c_str(), 0755);
  bad.push_back({dir, "not a regular file"});
  const std::string gguf = tmp("cli.gguf");
  write_file(gguf, std::string("GGUF\3\0\0\0\0\0\0\0\0\0\0\0", 16));
  bad.push_back({gguf, "GGUF"});
  const std::vector<char>& b = base_bytes();
  const std::string trunc = tmp("cli_truncated.bin");
  write_file(trunc, b.data(), b.size() / 2);
  bad.push_back({trunc, "truncated file"});
  std::vector<char> q = b;
  put_i32(q, base_layout().at("decoder.blocks.0.mlp.0.weight").start + 8, 8);
  const std::string quant = tmp("cli_q8.bin");
  write_file(quant, q);
  bad.push_back({quant, "unquantized model"});
  std::vector<char> f = b;
  put_i32(f, kOffFtype, 1007);
  const std::string qft = tmp("cli_ftype.bin");
  write_file(qft, f);
  bad.push_back({qft, "quantization version 1"});
  std::vector<char> h = b;
  put_i32(h, kOffAudioHead, 3);
  const std::string heads = tmp("cli_heads.bin");
  write_file(heads, h);
  bad.push_back({heads, "not divisible"});
  auto ts = tensor_list(small_hp());
  ts.erase(find_tensor(ts, "decoder.ln.weight"));
  const std::string miss = tmp("cli_missing_tensor.bin");
  write_model(miss, small_hp(), ts);
  bad.push_back({miss, "missing tensor 'decoder.ln.weight'"});

  for (const auto& [path, phrase] : bad) {
    SCOPED_TRACE(path);
    EXPECT_TRUE(CliFails("transcribe -m " + quote(path) + " " + quote(kJfk), {path, phrase}));
  }
}

TEST(ModelErrors, CliTranscribeArgumentErrors) {
  const std::string m = quote(kMicro), a = quote(kJfk);
  EXPECT_TRUE(CliFails("transcribe -m " + m + " " + a + " --threads -1", {"threads", "-1"}));
  EXPECT_TRUE(CliFails("transcribe -m " + m + " " + a + " --threads=100000", {"--threads 100000 is out of range"}));
  EXPECT_TRUE(CliFails("transcribe -m " + m + " " + a + " --task bogus", {"--task must be transcribe or translate"}));
  EXPECT_TRUE(CliFails("transcribe -m " + m + " " + a + " -o " + quote(tmp("cli_out")) + " -f txt,bogus",
                       {"unknown output format 'bogus'"}));
  EXPECT_TRUE(CliFails("transcribe -m " + m + " " + a + " -f srt", {"--format needs -o PATH"}));
  EXPECT_TRUE(CliFails("transcribe -m " + m + " " + a + " --compute f64", {"unknown compute type 'f64'"}));
  const std::string no_audio = tmp("no_such_audio.wav");
  EXPECT_TRUE(CliFails("transcribe -m " + m + " " + quote(no_audio), {no_audio}));
  EXPECT_TRUE(CliFails("transcribe " + a, {"model"}));  // -m is required
  EXPECT_TRUE(CliFails("transcribe -m " + m, {"file"}));
  EXPECT_TRUE(CliFails("bogus-command", {"subcommand"}));
  EXPECT_TRUE(CliFails("", {}));  // a subcommand is required
}

TEST(ModelErrors, CliMakeTestModelErrors) {
  const std::string out = quote(tmp("cli_made.bin"));
  EXPECT_TRUE(CliFails("make-test-model --arch bogus -o " + out, {"unknown architecture 'bogus'"}));
  EXPECT_TRUE(CliFails("make-test-model --dims 64,3,1,1 -o " + out, {"not divisible"}));
  EXPECT_TRUE(CliFails("make-test-model --dims 64,2 -o " + out, {"--dims needs 4 to 7 numbers"}));
  EXPECT_TRUE(CliFails("make-test-model --dims 64,two,1,1 -o " + out, {"'two' is not a number"}));
  EXPECT_TRUE(CliFails("make-test-model --dims 64,2,1,1,100 -o " + out, {"mel filters", "(80, 128)"}));
  EXPECT_TRUE(CliFails("make-test-model --dims 64,2,1,1 --vocab " + quote(tmp("no_vocab.bin")) + " -o " + out,
                       {"no_vocab.bin", "cannot open"}));
  EXPECT_TRUE(CliFails("make-test-model --dims 64,2,1,1 -o " + quote(tmp("no_such_dir") + "/x.bin"),
                       {"cannot create file"}));
}

std::string many_tokens(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += ',';
    s += "50258";
  }
  return s;
}

TEST(ModelErrors, CliLogitsErrors) {
  // The small model is cheaper to run; the micro model has Whisper's 448-token context.
  const std::string small = "logits -m " + quote(base_model()) + " --audio " + quote(kJfk) + " --out " +
                            quote(tmp("cli_logits.f32")) + " --tokens ";
  const std::string base = "logits -m " + quote(kMicro) + " --audio " + quote(kJfk) + " --out " +
                           quote(tmp("cli_logits.f32")) + " --tokens ";
  EXPECT_TRUE(CliFails(small + "50258,999999", {"token 999999 is outside the vocabulary [0, 51865)"}));
  EXPECT_TRUE(CliFails(small + "50258,-5", {"token -5 is outside the vocabulary"}));
  EXPECT_TRUE(CliFails(small + many_tokens(65), {"65 tokens exceed the model's context of 64"}));
  EXPECT_TRUE(CliFails(base + "50258,abc", {"'abc' is not a token id"}));
  EXPECT_TRUE(CliFails(base + "50258,12x", {"'12x' is not a token id"}));
  EXPECT_TRUE(CliFails(base + "99999999999999999999", {"is not a token id"}));
  EXPECT_TRUE(CliFails(base + ",", {"--tokens is empty"}));
  EXPECT_TRUE(CliFails(base + many_tokens(449), {"449 tokens exceed the model's context of 448"}));
  // And a bad model through logits.
  const std::string trunc = tmp("cli_logits_truncated.bin");
  write_file(trunc, base_bytes().data(), 100);
  EXPECT_TRUE(CliFails("logits -m " + quote(trunc) + " --audio " + quote(kJfk) + " --out " +
                           quote(tmp("cli_logits.f32")) + " --tokens 50258",
                       {trunc, "truncated file"}));
}

}  // namespace
}  // namespace ama
