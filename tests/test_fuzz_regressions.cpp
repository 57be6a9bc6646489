// What the libFuzzer targets (fuzz/) found, and what keeps them useful.
//
// Regressions: each bug a fuzzer found, with its input embedded, through the
// C++ API (the sanitized CI run, scripts/test.sh --sanitize, also catches
// undefined behaviour here).
//
// Seeds: the committed corpora (fuzz/corpus/<target>/) must stay valid
// inputs of the parsers as they change: a seed that the reader started to
// refuse at its first byte would leave the fuzzer mutating error paths only.
// Every ggml seed reads to its end (tensors of f32, f16 and every quantized
// type), every WAV seed decodes, every safetensors seed opens and reads.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "../fuzz/ggml_input.h"
#include "audio/wav.h"
#include "model/ggml_file.h"
#include "model/ggml_quants.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"

namespace fs = std::filesystem;
using namespace ama;

namespace {

// __FILE__ is relative to the build directory when ccache's base_dir rewrites
// paths (CCACHE_BASEDIR); the test binary lives in that directory.
fs::path corpus(const std::string& target) {
  fs::path here(__FILE__);
  if (here.is_relative()) here = fs::read_symlink("/proc/self/exe").parent_path() / here;
  return here.parent_path().parent_path() / "fuzz" / "corpus" / target;
}

std::vector<fs::path> seeds(const std::string& target) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(corpus(target)))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string write_temp(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = ::testing::TempDir() + "ama_fuzz_reg_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                               static_cast<std::streamsize>(bytes.size()));
  return path;
}

}  // namespace

TEST(FuzzSeeds, GgmlSeedsReadToTheEndWithEveryTensorType) {
  std::set<int32_t> types;
  const auto files = seeds("ggml");
  ASSERT_GE(files.size(), 10u) << corpus("ggml");
  for (const fs::path& seed : files) {
    SCOPED_TRACE(seed.filename().string());
    const std::vector<uint8_t> input = slurp(seed);
    const std::string path = write_temp("ggml", fuzz::ggml_fuzz_file(input.data(), input.size()));
    auto reader = GgmlReader::open(path);
    ASSERT_TRUE(reader.ok()) << reader.message();
    auto header = reader->read_header();
    ASSERT_TRUE(header.ok()) << header.message();
    for (;;) {
      auto rec = reader->next_tensor();
      ASSERT_TRUE(rec.ok()) << rec.message();
      if (rec->name.empty()) break;
      std::vector<float> out(rec->n_elements);
      const Status s = reader->read_tensor_data(*rec, out.data());
      ASSERT_TRUE(s.ok()) << s.message();
      types.insert(rec->type);
    }
    fs::remove(path);
  }
  // f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k ... q6_k: every type the reader knows.
  for (int32_t t : {0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14}) {
    ASSERT_TRUE(ggml_type_info(t).has_value()) << t;
    EXPECT_TRUE(types.count(t)) << "no ggml seed holds a tensor of type " << ggml_type_name(t);
  }
}

TEST(FuzzSeeds, WavSeedsDecode) {
  const auto files = seeds("wav");
  ASSERT_GE(files.size(), 5u) << corpus("wav");
  for (const fs::path& seed : files) {
    SCOPED_TRACE(seed.filename().string());
    const std::vector<uint8_t> bytes = slurp(seed);
    auto audio = read_wav_memory(bytes.data(), bytes.size(), seed.filename().string());
    ASSERT_TRUE(audio.ok()) << audio.message();
    EXPECT_FALSE(audio->samples.empty());
  }
}

TEST(FuzzSeeds, SafetensorsSeedsOpenAndRead) {
  const auto files = seeds("safetensors");
  ASSERT_GE(files.size(), 3u) << corpus("safetensors");
  int read = 0;
  for (const fs::path& seed : files) {
    SCOPED_TRACE(seed.filename().string());
    auto file = SafetensorsFile::open(seed.string());
    ASSERT_TRUE(file.ok()) << file.message();
    for (const StTensorInfo& t : file->tensors()) {
      if (t.dtype != StDtype::f32 && t.dtype != StDtype::f16 && t.dtype != StDtype::bf16 && t.dtype != StDtype::f64)
        continue;
      auto v = file->read_f32(t.name);
      ASSERT_TRUE(v.ok()) << v.message();
      ++read;
    }
  }
  EXPECT_GE(read, 5);  // F32, F16, BF16 and F64 tensors, a scalar among them
}

// parse_hf_config compared encoder_ffn_dim with 4 * d_model in int before
// validate_hparams ran, so d_model = 2^30 (its range check allows up to 2^30)
// overflowed: undefined behaviour (UBSan: "signed integer overflow: 4 *
// 1073741824"); in practice 2^32 wrapped to 0 and encoder_ffn_dim = 0 was
// accepted. Seen while writing fuzz_hf_config; its structured mode (3) finds
// it in about 2 s against the old code (the second config below is that
// crash input, crash-ea3b1c11..., as the JSON it builds). Now a clear error
// naming both sizes.
TEST(FuzzRegressions, HfConfigHugeDModelWithFfnDim) {
  const char* json =
      R"({"d_model": 1073741824, "encoder_layers": 1, "encoder_attention_heads": 1, "decoder_layers": 1,)"
      R"( "decoder_attention_heads": 1, "num_mel_bins": 80, "vocab_size": 51865, "max_source_positions": 1500,)"
      R"( "max_target_positions": 448, "encoder_ffn_dim": 0})";
  auto hp = parse_hf_config(json);
  ASSERT_FALSE(hp.ok());
  EXPECT_EQ(hp.message(),
            "config.json: encoder_ffn_dim = 0 is not supported (our MLPs are 4 x d_model = 4294967296)");

  const char* found =
      R"({"d_model": 1073741824, "encoder_layers": 1073741824, "encoder_attention_heads": 1073741824,)"
      R"( "decoder_layers": 1073741824, "decoder_attention_heads": 1073741824, "num_mel_bins": 1073741824,)"
      R"( "vocab_size": 63, "max_source_positions": 1073741824, "max_target_positions": 1073741824,)"
      R"( "encoder_ffn_dim": 1073741824, "decoder_ffn_dim": 2048, "model_type": "whisper",)"
      R"( "activation_function": "gelu", "scale_embedding": false})";
  hp = parse_hf_config(found);
  ASSERT_FALSE(hp.ok());
  EXPECT_EQ(hp.message(),
            "config.json: encoder_ffn_dim = 1073741824 is not supported (our MLPs are 4 x d_model = 4294967296)");
}
