// libFuzzer target: the Hugging Face checkpoint's JSON files
// (src/model/hf_checkpoint.h): config.json (parse_hf_config),
// generation_config.json's alignment heads, and the tensor-name mapping.
//
// Input: one mode byte, then the payload.
//   0: parse_hf_config(payload); 1: parse_hf_alignment_heads(payload) against
//   base's hparams; 2: hf_to_openai_name / openai_to_hf_name(payload);
//   3: parse_hf_config on a config.json built from the payload: per key, one
//   byte picks absent, a small integer, an edge integer (0, -1, 2^29 + 1,
//   2^30, 2^31, 2^63 - 1, 2^64 - 1, ...), a float, a string or null. Byte
//   mutations of raw JSON rarely make all nine required keys valid integers
//   while one sits at an edge; a 10-minute run of modes 0-2 (with the
//   dictionary) never reached the 4 x d_model overflow that this mode finds
//   in seconds (tests/test_fuzz_regressions.cpp).
// Checks (the promises of hf_checkpoint.h), beyond "no crash, no sanitizer
// report, no exception": accepted hparams pass validate_hparams; errors start
// with "config.json: "; every alignment head is a (layer, head) of the
// model; a name the mapping changes maps back to itself.
//
// Only hf_checkpoint.cpp and hparams.cpp are compiled in; the loader's other
// dependencies (the model, the tokenizer, mel filters) are dropped by the
// linker (-ffunction-sections, --gc-sections: see CMakeLists.txt), as the
// functions fuzzed here never reach them.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_file.h"
#include "model/hf_checkpoint.h"
#include "model/hparams.h"

using namespace ama;

namespace {

// Mode 3's config.json: the keys parse_hf_config reads, each from one or two
// bytes of the payload (missing bytes read as 0: the key is absent).
std::string structured_config(std::string_view p) {
  static const char* const kKeys[] = {"d_model", "encoder_layers", "encoder_attention_heads", "decoder_layers",
                                      "decoder_attention_heads", "num_mel_bins", "vocab_size",
                                      "max_source_positions", "max_target_positions", "encoder_ffn_dim",
                                      "decoder_ffn_dim"};
  // The values a well-formed config has, and the edges of the range and overflow checks.
  static const char* const kEdges[] = {"0", "1", "-1", "4", "80", "128", "448", "512", "1500", "2048", "51864",
                                       "51865", "51866", "16384", "16385", "536870912", "536870913", "1073741824",
                                       "1073741825", "2147483647", "2147483648", "4294967296",
                                       "9223372036854775807", "18446744073709551615", "-9223372036854775808"};
  size_t i = 0;
  auto next = [&]() -> unsigned { return i < p.size() ? static_cast<unsigned char>(p[i++]) : 0u; };
  std::string json = "{";
  auto add = [&](const std::string& key, const std::string& value) {
    if (json.size() > 1) json += ", ";
    json += "\"" + key + "\": " + value;
  };
  for (const char* key : kKeys) {
    const unsigned c = next();
    switch (c % 8) {
      case 0: break;  // absent
      case 1: case 2: add(key, std::to_string(next())); break;
      case 3: case 4: case 5: add(key, kEdges[next() % (sizeof kEdges / sizeof *kEdges)]); break;
      case 6: add(key, c & 8 ? "1.5" : "1e3"); break;
      case 7: add(key, c & 8 ? "\"512\"" : "null"); break;
    }
  }
  const unsigned extras = next();
  if (extras & 1) add("model_type", extras & 2 ? "\"whisper\"" : "\"bert\"");
  if (extras & 4) add("activation_function", extras & 8 ? "\"gelu\"" : "\"relu\"");
  if (extras & 16) add("scale_embedding", extras & 32 ? "false" : "true");
  if (extras & 64) add("torch_dtype", extras & 128 ? "\"float16\"" : "\"bfloat16\"");
  return json + "}";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  const int mode = data[0] % 4;
  switch (mode) {
    case 0:
    case 3: {
      const std::string built = mode == 3 ? structured_config(payload) : std::string();
      auto hp = parse_hf_config(mode == 3 ? std::string_view(built) : payload);
      if (!hp) {
        if (hp.message().rfind("config.json: ", 0) != 0) fuzz::fail("parse_hf_config error does not start with config.json");
        break;
      }
      if (!validate_hparams(*hp).ok()) fuzz::fail("parse_hf_config accepted hparams that validate_hparams refuses");
      break;
    }
    case 1: {
      auto base = standard_hparams("base");
      if (!base) fuzz::fail("no standard hparams for base");
      auto heads = parse_hf_alignment_heads(payload, *base);
      if (!heads) {
        if (heads.message().empty()) fuzz::fail("parse_hf_alignment_heads error without a message");
        break;
      }
      for (const auto& [layer, head] : *heads)
        if (layer < 0 || layer >= base->n_text_layer || head < 0 || head >= base->n_text_head)
          fuzz::fail("alignment head outside the model");
      break;
    }
    case 2: {
      const std::string name(payload);
      const std::string openai = hf_to_openai_name(name);
      if (!openai.empty() && openai != name && openai_to_hf_name(openai) != name)
        fuzz::fail("hf_to_openai_name is not inverted by openai_to_hf_name");
      (void)openai_to_hf_name(name);
      break;
    }
  }
  return 0;
}
