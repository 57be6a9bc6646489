// A small reader for numpy .npz archives, enough for reference data in the
// tests: an .npz is a zip of .npy files, each entry stored or deflated
// (np.savez_compressed deflates), and an .npy file is a short text header
// (dtype, memory order, shape) followed by the raw array. Only little-endian
// float32 arrays in C order are accepted; anything else, or any damage to
// the archive (bad signatures, sizes that overrun the file, a CRC mismatch),
// is an error rather than garbage data.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/result.h"

namespace ama::test {

struct NpyF32 {
  std::vector<size_t> shape;
  std::vector<float> data;  // C order
};

namespace npz_detail {

inline uint16_t u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
inline uint32_t u32(const unsigned char* p) { return u16(p) | static_cast<uint32_t>(u16(p + 2)) << 16; }
inline uint64_t u64(const unsigned char* p) { return u32(p) | static_cast<uint64_t>(u32(p + 4)) << 32; }

// Raw deflate (zip's method 8 has no zlib header) of exactly `size` bytes.
inline Result<std::string> inflate_raw(const unsigned char* src, size_t n, size_t size) {
  std::string out(size, '\0');
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return make_error("inflateInit2 failed");
  z.next_in = const_cast<unsigned char*>(src);
  z.avail_in = static_cast<uInt>(n);
  z.next_out = reinterpret_cast<unsigned char*>(out.data());
  z.avail_out = static_cast<uInt>(size);
  const int rc = inflate(&z, Z_FINISH);
  const size_t produced = size - z.avail_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != size)
    return make_error("deflated data is damaged (zlib " + std::to_string(rc) + ", " + std::to_string(produced) +
                      " of " + std::to_string(size) + " bytes)");
  return out;
}

// Parses an .npy file holding a little-endian float32 array in C order.
inline Result<NpyF32> parse_npy_f32(const std::string& npy) {
  const auto* p = reinterpret_cast<const unsigned char*>(npy.data());
  if (npy.size() < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) return make_error("not an .npy file");
  const int major = p[6];
  size_t header_len, header_at;
  if (major == 1) {
    header_len = u16(p + 8), header_at = 10;
  } else if (major == 2 || major == 3) {
    if (npy.size() < 12) return make_error(".npy header is cut off");
    header_len = u32(p + 8), header_at = 12;
  } else {
    return make_error(".npy version " + std::to_string(major) + " is unknown");
  }
  if (header_at + header_len > npy.size()) return make_error(".npy header is cut off");
  const std::string h = npy.substr(header_at, header_len);  // e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (80, 201), }
  // The value after 'key': in the header's Python dict literal.
  auto value_of = [&](const std::string& key) -> std::string {
    size_t at = h.find("'" + key + "'");
    if (at == std::string::npos) return "";
    at = h.find(':', at);
    if (at == std::string::npos) return "";
    at = h.find_first_not_of(' ', at + 1);
    return at == std::string::npos ? "" : h.substr(at);
  };
  const std::string descr = value_of("descr");
  if (descr.rfind("'<f4'", 0) != 0)
    return make_error("dtype is " + descr.substr(0, descr.find(',')) + ", not '<f4' (little-endian float32)");
  const std::string order = value_of("fortran_order");
  if (order.rfind("False", 0) != 0) return make_error("array is not in C order (fortran_order " + order.substr(0, 5) + ")");
  const std::string shape = value_of("shape");
  if (shape.empty() || shape[0] != '(') return make_error("no shape in the .npy header: " + h);
  NpyF32 a;
  size_t count = 1;
  for (size_t i = 1; i < shape.size() && shape[i] != ')';) {
    if (shape[i] == ' ' || shape[i] == ',') {
      ++i;
      continue;
    }
    size_t used = 0;
    unsigned long long d = 0;
    try {
      d = std::stoull(shape.substr(i), &used);
    } catch (...) {
      return make_error("bad shape in the .npy header: " + h);
    }
    a.shape.push_back(static_cast<size_t>(d));
    count *= static_cast<size_t>(d);
    i += used;
  }
  const size_t data_at = header_at + header_len;
  if (npy.size() - data_at != count * 4)
    return make_error("shape says " + std::to_string(count) + " floats, the data holds " +
                      std::to_string((npy.size() - data_at) / 4));
  a.data.resize(count);
  std::memcpy(a.data.data(), npy.data() + data_at, count * 4);  // x86: little-endian like the file
  return a;
}

}  // namespace npz_detail

