// Hugging Face's safetensors format: reading, and a small float writer.
//
// Layout: u64 little-endian N; N bytes of UTF-8 JSON (the header, possibly
// padded with spaces); then the byte buffer. The header is an object mapping
// each tensor name to {"dtype": "F32", "shape": [d0, d1, ...],
// "data_offsets": [begin, end]} (offsets relative to the byte buffer,
// row-major little-endian data), plus an optional "__metadata__" object of
// string to string.
//
// Validation follows the reference implementation (huggingface/safetensors,
// `Metadata::validate`): the header is at most 100 MB, the tensors' byte
// ranges tile the buffer exactly (contiguous from 0, no gaps, no overlaps,
// ending at the end of the file) and each range is exactly
// n_elements * dtype size. Every malformed file gives an Error, never a
// crash, an unbounded allocation or a hang: the header is parsed with a SAX
// handler into our own records (no JSON document tree, so memory stays a
// small multiple of the header size), JSON nesting is capped at 16 levels,
// shapes at 32 dimensions, and element counts may not overflow 64 bits.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

// The dtypes of the format. Only f32, f16, bf16 and f64 convert to float32.
enum class StDtype {
  boolean, u8, i8, f8_e5m2, f8_e4m3, f8_e8m0, i16, u16, f16, bf16, i32, u32, f32, f64, i64, u64, f4, f6_e2m3, f6_e3m2
};
const char* st_dtype_name(StDtype t);  // as spelled in files: "F32", "BF16", ...
int st_dtype_bits(StDtype t);          // 4, 6, 8, 16, 32 or 64

struct StTensorInfo {
  std::string name;
  StDtype dtype = StDtype::f32;
  std::vector<int64_t> shape;  // outermost first; empty for a scalar
  uint64_t n_elements = 0;
  uint64_t begin = 0, end = 0;  // byte range within the data buffer
};

class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit

  static Result<SafetensorsFile> open(const std::string& path);

  SafetensorsFile() = default;
  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;

  const std::string& path() const { return path_; }
  // In data-offset order (the order of the bytes in the file).
  const std::vector<StTensorInfo>& tensors() const { return tensors_; }
  const StTensorInfo* find(const std::string& name) const;  // null when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_start() const { return data_start_; }  // file offset of the byte buffer (8 + N)

  // Reads a tensor as float32, converting F16, BF16 and F64; other dtypes are
  // an error. out holds n_elements floats. Const and thread-safe (pread).
  Status read_f32(const StTensorInfo& t, float* out) const;
  Result<std::vector<float>> read_f32(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<int> fd_;  // closes on last release
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<StTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Parses a header (the JSON text alone) against a data buffer of data_size
// bytes. open() uses it; exposed for tests. `where` prefixes messages.
Status parse_safetensors_header(const char* json, size_t size, uint64_t data_size, const std::string& where,
                                std::vector<StTensorInfo>& tensors, std::map<std::string, std::string>& metadata);

// Writes float32 tensors (stored as F32, F16 or BF16) in the order given.
struct StWriteTensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;  // n_elements values
  StDtype dtype = StDtype::f32;  // f32, f16 or bf16
};
Status write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace ama
