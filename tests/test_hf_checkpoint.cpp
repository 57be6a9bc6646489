// Hugging Face openai/whisper-* checkpoint directories (model/hf_checkpoint.h)
// and the streamed loader behind them (model/tensor_source.h).
//
// The checkpoints are written here from a generated ggml model, the way
// transformers' save_pretrained lays them out: config.json, model.safetensors
// (F32, F16 or BF16, transformers' tensor names), vocab.json in GPT-2's byte
// alphabet, added_tokens.json (or tokenizer.json alone) and
// generation_config.json. Beside each, a float32 ggml file holds exactly the
// values the checkpoint stores (rounded to its dtype), so the two loads must
// give the same logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <vector>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "backend/cpu/cpu_backend.h"
#include "core/half.h"
#include "decode/timing.h"
#include "decode/transcriber.h"
#include "model/ggml_file.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "model/test_model.h"
#include "model/whisper_model.h"
#include "test_util.h"

#ifndef AMA_CLI_PATH
#define AMA_CLI_PATH "amanuensis"
#endif

namespace ama {
namespace {

using test::shared;

const test::ProcessTempDir kTmp("ama_hf");  // removed when the tests end
const std::string& tmp_dir() { return kTmp.path(); }

// 64 state, 2 heads, 1 encoder and 2 decoder layers (so that alignment heads
// can name layer 1), the real multilingual vocabulary.
HParams small_hp() {
  HParams hp;
  hp.n_vocab = 51865;
  hp.n_audio_ctx = 1500;
  hp.n_audio_state = hp.n_text_state = 64;
  hp.n_audio_head = hp.n_text_head = 2;
  hp.n_audio_layer = 1;
  hp.n_text_layer = 2;
  hp.n_text_ctx = 64;
  hp.n_mels = 80;
  hp.ftype = 1;
  return hp;
}

std::string config_json(const HParams& hp) {
  nlohmann::ordered_json j;
  j["model_type"] = "whisper";
  j["architectures"] = {"WhisperForConditionalGeneration"};
  j["d_model"] = hp.n_audio_state;
  j["encoder_layers"] = hp.n_audio_layer;
  j["encoder_attention_heads"] = hp.n_audio_head;
  j["decoder_layers"] = hp.n_text_layer;
  j["decoder_attention_heads"] = hp.n_text_head;
  j["encoder_ffn_dim"] = 4 * hp.n_audio_state;
  j["decoder_ffn_dim"] = 4 * hp.n_text_state;
  j["num_mel_bins"] = hp.n_mels;
  j["vocab_size"] = hp.n_vocab;
  j["max_source_positions"] = hp.n_audio_ctx;
  j["max_target_positions"] = hp.n_text_ctx;
  j["activation_function"] = "gelu";
  j["scale_embedding"] = false;
  j["torch_dtype"] = "float32";
  j["begin_suppress_tokens"] = {220, 50257};
  return j.dump(2);
}

// GPT-2's byte alphabet (encoder.py bytes_to_unicode), written independently
// of the library's decoder: printable bytes are themselves, the others
// U+0100 onwards in ascending order.
std::string gpt2_spell(const std::string& bytes) {
  std::vector<int> cp(256);
  int shifted = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    cp[b] = printable ? b : 256 + shifted++;
  }
  std::string out;
  for (unsigned char c : bytes) {
    const int u = cp[c];
    if (u < 0x80) {
      out.push_back(static_cast<char>(u));
    } else {
      out.push_back(static_cast<char>(0xC0 | (u >> 6)));
      out.push_back(static_cast<char>(0x80 | (u & 0x3F)));
    }
  }
  return out;
}

struct Tensor {
  std::string name;  // openai's
  std::vector<int> shape;
  std::vector<float> data;
};

// The generated ggml model, its tensors as float32 and its tokenizer.
struct Source {
  HParams hp;
  std::string ggml_path;
  std::vector<Tensor> tensors;
  std::shared_ptr<const WhisperModel> model;  // the ggml file loaded
  // The checkpoints' vocabulary: openai's exact multilingual.tiktoken (the
  // ggml file's vocabulary is an old converter's, where some multi-byte
  // tokens were lost to U+FFFD and so collide, which a vocab.json cannot hold).
  std::optional<Tokenizer> tok;
};

const Backend& f32_backend() {
  static const std::unique_ptr<Backend> b = [] {
    CpuBackendOptions o;
    o.n_threads = 2;
    o.compute = ComputeType::f32;
    return std::move(make_cpu_backend(o).value());
  }();
  return *b;
}

const Source& source() {
  static const Source s = [] {
    Source s;
    s.hp = small_hp();
    s.ggml_path = tmp_dir() + "/small.bin";
    TestModelOptions o;
    o.hp = s.hp;
    o.seed = 7;
    o.vocab_source = shared("models/whisper-vocab/for-tests-ggml-base.bin");
    o.output = s.ggml_path;
    Status w = write_test_model(o);
    EXPECT_TRUE(w.ok()) << w.message();
    auto reader = GgmlReader::open(s.ggml_path);
    EXPECT_TRUE(reader.ok()) << reader.message();
    auto header = reader->read_header();
    EXPECT_TRUE(header.ok()) << header.message();
    for (;;) {
      auto rec = reader->next_tensor();
      EXPECT_TRUE(rec.ok()) << rec.message();
      if (!rec.ok() || rec->name.empty()) break;
      Tensor t{rec->name, rec->shape, std::vector<float>(rec->n_elements)};
      Status r = reader->read_tensor_data(*rec, t.data.data());
      EXPECT_TRUE(r.ok()) << r.message();
      s.tensors.push_back(std::move(t));
    }
    auto m = load_model(s.ggml_path, f32_backend());
    EXPECT_TRUE(m.ok()) << m.message();
    if (m.ok()) s.model = *m;
    auto tok = Tokenizer::load_tiktoken(shared("whisper-assets/multilingual.tiktoken"), s.hp.n_vocab);
    EXPECT_TRUE(tok.ok()) << tok.message();
    if (tok.ok()) s.tok.emplace(std::move(tok.value()));
    return s;
  }();
  return s;
}

float round_to(StDtype d, float v) {
  if (d == StDtype::f16) return f16_to_f32(f32_to_f16(v));
  if (d == StDtype::bf16) return bf16_to_f32(f32_to_bf16(v));
  return v;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

struct CheckpointOptions {
  StDtype dtype = StDtype::f32;
  bool vocab_json = true, added_tokens_json = true, tokenizer_json = false, generation_config = true;
  bool proj_out = false;  // also store the tied output projection
  bool old_nospeech_name = false;  // <|nocaptions|>, as before large-v3
};

// Writes the checkpoint directory `dir` and, when ref_ggml is given, a
// float32 ggml file with exactly the values the checkpoint holds.
void write_checkpoint(const std::string& dir, const CheckpointOptions& o, const std::string& ref_ggml = "") {
  const Source& s = source();
  ASSERT_TRUE(s.model && s.tok);
  std::filesystem::create_directories(dir);
  write_text(dir + "/config.json", config_json(s.hp));

  // Rounded copies; safetensors' writer rounds the same way (f32_to_f16/bf16).
  std::vector<Tensor> rounded = s.tensors;
  for (Tensor& t : rounded)
    for (float& v : t.data) v = round_to(o.dtype, v);
  // In transformers' order (sorted by name, as safetensors' serializer does),
  // not ggml's: the loader must place tensors by name.
  std::vector<StWriteTensor> st;
  for (const Tensor& t : rounded) {
    const std::string hf = openai_to_hf_name(t.name);
    ASSERT_FALSE(hf.empty()) << t.name;
    StWriteTensor w;
    w.name = hf;
    w.data = t.data.data();
    w.dtype = o.dtype;
    for (int d : t.shape) w.shape.push_back(d);
    if (t.name.find("conv") != std::string::npos && t.name.ends_with(".bias")) w.shape = {t.shape[0]};  // HF: 1-D
    st.push_back(w);
    if (o.proj_out && t.name == "decoder.token_embedding.weight") {
      w.name = "proj_out.weight";
      st.push_back(w);
    }
  }
  std::sort(st.begin(), st.end(), [](const StWriteTensor& a, const StWriteTensor& b) { return a.name < b.name; });
  Status ws = write_safetensors(dir + "/model.safetensors", st, {{"format", "pt"}});
  ASSERT_TRUE(ws.ok()) << ws.message();

  const Tokenizer& tok = *s.tok;
  const int eot = tok.special().eot;
  // In id order, as transformers writes it. Appended to the object's list
  // of entries: ordered_json's operator[] searches the keys one by one,
  // which made this loop quadratic (50257 tokens: ~1.3e9 key compares; 16
  // s of the sanitized HfCheckpoint.ErrorsAreClear's 20 were here).
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  {
    auto& entries = vocab.get_ref<nlohmann::ordered_json::object_t&>();
    std::unordered_set<std::string> seen;
    for (int id = 0; id < eot; ++id) {
      std::string key = gpt2_spell(tok.token_bytes(id));
      ASSERT_TRUE(seen.insert(key).second) << "token " << id << " spells as an earlier one: " << key;
      entries.emplace_back(std::move(key), id);
    }
  }
  vocab["<|endoftext|>"] = eot;  // transformers' vocab.json holds it too
  nlohmann::ordered_json added = nlohmann::ordered_json::object();
  nlohmann::ordered_json added_list = nlohmann::ordered_json::array();
  for (int id = eot; id < s.hp.n_vocab; ++id) {
    std::string name = tok.token_text(id);
    if (o.old_nospeech_name && id == tok.special().no_speech) name = "<|nocaptions|>";
    added[name] = id;
    added_list.push_back({{"id", id}, {"content", name}, {"special", true}});
  }
  if (o.vocab_json) write_text(dir + "/vocab.json", vocab.dump());
  if (o.added_tokens_json) write_text(dir + "/added_tokens.json", added.dump(2));
  if (o.tokenizer_json) {
    nlohmann::ordered_json t;
    t["version"] = "1.0";
    t["added_tokens"] = added_list;
    t["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}};
    write_text(dir + "/tokenizer.json", t.dump());
  }
  if (o.generation_config)
    write_text(dir + "/generation_config.json",
               R"({"alignment_heads": [[1, 1], [1, 0]], "begin_suppress_tokens": [220, 50257], "no_timestamps_token_id": 50363})");

  if (ref_ggml.empty()) return;
  auto w = GgmlWriter::create(ref_ggml);
  ASSERT_TRUE(w.ok()) << w.message();
  GgmlHeader h;
  h.hp = s.hp;
  h.hp.ftype = 0;
  h.n_filter_bins = 201;
  h.mel_filters = slaney_mel_filters(s.hp.n_mels);  // what the checkpoint load computes
  for (int id = 0; id < eot; ++id) h.vocab.push_back(tok.token_bytes(id));
  ASSERT_TRUE(w->write_header(h).ok());
  for (const Tensor& t : rounded) ASSERT_TRUE(w->write_tensor(t.name, t.shape, GgmlType::f32, t.data.data()).ok());
  ASSERT_TRUE(w->close().ok());
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<int> prompt_tokens(const Tokenizer& tok) {
  std::vector<int> t = {tok.special().sot, tok.language_token("en"), tok.special().transcribe,
                        tok.special().no_timestamps};
  for (int id : tok.encode(" And so my fellow Americans, ask not")) t.push_back(id);
  return t;
}

Result<std::vector<float>> logits_of(const std::string& path, ComputeType compute) {
  CpuBackendOptions o;
  o.n_threads = 2;
  o.compute = compute;
  auto be = make_cpu_backend(o);
  if (!be) return be.error();
  auto model = load_model(path, **be);
  if (!model) return model.error();
  static const std::vector<float> audio = std::move(load_audio(shared("audio/jfk.wav")).value());
  LogMel lm((*model)->mel_filters, (*model)->hp.n_mels);
  std::vector<float> mel = lm.compute(audio.data(), audio.size());
  Transcriber t(*model, **be);
  AMA_TRY(t.encode_window(mel.data(), LogMel::total_frames(audio.size())));
  return t.logits_for(prompt_tokens((*model)->tokenizer));
}

// ---------------------------------------------------------------------------

TEST(HfCheckpoint, ParsesConfig) {
  auto hp = parse_hf_config(config_json(small_hp()));
  ASSERT_TRUE(hp.ok()) << hp.message();
  HParams want = small_hp();
  want.ftype = 0;  // torch_dtype float32
  EXPECT_EQ(*hp, want);
  // large-v3's real config, abridged.
  auto v3 = parse_hf_config(R"({"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
      "decoder_layers": 32, "decoder_attention_heads": 20, "num_mel_bins": 128, "vocab_size": 51866,
      "max_source_positions": 1500, "max_target_positions": 448, "torch_dtype": "float16",
      "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120, "model_type": "whisper"})");
  ASSERT_TRUE(v3.ok()) << v3.message();
  EXPECT_EQ(arch_name(*v3), "large-v3");
}

TEST(HfCheckpoint, ConfigErrorsAreClear) {
  const std::string good = config_json(small_hp());
  auto fails = [](const std::string& json, const std::string& want) {
    auto r = parse_hf_config(json);
    if (r.ok()) return ::testing::AssertionFailure() << "accepted: " << json.substr(0, 200);
    if (r.message().find(want) == std::string::npos || r.message().rfind("config.json: ", 0) != 0)
      return ::testing::AssertionFailure() << "message '" << r.message() << "' lacks '" << want << "'";
    return ::testing::AssertionSuccess();
  };
  auto with = [&](const std::string& key, const nlohmann::json& v) {
    auto j = nlohmann::ordered_json::parse(good);
    if (v.is_discarded()) j.erase(key);
    else j[key] = v;
    return j.dump();
  };
  EXPECT_TRUE(fails("{\"d_model\": 64,", "bad JSON"));
  EXPECT_TRUE(fails("", "bad JSON"));
  EXPECT_TRUE(fails("[1, 2]", "not a JSON object"));
  EXPECT_TRUE(fails(std::string(100, '[') + std::string(100, ']'), "nested deeper"));
  EXPECT_TRUE(fails(with("d_model", nlohmann::json(nlohmann::json::value_t::discarded)), "missing \"d_model\""));
  EXPECT_TRUE(fails(with("vocab_size", nlohmann::json(nlohmann::json::value_t::discarded)), "missing \"vocab_size\""));
  EXPECT_TRUE(fails(with("decoder_layers", "2"), "\"decoder_layers\" is not an integer"));
  EXPECT_TRUE(fails(with("num_mel_bins", 80.5), "\"num_mel_bins\" is not an integer"));
  EXPECT_TRUE(fails(with("d_model", -64), "out of range"));
  EXPECT_TRUE(fails(with("d_model", 1ull << 40), "out of range"));
  EXPECT_TRUE(fails(with("encoder_ffn_dim", 100), "encoder_ffn_dim = 100 is not supported"));
  EXPECT_TRUE(fails(with("activation_function", "relu"), "activation_function"));
  EXPECT_TRUE(fails(with("scale_embedding", true), "scale_embedding"));
  EXPECT_TRUE(fails(with("model_type", "bert"), "model_type"));
  EXPECT_TRUE(fails(with("encoder_attention_heads", 3), "not divisible"));
  EXPECT_TRUE(fails(with("max_source_positions", 1000), "1500 audio positions"));
  EXPECT_TRUE(fails(with("vocab_size", 1000), "n_vocab"));
}

TEST(HfCheckpoint, NamesMapBothWays) {
  EXPECT_EQ(hf_to_openai_name("model.encoder.layers.3.self_attn.q_proj.weight"), "encoder.blocks.3.attn.query.weight");
  EXPECT_EQ(hf_to_openai_name("model.decoder.layers.11.encoder_attn.k_proj.weight"),
            "decoder.blocks.11.cross_attn.key.weight");
  EXPECT_EQ(hf_to_openai_name("model.decoder.layers.0.encoder_attn_layer_norm.bias"),
            "decoder.blocks.0.cross_attn_ln.bias");
  EXPECT_EQ(hf_to_openai_name("model.encoder.layers.0.fc2.bias"), "encoder.blocks.0.mlp.2.bias");
  EXPECT_EQ(hf_to_openai_name("model.encoder.layers.0.final_layer_norm.weight"), "encoder.blocks.0.mlp_ln.weight");
  EXPECT_EQ(hf_to_openai_name("model.encoder.embed_positions.weight"), "encoder.positional_embedding");
  EXPECT_EQ(hf_to_openai_name("model.decoder.embed_tokens.weight"), "decoder.token_embedding.weight");
  EXPECT_EQ(hf_to_openai_name("model.encoder.layer_norm.weight"), "encoder.ln_post.weight");
  EXPECT_EQ(hf_to_openai_name("model.decoder.layer_norm.bias"), "decoder.ln.bias");
  EXPECT_EQ(hf_to_openai_name("proj_out.weight"), "");
  // Not Whisper tensors: unchanged, so the loader names them as stored.
  for (const std::string n : {"model.encoder.layers.x.fc1.weight", "model.encoder.layers.0.fc9.weight",
                              "model.encoder.layers.0.fc1.scale", "lm_head.weight", "model.decoder.layers.1.",
                              "model.", ""})
    EXPECT_EQ(hf_to_openai_name(n), n);
  // Every tensor of a 2 x 2-layer model has a transformers name and back.
  HParams hp = small_hp();
  hp.n_audio_layer = 2;
  for (const TensorSpec& t : expected_tensors(hp)) {
    const std::string hf = openai_to_hf_name(t.name);
    EXPECT_EQ(hf.rfind("model.", 0), 0u) << t.name;
    EXPECT_EQ(hf_to_openai_name(hf), t.name);
  }
  EXPECT_EQ(openai_to_hf_name("decoder.blocks.0.mlp.1.weight"), "");
}

class HfLogits : public ::testing::TestWithParam<StDtype> {};

// The same values through the two formats: the weights the loader hands the
// backend are the same float32 numbers, packed by the same code, and run
// through the same kernels in the same order, so the logits must be equal
// bit for bit (tolerance 0). Anything else means a tensor was misplaced,
// transposed or converted differently.
TEST_P(HfLogits, MatchGgmlThroughApi) {
  const std::string tag = st_dtype_name(GetParam());
  const std::string dir = tmp_dir() + "/ckpt_" + tag, ref = tmp_dir() + "/ref_" + tag + ".bin";
  CheckpointOptions o;
  o.dtype = GetParam();
  write_checkpoint(dir, o, ref);
  for (ComputeType c : {ComputeType::f32, ComputeType::bf16}) {
    auto a = logits_of(dir, c);
    ASSERT_TRUE(a.ok()) << a.message();
    auto b = logits_of(ref, c);
    ASSERT_TRUE(b.ok()) << b.message();
    auto d = test::max_abs_diff(*a, *b);
    EXPECT_EQ(d.max_abs, 0.0) << tag << " at " << compute_type_name(c) << ": " << d.str("logits");
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, HfLogits, ::testing::Values(StDtype::f32, StDtype::f16, StDtype::bf16),
                         [](const auto& info) { return std::string(st_dtype_name(info.param)); });

TEST(HfCheckpoint, LogitsMatchGgmlThroughCli) {
  const std::string dir = tmp_dir() + "/ckpt_cli", ref = tmp_dir() + "/ref_cli.bin";
  CheckpointOptions o;
  o.dtype = StDtype::f16;
  write_checkpoint(dir, o, ref);
  std::string tokens;
  for (int t : prompt_tokens(*source().tok)) tokens += (tokens.empty() ? "" : ",") + std::to_string(t);
  const std::string out_dir = tmp_dir() + "/cli_dir.f32", out_ref = tmp_dir() + "/cli_ref.f32";
  const std::string common = " --audio " + shared("audio/jfk.wav") + " --tokens " + tokens + " -t 2";
  auto r1 = test::run_command(std::string(AMA_CLI_PATH) + " logits -m " + dir + common + " --out " + out_dir);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  auto r2 = test::run_command(std::string(AMA_CLI_PATH) + " logits -m " + ref + common + " --out " + out_ref);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  const std::vector<float> a = test::read_f32(out_dir), b = test::read_f32(out_ref);
  EXPECT_EQ(a.size(), prompt_tokens(*source().tok).size() * 51865);
  auto d = test::max_abs_diff(a, b);
  EXPECT_EQ(d.max_abs, 0.0) << d.str("CLI logits");
}

// transcribe -m DIR with word timestamps: the checkpoint's alignment heads
// ([[1, 1], [1, 0]]) are the ones the by-shape rule gives this 2-layer
// decoder (its last half), so the JSON must equal the ggml file's, words
// and all.
TEST(HfCheckpoint, TranscribeWithWordTimestampsThroughCli) {
  const std::string dir = tmp_dir() + "/ckpt_transcribe", ref = tmp_dir() + "/ref_transcribe.bin";
  write_checkpoint(dir, {}, ref);
  auto run = [&](const std::string& model, const std::string& out) {
    return test::run_command(std::string(AMA_CLI_PATH) + " transcribe -m " + model + " " + shared("audio/jfk.wav") +
                             " --beam-size 1 --best-of 1 --temperature-increment-on-fallback none --word-timestamps"
                             " --language en -t 2 --quiet --format json -o " + out);
  };
  auto r1 = run(dir, tmp_dir() + "/tr_dir");
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  auto r2 = run(ref, tmp_dir() + "/tr_ref");
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  auto a = nlohmann::json::parse(read_all(tmp_dir() + "/tr_dir.json"), nullptr, false);
  auto b = nlohmann::json::parse(read_all(tmp_dir() + "/tr_ref.json"), nullptr, false);
  ASSERT_FALSE(a.is_discarded());
  ASSERT_TRUE(a.contains("segments") && !a["segments"].empty()) << a.dump().substr(0, 500);
  ASSERT_TRUE(a["segments"][0].contains("words")) << a["segments"][0].dump();
  EXPECT_EQ(a, b);
}

void expect_same_tokenizer(const Tokenizer& a, const Tokenizer& b) {
  ASSERT_EQ(a.n_vocab(), b.n_vocab());
  int differ = 0;
  for (int id = 0; id < a.n_vocab(); ++id) differ += a.token_text(id) != b.token_text(id);
  EXPECT_EQ(differ, 0);
  for (const std::string text : {"Hello world, ça va? 日本語のテキスト", "  spaces\tand\nlines 12345", "\xF0\x9F\x98\x80!"})
    EXPECT_EQ(a.encode(text), b.encode(text)) << text;
}

TEST(HfCheckpoint, TokenizerFromVocabJsonOrTokenizerJson) {
  const Tokenizer& want = *source().tok;
  const std::string d1 = tmp_dir() + "/tok_vocab";
  write_checkpoint(d1, {});
  auto m1 = load_model(d1, f32_backend());
  ASSERT_TRUE(m1.ok()) << m1.message();
  expect_same_tokenizer((*m1)->tokenizer, want);

  const std::string d2 = tmp_dir() + "/tok_fast";
  CheckpointOptions o;
  o.vocab_json = o.added_tokens_json = false;
  o.tokenizer_json = true;
  o.old_nospeech_name = true;  // <|nocaptions|>: the same token
  write_checkpoint(d2, o);
  auto m2 = load_model(d2, f32_backend());
  ASSERT_TRUE(m2.ok()) << m2.message();
  expect_same_tokenizer((*m2)->tokenizer, want);
}

TEST(HfCheckpoint, AlignmentHeadsFromGenerationConfig) {
  const std::string d1 = tmp_dir() + "/heads";
  write_checkpoint(d1, {});
  auto m = load_model(d1, f32_backend());
  ASSERT_TRUE(m.ok()) << m.message();
  const std::vector<std::pair<int, int>> want = {{1, 0}, {1, 1}};
  EXPECT_EQ((*m)->alignment_heads, want);
  std::vector<AttentionHead> heads = alignment_heads(**m);
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[0].layer, 1);
  EXPECT_EQ(heads[0].head, 0);
  EXPECT_EQ(heads[1].head, 1);

  // Without generation_config.json the heads come from the shape.
  const std::string d2 = tmp_dir() + "/no_heads";
  CheckpointOptions o;
  o.generation_config = false;
  o.proj_out = true;  // and a stored tied projection is skipped
  write_checkpoint(d2, o);
  auto m2 = load_model(d2, f32_backend());
  ASSERT_TRUE(m2.ok()) << m2.message();
  EXPECT_TRUE((*m2)->alignment_heads.empty());
  const std::vector<AttentionHead> by_shape = alignment_heads((*m2)->hp), got = alignment_heads(**m2);
  ASSERT_EQ(got.size(), by_shape.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].layer * 100 + got[i].head, by_shape[i].layer * 100 + by_shape[i].head);
}

// --- errors ----------------------------------------------------------------

::testing::AssertionResult load_fails(const std::string& dir, std::initializer_list<std::string> parts) {
  auto m = load_model(dir, f32_backend());
  if (m.ok()) return ::testing::AssertionFailure() << dir << " loaded";
  for (const std::string& p : parts)
    if (m.message().find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "message '" << m.message() << "' lacks '" << p << "'";
  if (m.message().find('\n') != std::string::npos) return ::testing::AssertionFailure() << "multi-line message";
  return ::testing::AssertionSuccess();
}

// A fresh copy of a good checkpoint to break.
std::string good_copy(const std::string& name) {
  static const std::string good = [] {
    const std::string d = tmp_dir() + "/good";
    write_checkpoint(d, {});
    return d;
  }();
  const std::string d = tmp_dir() + "/bad_" + name;
  std::filesystem::remove_all(d);
  std::filesystem::copy(good, d);
  return d;
}

// Rewrites model.safetensors with `edit` applied to the tensor list.
void rewrite_weights(const std::string& dir, const std::function<void(std::vector<StWriteTensor>&)>& edit) {
  auto f = SafetensorsFile::open(dir + "/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.message();
  std::vector<std::vector<float>> data;
  data.reserve(f->tensors().size() + 1);
  std::vector<StWriteTensor> ts;
  for (const StTensorInfo& t : f->tensors()) {
    data.push_back(std::move(f->read_f32(t.name).value()));
    ts.push_back({t.name, t.shape, data.back().data(), t.dtype});
  }
  static std::vector<float> extra(64 * 64, 0.5f);
  edit(ts);
  for (StWriteTensor& t : ts)
    if (!t.data) t.data = extra.data();
  ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", ts).ok());
}

TEST(HfCheckpoint, ErrorsAreClear) {
  std::string d = good_copy("no_config");
  std::filesystem::remove(d + "/config.json");
  EXPECT_TRUE(load_fails(d, {d + ": not a regular file, and not a Hugging Face checkpoint directory (no config.json)"}));

  d = good_copy("bad_json");
  write_text(d + "/config.json", "{\"d_model\": 64, ");
  EXPECT_TRUE(load_fails(d, {d + "/config.json: bad JSON"}));

  d = good_copy("no_layers");
  write_text(d + "/config.json", R"({"d_model": 64})");
  EXPECT_TRUE(load_fails(d, {"config.json: missing \"encoder_layers\""}));

  d = good_copy("no_weights");
  std::filesystem::remove(d + "/model.safetensors");
  EXPECT_TRUE(load_fails(d, {d + "/model.safetensors: missing"}));
  write_text(d + "/pytorch_model.bin", "x");
  EXPECT_TRUE(load_fails(d, {"pytorch_model.bin", "only safetensors"}));

  d = good_copy("missing_tensor");
  rewrite_weights(d, [](auto& ts) {
    ts.erase(std::remove_if(ts.begin(), ts.end(),
                            [](const StWriteTensor& t) { return t.name == "model.decoder.layers.1.fc1.bias"; }),
             ts.end());
  });
  EXPECT_TRUE(load_fails(d, {"model.safetensors: missing tensor 'decoder.blocks.1.mlp.0.bias'"}));

  d = good_copy("extra_tensor");
  rewrite_weights(d, [](auto& ts) { ts.push_back({"model.decoder.layers.2.fc1.bias", {64}, nullptr}); });
  EXPECT_TRUE(load_fails(d, {"unexpected tensor 'model.decoder.layers.2.fc1.bias' (decoder.blocks.2.mlp.0.bias)",
                             "1 encoder and 2 decoder layers"}));
  d = good_copy("foreign_tensor");
  rewrite_weights(d, [](auto& ts) { ts.push_back({"lm_head.weight", {64}, nullptr}); });
  EXPECT_TRUE(load_fails(d, {"unexpected tensor 'lm_head.weight'"}));

  d = good_copy("shape");
  rewrite_weights(d, [](auto& ts) {
    for (auto& t : ts)
      if (t.name == "model.encoder.layers.0.self_attn.k_proj.weight") t.shape = {32, 128};
  });
  EXPECT_TRUE(load_fails(d, {"tensor 'model.encoder.layers.0.self_attn.k_proj.weight' (encoder.blocks.0.attn.key.weight) "
                             "has shape [32, 128], expected [64, 64]"}));

  // I32 has F32's width: patch the dtype in the header, the file stays valid.
  d = good_copy("dtype");
  {
    std::string bytes = read_all(d + "/model.safetensors");
    const std::string key = "\"model.decoder.layer_norm.weight\":{\"dtype\":\"F32\"";
    const size_t at = bytes.find(key);
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at + key.size() - 4, 3, "I32");
    write_text(d + "/model.safetensors", bytes);
  }
  EXPECT_TRUE(load_fails(d, {"tensor 'model.decoder.layer_norm.weight' has dtype I32", "F32, F16, BF16"}));

  d = good_copy("no_vocab");
  std::filesystem::remove(d + "/vocab.json");
  EXPECT_TRUE(load_fails(d, {"missing vocab.json and tokenizer.json"}));
  d = good_copy("no_added");
  std::filesystem::remove(d + "/added_tokens.json");
  EXPECT_TRUE(load_fails(d, {"missing added_tokens.json and tokenizer.json"}));
  d = good_copy("bad_vocab");
  write_text(d + "/vocab.json", R"({"a": 0, "b": 0})");
  EXPECT_TRUE(load_fails(d, {"vocab.json: token id 0 appears twice"}));
  d = good_copy("vocab_json");
  write_text(d + "/vocab.json", R"({"a": 0, )");
  EXPECT_TRUE(load_fails(d, {"vocab.json: bad JSON"}));
  d = good_copy("vocab_char");
  {
    auto v = nlohmann::ordered_json::parse(read_all(d + "/vocab.json"));
    auto it = v.begin();
    const int id = it->get<int>();
    v.erase(it.key());
    v["\xE2\x82\xAC"] = id;  // U+20AC is no byte of GPT-2's alphabet
    write_text(d + "/vocab.json", v.dump());
  }
  EXPECT_TRUE(load_fails(d, {"outside GPT-2's byte alphabet"}));
  d = good_copy("special_id");
  {
    auto a = nlohmann::ordered_json::parse(read_all(d + "/added_tokens.json"));
    a["<|startoftranscript|>"] = 50259;
    write_text(d + "/added_tokens.json", a.dump());
  }
  EXPECT_TRUE(load_fails(d, {"special token \"<|startoftranscript|>\" has id 50259"}));

  d = good_copy("heads");
  write_text(d + "/generation_config.json", R"({"alignment_heads": [[2, 0]]})");
  EXPECT_TRUE(load_fails(d, {"generation_config.json: alignment head [2, 0] is outside"}));
  write_text(d + "/generation_config.json", R"({"alignment_heads": [[1, "0"]]})");
  EXPECT_TRUE(load_fails(d, {"alignment_heads must be a list of [layer, head] pairs"}));
}

TEST(HfCheckpoint, CliErrorIsOneLine) {
  std::string d = good_copy("cli");
  std::filesystem::remove(d + "/config.json");
  auto r = test::run_command(std::string(AMA_CLI_PATH) + " logits -m " + d + " --audio " + shared("audio/jfk.wav") +
                             " --tokens 50258 --out " + tmp_dir() + "/never.f32");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("amanuensis: error: " + d + ": not a regular file, and not a Hugging Face checkpoint"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// The token embedding's lookups read the logits matrix's packed rows
// (WhisperModel::embed_token): exact at f32 compute, the bf16 value at bf16.
TEST(HfCheckpoint, TokenEmbeddingLookup) {
  // An F32 checkpoint whose embedding has values neither f16 nor bf16 can
  // hold (the generated model's are f16 numbers: offset each by a third of 2^-12).
  const std::string dir = good_copy("table_f32");
  static std::vector<float> emb;
  rewrite_weights(dir, [](std::vector<StWriteTensor>& ts) {
    for (StWriteTensor& t : ts)
      if (t.name == "model.decoder.embed_tokens.weight") {
        emb.assign(t.data, t.data + 51865 * 64);
        for (float& v : emb) v += 1.0f / 3 / 4096;
        t.data = emb.data();
      }
  });
  CpuBackendOptions o;
  o.n_threads = 2;
  o.compute = ComputeType::bf16;
  auto bf16 = make_cpu_backend(o);
  ASSERT_TRUE(bf16.ok());
  const int n = 64;
  std::vector<float> zeros(n, 0.0f), row(n);
  for (const Backend* be : std::vector<const Backend*>{&f32_backend(), bf16->get()}) {
    SCOPED_TRACE(compute_type_name(be->compute_type()));
    auto m = load_model(dir, *be);
    ASSERT_TRUE(m.ok()) << m.message();
    ASSERT_EQ((*m)->hp.n_text_state, n);
    int inexact = 0;
    for (int token : {0, 1234, 50257, 51864}) {
      (*m)->embed_token(*be, token, zeros.data(), row.data());
      for (int c = 0; c < n; ++c) {
        const float v = emb[static_cast<size_t>(token) * n + c];
        const float want = be->compute_type() == ComputeType::f32 ? v : bf16_to_f32(f32_to_bf16(v));
        ASSERT_EQ(row[c], want) << token << " " << c;
        inexact += want != v;
      }
    }
    // The bf16 case really rounds (else it would not test the rounding).
    if (be->compute_type() == ComputeType::bf16) {
      EXPECT_GT(inexact, 100);
    }
  }
  // An f16 ggml file at f32 compute: the file's values, with the position added.
  const WhisperModel& g = *source().model;
  const Tensor* te = nullptr;
  for (const Tensor& t : source().tensors)
    if (t.name == "decoder.token_embedding.weight") te = &t;
  ASSERT_NE(te, nullptr);
  ASSERT_EQ(g.hp.n_text_state, n);
  std::vector<float> pos(n);
  for (int c = 0; c < n; ++c) pos[c] = 0.25f * c;
  for (int token : {0, 1234, 50257, g.hp.n_vocab - 1}) {
    g.embed_token(f32_backend(), token, pos.data(), row.data());
    for (int c = 0; c < n; ++c)
      ASSERT_EQ(row[c], te->data[static_cast<size_t>(token) * n + c] + pos[c]) << token << " " << c;
  }
}

}  // namespace
}  // namespace ama
