#include "model/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include "core/half.h"

namespace ama {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so is every host we run on");

namespace {

constexpr int kMaxJsonDepth = 16;  // a valid header needs 3 (root, entry, shape array)
constexpr size_t kMaxDims = 32;    // numpy's limit is 64; no checkpoint comes close

struct DtypeEntry {
  StDtype type;
  const char* name;
  int bits;
};
constexpr DtypeEntry kDtypes[] = {
    {StDtype::boolean, "BOOL", 8},     {StDtype::u8, "U8", 8},           {StDtype::i8, "I8", 8},
    {StDtype::f8_e5m2, "F8_E5M2", 8},  {StDtype::f8_e4m3, "F8_E4M3", 8}, {StDtype::f8_e8m0, "F8_E8M0", 8},
    {StDtype::i16, "I16", 16},         {StDtype::u16, "U16", 16},        {StDtype::f16, "F16", 16},
    {StDtype::bf16, "BF16", 16},       {StDtype::i32, "I32", 32},        {StDtype::u32, "U32", 32},
    {StDtype::f32, "F32", 32},         {StDtype::f64, "F64", 64},        {StDtype::i64, "I64", 64},
    {StDtype::u64, "U64", 64},         {StDtype::f4, "F4", 4},           {StDtype::f6_e2m3, "F6_E2M3", 6},
    {StDtype::f6_e3m2, "F6_E3M2", 6},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// JSON text for messages: printable ASCII kept, the rest escaped, at most 80 characters.
std::string show_name(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > 80) out += "...";
  return out + "'";
}

// SAX handler: builds the tensor records directly, so that no JSON tree is
// ever held, and stops at the first structural error with a message.
class HeaderSax {
 public:
  using json = nlohmann::json;
  HeaderSax(std::vector<StTensorInfo>& tensors, std::map<std::string, std::string>& metadata)
      : tensors_(tensors), metadata_(metadata) {}

