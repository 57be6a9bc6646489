// whisper.cpp's legacy "ggml" model file: reading and writing.
//
// Layout (all little-endian): u32 magic 0x67676d6c; 11 int32 hparams; the mel
// filterbank (int32 n_mels, int32 n_bins, float32[n_mels * n_bins]); the
// vocabulary (int32 count, then per token u32 length and raw bytes); then
// tensor records until the end of the file: int32 n_dims, int32 name length,
// int32 type, int32 ne[n_dims] (innermost first), the name, and the data.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "model/ggml_quants.h"
#include "model/hparams.h"

namespace ama {

inline constexpr uint32_t kGgmlMagic = 0x67676d6c;

struct GgmlHeader {
  HParams hp;
  int n_filter_bins = 0;
  std::vector<float> mel_filters;  // [n_mels][n_filter_bins]
  std::vector<std::string> vocab;  // regular BPE tokens, id order
};

struct GgmlTensorRecord {
  std::string name;
  int32_t type = 0;
  std::vector<int> shape;  // PyTorch order (outermost first)
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;  // stored size in the file
};

class GgmlReader {
 public:
  static Result<GgmlReader> open(const std::string& path);
  GgmlReader() = default;
  GgmlReader(GgmlReader&&) = default;
  GgmlReader& operator=(GgmlReader&&) = default;

  // Reads magic, hparams, filters and vocab (hparams are validated). The
  // ftype may be f32 (0), f16 (1) or quantized (2000 + ggml_ftype).
  Result<GgmlHeader> read_header();
  // Next tensor's header, or an empty name at a clean end of file. Checks
  // the type (known; a quantized type must be the one the ftype names), that
  // rows divide into its blocks, and that the data is in the file.
  Result<GgmlTensorRecord> next_tensor();
  // Reads the current tensor's data as float32, decoding f16 and quantized
  // blocks in bounded chunks (the temporary stays under 1 MiB).
  Status read_tensor_data(const GgmlTensorRecord& rec, float* out);

  const std::string& path() const { return path_; }

 private:
  Status read_bytes(void* dst, uint64_t n, const char* what);
  Result<int32_t> read_i32(const char* what);
  Status check_ftype(int32_t ftype);

  std::string path_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
  uint64_t size_ = 0;
  uint64_t offset_ = 0;
  int32_t ftype_ = 0;
  std::optional<GgmlType> quant_;  // the quantized type the header's ftype names
};

class GgmlWriter {
 public:
  static Result<GgmlWriter> create(const std::string& path);
  GgmlWriter() = default;
  GgmlWriter(GgmlWriter&&) = default;
  GgmlWriter& operator=(GgmlWriter&&) = default;
  Status write_header(const GgmlHeader& header);
  // data holds n_elements float32 values; stored as `type` (quantized types
  // need a row length shape.back() that is a multiple of the block size).
  Status write_tensor(const std::string& name, const std::vector<int>& shape, GgmlType type, const float* data);
  Status close();

 private:
  Status write_bytes(const void* src, size_t n);
  std::string path_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
};

}  // namespace ama
