#include "model/tensor_source.h"

#include <limits>

#include "model/ggml_file.h"
#include "model/safetensors.h"

namespace ama {

std::string TensorRecord::display() const {
  if (stored_name.empty() || stored_name == name) return "'" + name + "'";
  return "'" + stored_name + "' (" + name + ")";
}

namespace {

class GgmlSource final : public TensorSource {
 public:
  explicit GgmlSource(GgmlReader reader) : reader_(std::move(reader)) {}
  const std::string& path() const override { return reader_.path(); }

  Result<TensorRecord> next() override {
    auto rec = reader_.next_tensor();
    if (!rec) return rec.error();
    current_ = std::move(rec.value());
    TensorRecord out;
    out.name = current_.name;
    out.shape = current_.shape;
    out.n_elements = current_.n_elements;
    return out;
  }

  Status read(const TensorRecord& rec, float* out) override {
    if (rec.name != current_.name) return make_error(path() + ": tensor '" + rec.name + "' is not the current one");
    return reader_.read_tensor_data(current_, out);
  }

 private:
  GgmlReader reader_;
  GgmlTensorRecord current_;
};

class SafetensorsSource final : public TensorSource {
 public:
  SafetensorsSource(SafetensorsFile file, std::function<std::string(const std::string&)> rename)
      : file_(std::move(file)), rename_(std::move(rename)) {}
  const std::string& path() const override { return file_.path(); }

  Result<TensorRecord> next() override {
    const auto& all = file_.tensors();
    for (; at_ < all.size(); ++at_) {
      const StTensorInfo& t = all[at_];
      const std::string name = rename_ ? rename_(t.name) : t.name;
      if (name.empty()) continue;  // a tied duplicate the caller does not want
      if (t.dtype != StDtype::f32 && t.dtype != StDtype::f16 && t.dtype != StDtype::bf16 && t.dtype != StDtype::f64)
        return make_error(path() + ": tensor '" + t.name + "' has dtype " + st_dtype_name(t.dtype) +
                          "; model weights must be F32, F16, BF16 or F64");
      TensorRecord rec;
      rec.name = name;
      rec.stored_name = t.name;
      rec.n_elements = t.n_elements;
      for (int64_t d : t.shape) {
        if (d > std::numeric_limits<int>::max())
          return make_error(path() + ": tensor " + rec.display() + " has absurd dimension " + std::to_string(d));
        rec.shape.push_back(static_cast<int>(d));
      }
      current_ = at_++;
      return rec;
    }
    return TensorRecord{};
  }

  Status read(const TensorRecord& rec, float* out) override {
    const auto& all = file_.tensors();
    if (current_ >= all.size() || all[current_].name != rec.stored_name)
      return make_error(path() + ": tensor " + rec.display() + " is not the current one");
    // pread into the caller's buffer (F32) or through a 64 K-element block
    // (F16, BF16): the file is not mapped, so its pages are page cache, not
    // our resident memory, and peak RSS stays the packed weights plus one
    // float32 tensor (see load_model).
    return file_.read_f32(all[current_], out);
  }

 private:
  SafetensorsFile file_;
  std::function<std::string(const std::string&)> rename_;
  size_t at_ = 0;
  size_t current_ = std::numeric_limits<size_t>::max();
};

}  // namespace

std::unique_ptr<TensorSource> ggml_tensor_source(GgmlReader reader) {
  return std::make_unique<GgmlSource>(std::move(reader));
}

Result<std::unique_ptr<TensorSource>> safetensors_tensor_source(
    const std::string& path, std::function<std::string(const std::string&)> rename) {
  auto file = SafetensorsFile::open(path);
  if (!file) return file.error();
  return std::unique_ptr<TensorSource>(std::make_unique<SafetensorsSource>(std::move(file.value()), std::move(rename)));
}

}  // namespace ama