  const std::string& error() const { return error_; }

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(json::number_integer_t v) {
    if (ctx_ == Ctx::shape || ctx_ == Ctx::offsets)
      return fail(entry() + ": " + array_name() + " holds the negative number " + std::to_string(v));
    return scalar("a number");
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (ctx_ == Ctx::shape) {
      if (cur_.shape.size() >= kMaxDims) return fail(entry() + ": shape has more than " + std::to_string(kMaxDims) + " dimensions");
      if (v > static_cast<uint64_t>(INT64_MAX)) return fail(entry() + ": shape dimension " + std::to_string(v) + " is absurd");
      cur_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (ctx_ == Ctx::offsets) {
      if (n_offsets_ >= 2) return fail(entry() + ": data_offsets has more than 2 entries");
      offsets_[n_offsets_++] = v;
      return true;
    }
    return scalar("a number");
  }
  bool number_float(json::number_float_t, const json::string_t& text) {
    if (ctx_ == Ctx::shape || ctx_ == Ctx::offsets)
      return fail(entry() + ": " + array_name() + " holds " + text + ", which is not an integer (or overflows 64 bits)");
    return scalar("a number");
  }
  bool binary(json::binary_t&) { return fail("header holds binary data"); }
  bool string(json::string_t& s) {
    if (ctx_ == Ctx::metadata) {
      if (!metadata_.emplace(key_, s).second) return fail("__metadata__ has the key " + show_name(key_) + " twice");
      return true;
    }
    if (ctx_ == Ctx::tensor && field_ == Field::dtype) {
      const DtypeEntry* d = find_dtype(s);
      if (!d) return fail(entry() + " has unknown dtype " + show_name(s));
      cur_.dtype = d->type;
      have_dtype_ = true;
      return true;
    }
    return scalar("a string");
  }

  bool start_object(std::size_t) {
    if (!push()) return false;
    switch (ctx_) {
      case Ctx::top: ctx_ = Ctx::root; return true;
      case Ctx::root:
        if (key_ == "__metadata__") {
          if (seen_metadata_) return fail("header has __metadata__ twice");
          seen_metadata_ = true;
          ctx_ = Ctx::metadata;
        } else {
          cur_ = StTensorInfo{};
          cur_.name = key_;
          have_dtype_ = have_shape_ = have_offsets_ = false;
          ctx_ = Ctx::tensor;
        }
        return true;
      case Ctx::tensor:
        if (field_ == Field::other) return skip();
        return fail(entry() + ": " + field_name() + " is an object");
      case Ctx::skip: return true;
      default: return scalar("an object");
    }
  }
  bool start_array(std::size_t) {
    if (!push()) return false;
    switch (ctx_) {
      case Ctx::tensor:
        if (field_ == Field::shape) {
          cur_.shape.clear();
          ctx_ = Ctx::shape;
          have_shape_ = true;
          return true;
        }
        if (field_ == Field::offsets) {
          n_offsets_ = 0;
          ctx_ = Ctx::offsets;
          have_offsets_ = true;
          return true;
        }
        if (field_ == Field::other) return skip();
        return fail(entry() + ": dtype is an array, not a string");
      case Ctx::skip: return true;
      default: return scalar("an array");
    }
  }
  bool key(json::string_t& k) {
    switch (ctx_) {
      case Ctx::root:
        if (k != "__metadata__" && !names_.insert(k).second) return fail("header lists tensor " + show_name(k) + " twice");
        key_ = k;
        return true;
      case Ctx::metadata: key_ = k; return true;
      case Ctx::tensor: {
        Field f = k == "dtype" ? Field::dtype : k == "shape" ? Field::shape : k == "data_offsets" ? Field::offsets : Field::other;
        bool dup = (f == Field::dtype && have_dtype_) || (f == Field::shape && have_shape_) ||
                   (f == Field::offsets && have_offsets_);
        if (dup) return fail(entry() + " has the field " + show_name(k) + " twice");
        field_ = f;
        return true;
      }
      default: return true;  // skipped content
    }
  }
  bool end_object() {
    --depth_;
    switch (ctx_) {
      case Ctx::root: ctx_ = Ctx::done; return true;
      case Ctx::metadata: ctx_ = Ctx::root; return true;
      case Ctx::tensor: {
        if (!have_dtype_) return fail(entry() + " has no dtype");
        if (!have_shape_) return fail(entry() + " has no shape");
        if (!have_offsets_) return fail(entry() + " has no data_offsets");
        uint64_t n = 1;
        for (int64_t d : cur_.shape)
          if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
            return fail(entry() + ": shape " + shape_str(cur_.shape) + " overflows 64 bits");
        cur_.n_elements = n;
        tensors_.push_back(std::move(cur_));
        ctx_ = Ctx::root;
        return true;
      }
      case Ctx::skip: return end_skipped();
      default: return fail("unbalanced header");
    }
  }
  bool end_array() {
    --depth_;
    switch (ctx_) {
      case Ctx::shape: ctx_ = Ctx::tensor; return true;
      case Ctx::offsets:
        if (n_offsets_ != 2) return fail(entry() + ": data_offsets has " + std::to_string(n_offsets_) + " entries, expected 2");
        cur_.begin = offsets_[0];
        cur_.end = offsets_[1];
        ctx_ = Ctx::tensor;
        return true;
      case Ctx::skip: return end_skipped();
      default: return fail("unbalanced header");
    }
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    if (error_.empty()) error_ = std::string("invalid JSON header: ") + ex.what();
    return false;
  }

 private:
  enum class Ctx { top, root, metadata, tensor, shape, offsets, skip, done };
  enum class Field { dtype, shape, offsets, other };

  bool fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  bool push() {
    if (++depth_ > kMaxJsonDepth) return fail("header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    return true;
  }
  // Enters an unknown field's object or array; depth_ already counts it.
  bool skip() {
    skip_base_ = depth_;
    ctx_ = Ctx::skip;
    return true;
  }
  bool end_skipped() {
    if (depth_ + 1 == skip_base_) ctx_ = Ctx::tensor;
    return true;
  }
  std::string entry() const { return "tensor " + show_name(cur_.name); }
  const char* array_name() const { return ctx_ == Ctx::shape ? "shape" : "data_offsets"; }
  std::string field_name() const {
    return field_ == Field::dtype ? "dtype" : field_ == Field::shape ? "shape" : "data_offsets";
  }
  // A scalar, or a value of the wrong kind, where the context expects something else.
  bool scalar(const char* what) {
    switch (ctx_) {
      case Ctx::top: return fail(std::string("the header is ") + what + ", not a JSON object");
      case Ctx::root:
        if (key_ == "__metadata__") return fail(std::string("__metadata__ is ") + what + ", not an object");
        return fail("tensor " + show_name(key_) + " is " + what + ", not an object");
      case Ctx::metadata: return fail("__metadata__ value " + show_name(key_) + " is " + what + ", not a string");
      case Ctx::tensor:
        if (field_ == Field::other) return true;  // unknown fields are ignored, as the reference does
        return fail(entry() + ": " + field_name() + " is " + what + (field_ == Field::dtype ? ", not a string" : ", not an array"));
      case Ctx::shape:
      case Ctx::offsets: return fail(entry() + ": " + array_name() + " holds " + what + ", not an integer");
      case Ctx::skip: return true;
      case Ctx::done: return fail("content after the header object");
    }
    return false;
  }

  std::vector<StTensorInfo>& tensors_;
  std::map<std::string, std::string>& metadata_;
  std::string error_;
  Ctx ctx_ = Ctx::top;
  int depth_ = 0;
  int skip_base_ = 0;
  std::string key_;
  Field field_ = Field::other;
  StTensorInfo cur_;
  bool have_dtype_ = false, have_shape_ = false, have_offsets_ = false, seen_metadata_ = false;
  uint64_t offsets_[2] = {0, 0};
  int n_offsets_ = 0;
  std::set<std::string> names_;  // tensor names seen, for duplicates
};

}  // namespace

const char* st_dtype_name(StDtype t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return "?";
}

int st_dtype_bits(StDtype t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.bits;
  return 0;
}

Status parse_safetensors_header(const char* text, size_t size, uint64_t data_size, const std::string& where,
                                std::vector<StTensorInfo>& tensors, std::map<std::string, std::string>& metadata) {
  tensors.clear();
  metadata.clear();
  HeaderSax sax(tensors, metadata);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text, text + size, &sax);
  } catch (const std::exception& e) {  // not expected from sax_parse; kept so that no input can escape as an exception
    return make_error(where + ": invalid JSON header: " + e.what());
  }
  if (!ok) return make_error(where + ": " + (sax.error().empty() ? std::string("invalid JSON header") : sax.error()));

