// libFuzzer target: the Hugging Face checkpoint's JSON files
// (src/model/hf_checkpoint.h): config.json (parse_hf_config),
// generation_config.json's alignment heads, and the tensor-name mapping.
//
// Input: one mode byte, then the payload.
//   0: parse_hf_config(payload); 1: parse_hf_alignment_heads(payload) against
//   base's hparams; 2: hf_to_openai_name / openai_to_hf_name(payload).
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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto hp = parse_hf_config(payload);
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