// Reads the array `name` (without ".npy") from the .npz archive at `path`.
inline Result<NpyF32> read_npz_f32(const std::string& path, const std::string& name) {
  using namespace npz_detail;
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error("cannot open " + path);
  const std::string zip((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto* z = reinterpret_cast<const unsigned char*>(zip.data());
  const size_t size = zip.size();
  // The end-of-central-directory record: 22 bytes plus a comment of up to 64 KiB.
  size_t eocd = std::string::npos;
  if (size >= 22) {
    const size_t lowest = size - 22 > 65535 ? size - 22 - 65535 : 0;
    for (size_t i = size - 22 + 1; i-- > lowest;)
      if (u32(z + i) == 0x06054b50) {
        eocd = i;
        break;
      }
  }
  if (eocd == std::string::npos) return make_error(path + " is not a zip archive (no end of central directory)");
  const size_t entries = u16(z + eocd + 10);
  size_t at = u32(z + eocd + 16);
  if (at == 0xFFFFFFFFu) return make_error(path + ": zip64 central directory is not supported");
  std::string names;
  for (size_t e = 0; e < entries; ++e) {
    if (at + 46 > size || u32(z + at) != 0x02014b50) return make_error(path + ": damaged central directory");
    const unsigned method = u16(z + at + 10);
    const uint32_t crc = u32(z + at + 16);
    uint64_t packed = u32(z + at + 20), unpacked = u32(z + at + 24), local = u32(z + at + 42);
    const size_t name_len = u16(z + at + 28), extra_len = u16(z + at + 30), comment_len = u16(z + at + 32);
    if (at + 46 + name_len + extra_len > size) return make_error(path + ": damaged central directory");
    const std::string entry(zip, at + 46, name_len);
    // Sizes that do not fit 32 bits are 0xFFFFFFFF here and follow, in this
    // order, in the zip64 extra field (id 1).
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const unsigned id = u16(z + x), len = u16(z + x + 2);
      if (x + 4 + len > at + 46 + name_len + extra_len) break;
      if (id == 1) {
        size_t y = x + 4;
        for (uint64_t* v : {&unpacked, &packed, &local})
          if (*v == 0xFFFFFFFFu && y + 8 <= x + 4 + len) *v = u64(z + y), y += 8;
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    names += (names.empty() ? "" : ", ") + entry;
    if (entry != name + ".npy") continue;

    if (local + 30 > size || u32(z + local) != 0x04034b50) return make_error(path + ": damaged local header of " + entry);
    const size_t data_at = local + 30 + u16(z + local + 26) + u16(z + local + 28);
    if (data_at > size || packed > size - data_at) return make_error(path + ": " + entry + " runs past the end of the file");
    std::string npy;
    if (method == 0) {
      if (packed != unpacked) return make_error(path + ": stored entry " + entry + " has two sizes");
      npy.assign(zip, data_at, packed);
    } else if (method == 8) {
      auto inflated = inflate_raw(z + data_at, packed, unpacked);
      if (!inflated) return make_error(path + ": " + entry + ": " + inflated.message());
      npy = std::move(*inflated);
    } else {
      return make_error(path + ": " + entry + " uses zip compression method " + std::to_string(method) +
                        " (only stored and deflated are read)");
    }
    const uLong got = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(npy.data()), static_cast<uInt>(npy.size()));
    if (got != crc) return make_error(path + ": " + entry + " fails its CRC check");
    auto a = parse_npy_f32(npy);
    if (!a) return make_error(path + ": " + entry + ": " + a.message());
    return a;
  }
  return make_error(path + " has no array '" + name + "' (it has " + names + ")");
}

}  // namespace ama::test
