// A stream of named float tensors, one at a time, from whatever file format
// holds a model: the loader (whisper_model.cpp) asks for the next record
// (name, shape), checks it, reads its data as float32 into its own buffer,
// packs it and frees the buffer before asking for the next one. So loading
// never holds more than one unpacked tensor, whatever the format.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"

namespace ama {

class GgmlReader;

struct TensorRecord {
  std::string name;         // openai/whisper's name ("encoder.blocks.0.attn.query.weight")
  std::string stored_name;  // the name in the file, when the format spells it differently
  std::vector<int> shape;   // PyTorch order (outermost first)
  uint64_t n_elements = 0;

  // For messages: "'name'" or "'stored' (name)".
  std::string display() const;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // The file or directory being read; messages start with it.
  virtual const std::string& path() const = 0;
  // The next tensor in storage order, or a record with an empty name at the end.
  virtual Result<TensorRecord> next() = 0;
  // The data of the record next() returned last, as n_elements float32 values.
  virtual Status read(const TensorRecord& rec, float* out) = 0;
};

// The tensors of a ggml file whose header has already been read.
std::unique_ptr<TensorSource> ggml_tensor_source(GgmlReader reader);

// The tensors of a safetensors file, in the order of their bytes in the
// file (sequential reads). `rename` maps a stored name to openai/whisper's:
// it returns the name, "" to skip the tensor (a tied duplicate), or the
// stored name unchanged when it knows no mapping (the loader then reports
// it as unexpected). F32, F16, BF16 and F64 data convert to float32; other
// dtypes are an error naming the tensor.
Result<std::unique_ptr<TensorSource>> safetensors_tensor_source(
    const std::string& path, std::function<std::string(const std::string&)> rename);

}  // namespace ama
