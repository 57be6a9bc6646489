#include "model/ggml_file.h"

#include <cstring>
#include <sys/stat.h>

#include "core/half.h"

namespace ama {

std::string ggml_type_name(int32_t type) {
  switch (type) {
    case 0: return "f32";
    case 1: return "f16";
    case 2: return "q4_0";
    case 3: return "q4_1";
    case 6: return "q5_0";
    case 7: return "q5_1";
    case 8: return "q8_0";
    case 9: return "q8_1";
    case 10: return "q2_k";
    case 11: return "q3_k";
    case 12: return "q4_k";
    case 13: return "q5_k";
    case 14: return "q6_k";
    case 15: return "q8_k";
    default: return "type " + std::to_string(type);
  }
}

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
  if (Status s = validate_hparams(hp); !s) return make_error(path_ + ": " + s.message());
  if (hp.ftype % 1000 > 1 || hp.ftype >= 1000)
    return make_error(path_ + ": quantized model (ftype " + std::to_string(hp.ftype) +
                      ") is not supported yet; use an f16 or f32 ggml model");

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
  if (rec.type != 0 && rec.type != 1)
    return make_error(path_ + ": tensor '" + rec.name + "' has type " + ggml_type_name(rec.type) +
                      "; quantized tensors are not supported yet (use an f16 or f32 model)");
  // Check that the data is there before the caller allocates n_elements floats.
  const uint64_t elem_size = rec.type == 0 ? 4 : 2;
  if (rec.n_elements > (size_ - offset_) / elem_size)
    return make_error(path_ + ": truncated file: tensor '" + rec.name + "' needs " +
                      std::to_string(rec.n_elements * elem_size) + " bytes at offset " + std::to_string(offset_) +
                      ", but the file has " + std::to_string(size_) + " bytes");
  return rec;
}

Status GgmlReader::read_tensor_data(const GgmlTensorRecord& rec, float* out) {
  const std::string what = "tensor '" + rec.name + "'";
  if (rec.type == 0) return read_bytes(out, rec.n_elements * 4, what.c_str());
  // f16: convert in blocks so that the temporary stays small.
  constexpr uint64_t kBlock = 1 << 16;
  std::vector<uint16_t> buf(kBlock);
  for (uint64_t done = 0; done < rec.n_elements; done += kBlock) {
    uint64_t n = std::min(kBlock, rec.n_elements - done);
    AMA_TRY(read_bytes(buf.data(), n * 2, what.c_str()));
    for (uint64_t i = 0; i < n; ++i) out[done + i] = f16_to_f32(buf[i]);
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
  if (type == GgmlType::f32) return write_bytes(data, n * 4);
  std::vector<uint16_t> buf(n);
  for (uint64_t i = 0; i < n; ++i) buf[i] = f32_to_f16(data[i]);
  return write_bytes(buf.data(), n * 2);
}

Status GgmlWriter::close() {
  std::FILE* f = file_.release();
  if (f && std::fclose(f) != 0) return make_error(path_ + ": close failed");
  return Status::Ok();
}

}  // namespace ama