  // Every tensor's range holds exactly its elements...
  for (const StTensorInfo& t : tensors) {
    uint64_t bits = 0;
    if (__builtin_mul_overflow(t.n_elements, static_cast<uint64_t>(st_dtype_bits(t.dtype)), &bits))
      return make_error(where + ": tensor " + show_name(t.name) + " of shape " + shape_str(t.shape) + " has too many bytes");
    if (bits % 8 != 0)
      return make_error(where + ": tensor " + show_name(t.name) + " of " + std::to_string(t.n_elements) + " " +
                        st_dtype_name(t.dtype) + " elements does not fill a whole number of bytes");
    if (t.begin > t.end)
      return make_error(where + ": tensor " + show_name(t.name) + " has data_offsets [" + std::to_string(t.begin) + ", " +
                        std::to_string(t.end) + "] that run backwards");
    if (t.end > data_size)
      return make_error(where + ": tensor " + show_name(t.name) + " ends at byte " + std::to_string(t.end) +
                        " of the data, but the file holds only " + std::to_string(data_size) + " bytes of data");
    if (t.end - t.begin != bits / 8)
      return make_error(where + ": tensor " + show_name(t.name) + " (" + st_dtype_name(t.dtype) + ", shape " +
                        shape_str(t.shape) + ") needs " + std::to_string(bits / 8) + " bytes, but data_offsets [" +
                        std::to_string(t.begin) + ", " + std::to_string(t.end) + "] hold " +
                        std::to_string(t.end - t.begin));
  }
  // ...and the ranges tile the data buffer: no overlap, no gap, nothing after.
  std::stable_sort(tensors.begin(), tensors.end(), [](const StTensorInfo& a, const StTensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const StTensorInfo* prev = nullptr;
  for (const StTensorInfo& t : tensors) {
    if (t.begin < pos)
      return make_error(where + ": tensor " + show_name(t.name) + " (bytes " + std::to_string(t.begin) + " to " +
                        std::to_string(t.end) + ") overlaps tensor " + show_name(prev->name));
    if (t.begin > pos)
      return make_error(where + ": " + std::to_string(t.begin - pos) + " unused bytes before tensor " + show_name(t.name) +
                        " at byte " + std::to_string(pos) + " of the data (the format requires contiguous tensors)");
    pos = t.end;
    prev = &t;
  }
  if (pos != data_size)
    return make_error(where + ": " + std::to_string(data_size - pos) + " bytes after the last tensor's data (" +
                      std::to_string(data_size) + " bytes of data, tensors cover " + std::to_string(pos) + ")");
  return Status::Ok();
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_error(path + ": cannot open: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return make_error(path + ": not a regular file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(path + ": cannot open: " + std::strerror(errno));
  f.fd_ = std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  f.file_size_ = static_cast<uint64_t>(st.st_size);
  if (f.file_size_ < 8)
    return make_error(path + ": " + std::to_string(f.file_size_) +
                      " bytes is too small for a safetensors file (it starts with an 8-byte header length)");
  uint8_t len_bytes[8];
  if (::pread(fd, len_bytes, 8, 0) != 8) return make_error(path + ": read error at offset 0");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderBytes)
    return make_error(path + ": header length " + std::to_string(n) + " is absurd (the limit is " +
                      std::to_string(kMaxHeaderBytes) + " bytes); not a safetensors file?");
  if (n > f.file_size_ - 8)
    return make_error(path + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                      std::to_string(f.file_size_) + " bytes); truncated file?");
  std::string header(n, '\0');
  for (uint64_t done = 0; done < n;) {
    const ssize_t r = ::pread(fd, header.data() + done, n - done, static_cast<off_t>(8 + done));
    if (r <= 0) return make_error(path + ": read error in the header at offset " + std::to_string(8 + done));
    done += static_cast<uint64_t>(r);
  }
  f.data_start_ = 8 + n;
  AMA_TRY(parse_safetensors_header(header.data(), header.size(), f.file_size_ - f.data_start_, path, f.tensors_,
                                   f.metadata_));
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const StTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::read_f32(const StTensorInfo& t, float* out) const {
  if (!fd_) return make_error("safetensors file is not open");
  const int width = st_dtype_bits(t.dtype) / 8;
  if (t.dtype != StDtype::f32 && t.dtype != StDtype::f16 && t.dtype != StDtype::bf16 && t.dtype != StDtype::f64)
    return make_error(path_ + ": tensor " + show_name(t.name) + " has dtype " + st_dtype_name(t.dtype) +
                      "; only F32, F16, BF16 and F64 can be read as float32");
  auto read_at = [&](void* dst, uint64_t bytes, uint64_t offset) -> Status {
    for (uint64_t done = 0; done < bytes;) {
      const ssize_t r = ::pread(*fd_, static_cast<char*>(dst) + done, bytes - done, static_cast<off_t>(offset + done));
      if (r <= 0)
        return make_error(path_ + ": cannot read tensor " + show_name(t.name) + " at offset " +
                          std::to_string(offset + done) + (r == 0 ? " (the file shrank after opening)" : ""));
      done += static_cast<uint64_t>(r);
    }
    return Status::Ok();
  };
  const uint64_t base = data_start_ + t.begin;
  if (t.dtype == StDtype::f32) return read_at(out, t.n_elements * 4, base);
  // Convert in blocks so that the temporary stays small (64 K elements).
  constexpr uint64_t kBlock = 1 << 16;
  std::vector<uint8_t> buf(kBlock * width);
  for (uint64_t done = 0; done < t.n_elements; done += kBlock) {
    const uint64_t n = std::min(kBlock, t.n_elements - done);
    AMA_TRY(read_at(buf.data(), n * width, base + done * width));
    for (uint64_t i = 0; i < n; ++i) {
      const uint8_t* p = buf.data() + i * width;
      if (t.dtype == StDtype::f16) {
        uint16_t h;
        std::memcpy(&h, p, 2);
        out[done + i] = f16_to_f32(h);
      } else if (t.dtype == StDtype::bf16) {
        uint16_t h;
        std::memcpy(&h, p, 2);
        out[done + i] = bf16_to_f32(h);
      } else {
        double d;
        std::memcpy(&d, p, 8);
        out[done + i] = static_cast<float>(d);
      }
    }
  }
  return Status::Ok();
}

Result<std::vector<float>> SafetensorsFile::read_f32(const std::string& name) const {
  const StTensorInfo* t = find(name);
  if (!t) return make_error(path_ + ": no tensor " + show_name(name));
  // n_elements is bounded by the file's size (validated at open), so this allocation is too.
  std::vector<float> v(t->n_elements);
  AMA_TRY(read_f32(*t, v.data()));
  return v;
}

Status write_safetensors(const std::string& path, const std::vector<StWriteTensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> counts;
  for (const StWriteTensor& t : tensors) {
    if (t.dtype != StDtype::f32 && t.dtype != StDtype::f16 && t.dtype != StDtype::bf16)
      return make_error(path + ": tensor " + show_name(t.name) + ": the writer stores F32, F16 or BF16 only");
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
        return make_error(path + ": tensor " + show_name(t.name) + " has a bad shape " + shape_str(t.shape));
    }
    if (n > 0 && !t.data) return make_error(path + ": tensor " + show_name(t.name) + " has no data");
    if (header.contains(t.name) || t.name == "__metadata__")
      return make_error(path + ": tensor name " + show_name(t.name) + " is repeated or reserved");
    const uint64_t bytes = n * (st_dtype_bits(t.dtype) / 8);
    header[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    counts.push_back(n);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the reference pads the header to a multiple of 8 bytes
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!file) return make_error(path + ": cannot create file: " + std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, file.get()) == 8 && std::fwrite(text.data(), 1, text.size(), file.get()) == text.size();
  for (size_t ti = 0; ok && ti < tensors.size(); ++ti) {
    const StWriteTensor& t = tensors[ti];
    if (t.dtype == StDtype::f32) {
      ok = std::fwrite(t.data, 4, counts[ti], file.get()) == counts[ti];
      continue;
    }
    std::vector<uint16_t> h(counts[ti]);
    for (uint64_t i = 0; i < counts[ti]; ++i) h[i] = t.dtype == StDtype::f16 ? f32_to_f16(t.data[i]) : f32_to_bf16(t.data[i]);
    ok = std::fwrite(h.data(), 2, h.size(), file.get()) == h.size();
  }
  if (!ok) return make_error(path + ": write failed");
  if (std::fclose(file.release()) != 0) return make_error(path + ": write failed");
  return Status::Ok();
}

}  // namespace ama
