#include "model/ggml_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sys/stat.h>

#include "core/half.h"

namespace ama {

Result<GgmlReader> GgmlReader::open(const std::string& path) {
  GgmlReader r;
  r.path_ = path;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return make_error(path + ": cannot open model file: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return make_error(path + ": not a regular file");
  r.file_.reset(std::fopen(path.c_str(), "rb"));
  if (!r.file_) return make_error(path + ": cannot open model file: " + std::strerror(errno));
  r.size_ = static_cast<uint64_t>(st.st_size);
  return r;
}

Status GgmlReader::read_bytes(void* dst, uint64_t n, const char* what) {
  if (n > size_ - offset_)
    return make_error(path_ + ": truncated file: " + what + " needs " + std::to_string(n) + " bytes at offset " +
                      std::to_string(offset_) + ", but the file has " + std::to_string(size_) + " bytes");
  if (n > 0 && std::fread(dst, 1, n, file_.get()) != n)
    return make_error(path_ + ": read error at offset " + std::to_string(offset_));
  offset_ += n;
  return Status::Ok();
}

Result<int32_t> GgmlReader::read_i32(const char* what) {
  int32_t v = 0;
  AMA_TRY(read_bytes(&v, 4, what));
  return v;
}

// hparams.ftype is kGgmlQntVersionFactor * version + ggml_ftype; the
// version only means something for quantized models (whisper.cpp's quantize
// writes 2; versions 0 and 1, before May 2023, had other q4/q5/q8 layouts).
Status GgmlReader::check_ftype(int32_t ftype) {
  const std::string f = "ftype " + std::to_string(ftype);
  const int32_t version = ftype / kGgmlQntVersionFactor;
  const auto t = ggml_type_of_ftype(ftype % kGgmlQntVersionFactor);
  if (!t)
    return make_error(path_ + ": " + f + " is not a model type we read (f32, f16, or whisper.cpp's quantize types " +
                      ggml_quant_type_list() + ")");
  if (!ggml_is_quantized(t->type)) {
    if (version != 0)
      return make_error(path_ + ": " + f + " is not a known model type (an " + t->name +
                        " model with quantization version " + std::to_string(version) + ")");
    return Status::Ok();
  }
  if (version < kGgmlQntVersion)
    return make_error(path_ + ": " + f + ": a " + t->name + " model with ggml quantization version " +
                      std::to_string(version) +
                      " (before May 2023), whose block layouts are not supported; re-quantize it from the f16 model "
                      "with a current whisper.cpp");
  if (version > kGgmlQntVersion)
    return make_error(path_ + ": " + f + ": a " + t->name + " model with ggml quantization version " +
                      std::to_string(version) + ", newer than the version " + std::to_string(kGgmlQntVersion) +
                      " we read");
  quant_ = t->type;
  return Status::Ok();
}

Result<GgmlHeader> GgmlReader::read_header() {
  GgmlHeader h;
  uint32_t magic = 0;
  AMA_TRY(read_bytes(&magic, 4, "magic"));
  if (magic != kGgmlMagic) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", magic);
    std::string hint = magic == 0x46554747 ? " (this is a GGUF file; only whisper.cpp's legacy ggml format is supported)"
                                            : "";
    return make_error(path_ + ": bad magic " + hex + ", expected 0x67676d6c (whisper.cpp ggml model)" + hint);
  }
  int32_t v[11];
  AMA_TRY(read_bytes(v, sizeof v, "hparams"));
  HParams& hp = h.hp;
  hp.n_vocab = v[0];
  hp.n_audio_ctx = v[1];
  hp.n_audio_state = v[2];
  hp.n_audio_head = v[3];
  hp.n_audio_layer = v[4];
  hp.n_text_ctx = v[5];
  hp.n_text_state = v[6];
  hp.n_text_head = v[7];
  hp.n_text_layer = v[8];
  hp.n_mels = v[9];
  hp.ftype = v[10];
  ftype_ = hp.ftype;
  if (Status s = validate_hparams(hp); !s) return make_error(path_ + ": " + s.message());
  AMA_TRY(check_ftype(hp.ftype));

  auto n_mels = read_i32("mel filter count");
  if (!n_mels) return n_mels.error();
  auto n_bins = read_i32("mel filter bins");
  if (!n_bins) return n_bins.error();
  if (*n_mels != hp.n_mels)
    return make_error(path_ + ": mel filterbank has " + std::to_string(*n_mels) + " filters but hparams say n_mels = " +
                      std::to_string(hp.n_mels));
  if (*n_bins != kNFft / 2 + 1)
    return make_error(path_ + ": mel filterbank has " + std::to_string(*n_bins) + " frequency bins, expected " +
                      std::to_string(kNFft / 2 + 1));
  h.n_filter_bins = *n_bins;
  h.mel_filters.resize(static_cast<size_t>(*n_mels) * *n_bins);
  AMA_TRY(read_bytes(h.mel_filters.data(), h.mel_filters.size() * 4, "mel filters"));

  auto n_tokens = read_i32("vocabulary size");
  if (!n_tokens) return n_tokens.error();
  if (*n_tokens < 0 || *n_tokens > hp.n_vocab)
    return make_error(path_ + ": vocabulary holds " + std::to_string(*n_tokens) + " tokens, but n_vocab is " +
                      std::to_string(hp.n_vocab));
  h.vocab.resize(*n_tokens);
  for (int i = 0; i < *n_tokens; ++i) {
    uint32_t len = 0;
    AMA_TRY(read_bytes(&len, 4, "token length"));
    if (len > 1024) return make_error(path_ + ": token " + std::to_string(i) + " has absurd length " + std::to_string(len));
    h.vocab[i].resize(len);
    AMA_TRY(read_bytes(h.vocab[i].data(), len, "token bytes"));
  }
  return h;
}

Result<GgmlTensorRecord> GgmlReader::next_tensor() {
  GgmlTensorRecord rec;
  if (offset_ == size_) return rec;
  int32_t head[3];
  AMA_TRY(read_bytes(head, sizeof head, "tensor header"));
  const int32_t n_dims = head[0], name_len = head[1];
  rec.type = head[2];
  if (n_dims < 1 || n_dims > 4)
    return make_error(path_ + ": tensor at offset " + std::to_string(offset_ - 12) + " has " + std::to_string(n_dims) +
                      " dimensions (expected 1 to 4)");
  if (name_len < 1 || name_len > 256)
    return make_error(path_ + ": tensor at offset " + std::to_string(offset_ - 12) + " has a name of length " +
                      std::to_string(name_len));
  int32_t ne[4];
  AMA_TRY(read_bytes(ne, 4 * n_dims, "tensor dimensions"));
  rec.name.resize(name_len);
  AMA_TRY(read_bytes(rec.name.data(), name_len, "tensor name"));
  rec.n_elements = 1;
  for (int d = n_dims - 1; d >= 0; --d) {
    if (ne[d] < 1 || ne[d] > (1 << 24))
      return make_error(path_ + ": tensor '" + rec.name + "' has absurd dimension " + std::to_string(ne[d]));
    rec.shape.push_back(ne[d]);
    rec.n_elements *= static_cast<uint64_t>(ne[d]);
    // n_elements <= 2^39 and ne[d] <= 2^24 before the product: it cannot wrap around.
    if (rec.n_elements > (uint64_t{1} << 39))
      return make_error(path_ + ": tensor '" + rec.name + "' has an absurd number of elements");
  }
  const std::string what = path_ + ": tensor '" + rec.name + "'";
  const auto info = ggml_type_info(rec.type);
  if (!info) {
    if (rec.type == 9 || rec.type == 15)
      return make_error(what + " has type " + ggml_type_name(rec.type) + ", which ggml uses only for activations");
    return make_error(what + " has unknown type id " + std::to_string(rec.type) + " (known: f32, f16, " +
                      ggml_quant_type_list() + ")");
  }
  if (ggml_is_quantized(info->type)) {
    if (!quant_)
      return make_error(what + " is " + info->name + ", but the header's ftype " + std::to_string(ftype_) +
                        " says an unquantized model");
    if (*quant_ != info->type)
      return make_error(what + " is " + info->name + ", but the header's ftype " + std::to_string(ftype_) + " says " +
                        ggml_type_name(static_cast<int32_t>(*quant_)));
    if (ne[0] % info->block != 0)
      return make_error(what + " has rows of " + std::to_string(ne[0]) + " elements, not a multiple of " +
                        info->name + "'s block size " + std::to_string(info->block));
  }
  // Check that the data is there before the caller allocates n_elements floats.
  rec.n_bytes = ggml_row_bytes(*info, static_cast<uint64_t>(ne[0])) * (rec.n_elements / static_cast<uint64_t>(ne[0]));
  if (rec.n_bytes > size_ - offset_)
    return make_error(path_ + ": truncated file: tensor '" + rec.name + "' needs " + std::to_string(rec.n_bytes) +
                      " bytes at offset " + std::to_string(offset_) + ", but the file has " + std::to_string(size_) +
                      " bytes");
  return rec;
}

Status GgmlReader::read_tensor_data(const GgmlTensorRecord& rec, float* out) {
  const std::string what = "tensor '" + rec.name + "'";
  const auto info = ggml_type_info(rec.type);
  if (!info || rec.shape.empty() || rec.shape.back() % info->block != 0)
    return make_error(path_ + ": " + what + ": bad tensor record (type " + ggml_type_name(rec.type) + ")");
  if (info->type == GgmlType::f32) return read_bytes(out, rec.n_elements * 4, what.c_str());
  // f16 and quantized blocks: decode in chunks so that the temporary stays
  // small (64 Ki elements: 128 KiB of f16, 34 KiB of q8_0). Rows are whole
  // blocks, so a chunk of whole blocks may cross rows.
  constexpr uint64_t kChunk = 1 << 16;  // a multiple of every block size (1, 32, 256)
  std::vector<uint8_t> buf(ggml_row_bytes(*info, kChunk));
  const bool quantized = ggml_is_quantized(info->type);
  for (uint64_t done = 0; done < rec.n_elements; done += kChunk) {
    const uint64_t n = std::min(kChunk, rec.n_elements - done);
    AMA_TRY(read_bytes(buf.data(), ggml_row_bytes(*info, n), what.c_str()));
    dequantize_row(info->type, buf.data(), n, out + done);
    // A block's f16 scale of inf or NaN (a corrupt file) would spread through
    // every product it touches: report it rather than load it.
    if (quantized)
      for (uint64_t i = 0; i < n; ++i)
        if (!std::isfinite(out[done + i]))
          return make_error(path_ + ": " + what + " (" + info->name + ") decodes to a non-finite value at element " +
                            std::to_string(done + i) + " (a corrupt block scale)");
  }
  return Status::Ok();
}

Result<GgmlWriter> GgmlWriter::create(const std::string& path) {
  GgmlWriter w;
  w.path_ = path;
  w.file_.reset(std::fopen(path.c_str(), "wb"));
  if (!w.file_) return make_error(path + ": cannot create file: " + std::strerror(errno));
  return w;
}

Status GgmlWriter::write_bytes(const void* src, size_t n) {
  if (n > 0 && std::fwrite(src, 1, n, file_.get()) != n) return make_error(path_ + ": write failed");
  return Status::Ok();
}

Status GgmlWriter::write_header(const GgmlHeader& h) {
  const HParams& hp = h.hp;
  const int32_t v[12] = {static_cast<int32_t>(kGgmlMagic), hp.n_vocab, hp.n_audio_ctx, hp.n_audio_state,
                         hp.n_audio_head, hp.n_audio_layer, hp.n_text_ctx, hp.n_text_state, hp.n_text_head,
                         hp.n_text_layer, hp.n_mels, hp.ftype};
  AMA_TRY(write_bytes(v, sizeof v));
  const int32_t f[2] = {hp.n_mels, h.n_filter_bins};
  AMA_TRY(write_bytes(f, sizeof f));
  AMA_TRY(write_bytes(h.mel_filters.data(), h.mel_filters.size() * 4));
  const int32_t n = static_cast<int32_t>(h.vocab.size());
  AMA_TRY(write_bytes(&n, 4));
  for (const auto& t : h.vocab) {
    const uint32_t len = static_cast<uint32_t>(t.size());
    AMA_TRY(write_bytes(&len, 4));
    AMA_TRY(write_bytes(t.data(), t.size()));
  }
  return Status::Ok();
}

Status GgmlWriter::write_tensor(const std::string& name, const std::vector<int>& shape, GgmlType type,
                                const float* data) {
  const int32_t head[3] = {static_cast<int32_t>(shape.size()), static_cast<int32_t>(name.size()),
                           static_cast<int32_t>(type)};
  AMA_TRY(write_bytes(head, sizeof head));
  uint64_t n = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    const int32_t ne = shape[d];
    AMA_TRY(write_bytes(&ne, 4));
    n *= static_cast<uint64_t>(shape[d]);
  }
  AMA_TRY(write_bytes(name.data(), name.size()));
  const auto info = ggml_type_info(static_cast<int32_t>(type));
  if (!info) return make_error(path_ + ": tensor '" + name + "': cannot write type " + ggml_type_name(static_cast<int32_t>(type)));
  const uint64_t row = shape.empty() ? n : static_cast<uint64_t>(shape.back());
  if (row == 0 || row % info->block != 0)
    return make_error(path_ + ": tensor '" + name + "' has rows of " + std::to_string(row) +
                      " elements, not a multiple of " + info->name + "'s block size " + std::to_string(info->block));
  if (type == GgmlType::f32) return write_bytes(data, n * 4);
  // Encode in chunks of whole rows (at least one) to bound the temporary.
  const uint64_t rows_per_chunk = std::max<uint64_t>(1, (uint64_t{1} << 16) / row);
  std::vector<uint8_t> buf(ggml_row_bytes(*info, rows_per_chunk * row));
  for (uint64_t r = 0; r < n / row; r += rows_per_chunk) {
    const uint64_t m = std::min(rows_per_chunk, n / row - r) * row;
    if (Status s = quantize_row(type, data + r * row, m, buf.data()); !s)
      return make_error(path_ + ": tensor '" + name + "' as " + info->name + ": " + s.message());
    AMA_TRY(write_bytes(buf.data(), ggml_row_bytes(*info, m)));
  }
  return Status::Ok();
}

Status GgmlWriter::close() {
  std::FILE* f = file_.release();
  if (f && std::fclose(f) != 0) return make_error(path_ + ": close failed");
  return Status::Ok();
}

}  // namespace ama
