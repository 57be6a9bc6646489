// How fuzz_ggml.cpp turns a fuzz input into a ggml file; shared with
// tests/test_fuzz_regressions.cpp, which reads the seeds the same way.
//
// One mode byte, then the file. Even mode: the rest is the whole file. Odd
// mode: the next byte picks the header's ftype (version * 1000 + type, as
// whisper.cpp's quantize writes it: version = bits 5-6, type = bits 0-4) and
// the rest is appended to a fixed valid header (the smallest hparams
// validate_hparams accepts, 1 mel filter, an empty vocabulary: 864 bytes), so
// that mutations land on the tensor records instead of the header checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/ggml_file.h"

namespace ama::fuzz {

inline void put_i32(std::vector<uint8_t>& b, int32_t v) {
  uint8_t p[4];
  std::memcpy(p, &v, 4);
  b.insert(b.end(), p, p + 4);
}

inline std::vector<uint8_t> ggml_fixed_header(int32_t ftype) {
  std::vector<uint8_t> b;
  put_i32(b, static_cast<int32_t>(kGgmlMagic));
  const int32_t hp[11] = {51865, kAudioCtx, 4, 1, 1, 4, 4, 1, 1, 1, ftype};
  for (int32_t v : hp) put_i32(b, v);
  put_i32(b, 1);
  put_i32(b, kNFft / 2 + 1);
  for (int i = 0; i < kNFft / 2 + 1; ++i) put_i32(b, 0x3c23d70a);  // 0.01f
  put_i32(b, 0);
  return b;
}

// Empty for an input too short to say what it is.
inline std::vector<uint8_t> ggml_fuzz_file(const uint8_t* data, size_t size) {
  std::vector<uint8_t> file;
  if (size < 1) return file;
  if (data[0] & 1) {
    if (size < 2) return file;
    file = ggml_fixed_header(((data[1] >> 5) & 3) * 1000 + (data[1] & 31));
    file.insert(file.end(), data + 2, data + size);
  } else {
    file.assign(data + 1, data + size);
  }
  return file;
}

}  // namespace ama::fuzz
