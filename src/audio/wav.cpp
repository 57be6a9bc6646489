// WAV reading and writing. See wav.h for what is accepted.
//
// Layout reminder (all integers little-endian):
//   "RIFF" <u32 size> "WAVE"  then chunks: <4-byte id> <u32 size> <body> [pad]
// A chunk body of odd size is followed by one pad byte that the size excludes.
// The reader never trusts a size field: every access is checked against the
// real buffer length, and sizes are added in 64-bit so they cannot wrap.
#include "audio/wav.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>

namespace ama {
namespace {

// Format tags (mmreg.h).
constexpr uint16_t kTagPcm = 0x0001;
constexpr uint16_t kTagFloat = 0x0003;
constexpr uint16_t kTagExtensible = 0xFFFE;

constexpr int kMaxChannels = 64;
constexpr int kMaxSampleRate = 384000;

// A data size of 0xFFFFFFFF means "unknown length" (streaming writers, and
// RF64 files where the real size lives in the ds64 chunk).
constexpr uint32_t kUnknownSize = 0xFFFFFFFF;

// KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT are {0000000X-0000-0010-8000-00AA00389B71}:
// the first 2 bytes hold the plain format tag, the other 14 are fixed.
constexpr uint8_t kSubformatGuidTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                            0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

uint64_t le64(const uint8_t* p) {
  return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}

bool id_is(const uint8_t* p, const char* id) { return std::memcmp(p, id, 4) == 0; }

const char* tag_name(uint16_t tag) {
  switch (tag) {
    case 0x0002: return " (MS ADPCM)";
    case 0x0006: return " (A-law)";
    case 0x0007: return " (mu-law)";
    case 0x0011: return " (IMA ADPCM)";
    case 0x0031: return " (GSM 6.10)";
    case 0x0050: return " (MPEG)";
    case 0x0055: return " (MP3)";
    default: return "";
  }
}

std::string hex4(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04X", v & 0xFFFFu);
  return buf;
}

enum class Encoding { u8, s16, s24, s32, f32, f64 };

struct Format {
  Encoding encoding = Encoding::s16;
  int channels = 0;
  int sample_rate = 0;
  int bytes_per_sample = 0;
  int block_align = 0;
};

Result<Format> parse_fmt(const uint8_t* p, uint32_t size, const std::string& name) {
  auto fail = [&](const std::string& what) { return make_error(name + ": " + what); };
  // 16 bytes: tag, channels, rate, byte rate, block align, bits per sample.
  if (size < 16) return fail("fmt chunk is too small (" + std::to_string(size) + " bytes, need 16)");
  uint16_t tag = le16(p);
  const int channels = le16(p + 2);
  const uint32_t rate = le32(p + 4);
  // p + 8 is the byte rate; writers often get it wrong and it is not needed.
  const int block_align = le16(p + 12);
  const int bits = le16(p + 14);

  if (tag == kTagExtensible) {
    // 16 + cbSize(2) + valid bits(2) + channel mask(4) + subformat GUID(16) = 40.
    if (size < 40) {
      return fail("WAVE_FORMAT_EXTENSIBLE fmt chunk is too small (" + std::to_string(size) +
                  " bytes, need 40)");
    }
    const uint8_t* guid = p + 24;
    if (std::memcmp(guid + 2, kSubformatGuidTail, sizeof kSubformatGuidTail) != 0) {
      return fail("unsupported WAVE_FORMAT_EXTENSIBLE subformat (not PCM or IEEE float)");
    }
    tag = le16(guid);
  }

  Format f;
  if (tag == kTagPcm) {
    switch (bits) {
      case 8: f.encoding = Encoding::u8; break;
      case 16: f.encoding = Encoding::s16; break;
      case 24: f.encoding = Encoding::s24; break;
      case 32: f.encoding = Encoding::s32; break;
      default: return fail("unsupported PCM bit depth " + std::to_string(bits) + " (need 8, 16, 24 or 32)");
    }
  } else if (tag == kTagFloat) {
    switch (bits) {
      case 32: f.encoding = Encoding::f32; break;
      case 64: f.encoding = Encoding::f64; break;
      default: return fail("unsupported float bit depth " + std::to_string(bits) + " (need 32 or 64)");
    }
  } else {
    return fail("unsupported WAV format tag " + hex4(tag) + tag_name(tag) +
                "; only PCM and IEEE float are supported");
  }

  if (channels == 0) return fail("fmt chunk declares zero channels");
  if (channels > kMaxChannels) {
    return fail("unsupported channel count " + std::to_string(channels) + " (at most " +
                std::to_string(kMaxChannels) + ")");
  }
  if (rate == 0 || rate > static_cast<uint32_t>(kMaxSampleRate)) {
    return fail("unsupported sample rate " + std::to_string(rate) + " Hz (need 1.." +
                std::to_string(kMaxSampleRate) + ")");
  }
  f.channels = channels;
  f.sample_rate = static_cast<int>(rate);
  f.bytes_per_sample = bits / 8;
  f.block_align = block_align;
  if (block_align != channels * f.bytes_per_sample) {
    return fail("inconsistent block_align " + std::to_string(block_align) + " (expected " +
                std::to_string(channels) + " channels x " + std::to_string(f.bytes_per_sample) +
                " bytes = " + std::to_string(channels * f.bytes_per_sample) + ")");
  }
  return f;
}

// Float files may hold anything; keep the [-1, 1] promise and drop NaN.
float sanitize(double v) {
  if (!(v == v)) return 0.0f;  // NaN
  return static_cast<float>(std::clamp(v, -1.0, 1.0));
}

// Decodes `frames` frames and averages the channels into `out`.
template <typename DecodeSample>
void downmix(const uint8_t* p, size_t frames, const Format& f, DecodeSample decode, float* out) {
  const double inv_channels = 1.0 / f.channels;
  for (size_t i = 0; i < frames; ++i) {
    double sum = 0.0;
    for (int c = 0; c < f.channels; ++c) {
      sum += decode(p);
      p += f.bytes_per_sample;
    }
    out[i] = static_cast<float>(sum * inv_channels);
  }
}

void decode_frames(const uint8_t* p, size_t frames, const Format& f, float* out) {
  // Integer PCM is scaled by 1/2^(bits-1) so full-scale negative maps to -1.
  switch (f.encoding) {
    case Encoding::u8:
      downmix(p, frames, f, [](const uint8_t* s) { return (s[0] - 128) / 128.0; }, out);
      break;
    case Encoding::s16:
      downmix(p, frames, f, [](const uint8_t* s) { return static_cast<int16_t>(le16(s)) / 32768.0; },
              out);
      break;
    case Encoding::s24:
      downmix(p, frames, f,
              [](const uint8_t* s) {
                int32_t v = s[0] | (s[1] << 8) | (s[2] << 16);
                if (v & 0x800000) v -= 0x1000000;  // sign-extend 24 -> 32 bits
                return v / 8388608.0;
              },
              out);
      break;
    case Encoding::s32:
      downmix(p, frames, f,
              [](const uint8_t* s) { return static_cast<int32_t>(le32(s)) / 2147483648.0; }, out);
      break;
    case Encoding::f32:
      downmix(p, frames, f,
              [](const uint8_t* s) { return static_cast<double>(sanitize(std::bit_cast<float>(le32(s)))); },
              out);
      break;
    case Encoding::f64:
      downmix(p, frames, f,
              [](const uint8_t* s) { return static_cast<double>(sanitize(std::bit_cast<double>(le64(s)))); },
              out);
      break;
  }
}

}  // namespace

Result<AudioBuffer> read_wav_memory(const uint8_t* data, size_t size, const std::string& name) {
  auto fail = [&](const std::string& what) { return make_error(name + ": " + what); };
  if (data == nullptr) size = 0;
  if (size < 12) {
    return fail("not a WAV file (" + std::to_string(size) + " bytes, too short for a RIFF/WAVE header)");
  }
  const bool rf64 = id_is(data, "RF64") || id_is(data, "BW64");
  if (!id_is(data, "RIFF") && !rf64) return fail("not a WAV file (no RIFF header)");
  if (!id_is(data + 8, "WAVE")) return fail("not a WAV file (RIFF form type is not WAVE)");
  // The RIFF size at offset 4 is ignored: it is often wrong (streaming writers,
  // truncated copies), and the chunk walk below is bounded by the real size.

  bool have_fmt = false;
  Format fmt;
  bool have_ds64 = false;
  uint64_t ds64_data_size = 0;
  bool have_data = false;
  uint64_t data_offset = 0;
  uint64_t data_declared = 0;  // bytes the header promises
  uint64_t data_present = 0;   // bytes actually in the buffer

  uint64_t pos = 12;
  while (size - pos >= 8) {  // invariant: pos <= size
    const uint8_t* chunk = data + pos;
    const uint32_t chunk_size = le32(chunk + 4);
    const uint64_t body = pos + 8;
    const uint64_t available = size - body;
    uint64_t body_size = chunk_size;

    if (rf64 && id_is(chunk, "ds64") && !have_ds64 && chunk_size >= 24 && available >= 24) {
      // ds64: RIFF size (8), data size (8), sample count (8), table...
      have_ds64 = true;
      ds64_data_size = le64(data + body + 8);
    } else if (id_is(chunk, "fmt ") && !have_fmt) {
      if (chunk_size > available) return fail("fmt chunk is truncated");
      auto parsed = parse_fmt(data + body, chunk_size, name);
      if (!parsed.ok()) return parsed.error();
      fmt = parsed.value();
      have_fmt = true;
    } else if (id_is(chunk, "data") && !have_data) {
      have_data = true;
      data_offset = body;
      if (chunk_size == kUnknownSize) {
        body_size = (rf64 && have_ds64) ? ds64_data_size : available;
      }
      data_declared = body_size;
      data_present = std::min(body_size, available);
      // A data chunk that runs past the end is the last thing in the file.
      if (body_size >= available) break;
    }

    const uint64_t next = body + body_size + (body_size & 1);  // skip the pad byte
    if (next > size) break;
    pos = next;
  }

  if (!have_fmt) return fail("not a usable WAV file (no fmt chunk)");
  if (!have_data) return fail("not a usable WAV file (no data chunk)");

  const uint64_t frames = data_present / static_cast<uint64_t>(fmt.block_align);
  if (frames == 0 && data_declared > 0) {
    if (data_present < data_declared) {
      return fail("data chunk is truncated: it declares " + std::to_string(data_declared) +
                  " bytes but only " + std::to_string(data_present) +
                  " are present, not even one complete frame");
    }
    return fail("data chunk holds " + std::to_string(data_declared) + " bytes, less than one frame (" +
                std::to_string(fmt.block_align) + " bytes)");
  }

  AudioBuffer out;
  out.sample_rate = fmt.sample_rate;
  try {
    out.samples.resize(static_cast<size_t>(frames));
  } catch (const std::bad_alloc&) {
    return fail("out of memory decoding " + std::to_string(frames) + " frames");
  }
  decode_frames(data + data_offset, static_cast<size_t>(frames), fmt, out.samples.data());
  return out;
}

Result<AudioBuffer> read_wav_file(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return make_error(path + ": cannot open: " + std::strerror(errno));

  // Read in blocks until EOF rather than trusting a size from stat/ftell, so
  // pipes work and a file that shrinks while we read cannot fool us.
  std::vector<uint8_t> bytes;
  constexpr size_t kBlock = size_t{1} << 20;  // 1 MiB
  std::string error;
  try {
    for (;;) {
      const size_t old_size = bytes.size();
      bytes.resize(old_size + kBlock);
      const size_t got = std::fread(bytes.data() + old_size, 1, kBlock, file);
      bytes.resize(old_size + got);
      if (got < kBlock) {
        if (std::ferror(file)) error = path + ": read error: " + std::strerror(errno);
        break;
      }
    }
  } catch (const std::bad_alloc&) {
    error = path + ": out of memory reading the file";
  }
  std::fclose(file);
  if (!error.empty()) return make_error(error);
  return read_wav_memory(bytes.data(), bytes.size(), path);
}

namespace {

void put16(std::vector<uint8_t>& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}

void put32(std::vector<uint8_t>& b, uint32_t v) {
  put16(b, v & 0xFFFF);
  put16(b, v >> 16);
}

void put_id(std::vector<uint8_t>& b, const char* id) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(id[i]));
}

// Rounds x * 2^(bits-1) to the nearest integer and clips it to the signed range.
// Scaling by 2^(bits-1) (not 2^(bits-1) - 1) makes the reader's division exact,
// so the round-trip error is at most half a step except at +1.0, which clips
// to (2^(bits-1) - 1) / 2^(bits-1): an error of exactly one step.
int32_t quantize(float x, int bits) {
  const double full_scale = std::ldexp(1.0, bits - 1);
  if (!(x == x)) return 0;  // NaN
  const double v = std::round(static_cast<double>(x) * full_scale);
  return static_cast<int32_t>(std::clamp(v, -full_scale, full_scale - 1.0));
}

}  // namespace

Status write_wav_file(const std::string& path, const std::vector<float>& interleaved, int channels,
                      int sample_rate, WavSampleFormat fmt) {
  auto fail = [&](const std::string& what) { return make_error(path + ": " + what); };
  if (channels < 1 || channels > 65535) return fail("cannot write " + std::to_string(channels) + " channels");
  if (sample_rate < 1) return fail("cannot write sample rate " + std::to_string(sample_rate));
  if (interleaved.size() % static_cast<size_t>(channels) != 0) {
    return fail("sample count " + std::to_string(interleaved.size()) + " is not a multiple of " +
                std::to_string(channels) + " channels");
  }

  const bool is_float = fmt == WavSampleFormat::float32;
  const int bits = fmt == WavSampleFormat::pcm16 ? 16 : fmt == WavSampleFormat::pcm24 ? 24 : 32;
  const int bytes_per_sample = bits / 8;
  const uint64_t frames = interleaved.size() / static_cast<size_t>(channels);
  const uint64_t data_bytes = static_cast<uint64_t>(interleaved.size()) * bytes_per_sample;
  // The largest header below is 12 + 8+40 + 8+4 + 8 = 80 bytes; RIFF sizes are 32-bit.
  if (data_bytes + 80 + 1 > 0xFFFFFFFFull) return fail("too much audio for a 4 GiB WAV file");
  const uint32_t block_align = static_cast<uint32_t>(channels * bytes_per_sample);

  const bool extensible = channels > 2 || (!is_float && bits > 16);
  const uint16_t tag = is_float ? kTagFloat : kTagPcm;

  std::vector<uint8_t> fmt_body;
  put16(fmt_body, extensible ? kTagExtensible : tag);
  put16(fmt_body, static_cast<uint32_t>(channels));
  put32(fmt_body, static_cast<uint32_t>(sample_rate));
  put32(fmt_body, static_cast<uint32_t>(static_cast<uint64_t>(sample_rate) * block_align));
  put16(fmt_body, block_align);
  put16(fmt_body, static_cast<uint32_t>(bits));
  if (extensible) {
    put16(fmt_body, 22);  // cbSize: valid bits + channel mask + GUID
    put16(fmt_body, static_cast<uint32_t>(bits));
    // Speaker bits in the standard order (FL FR FC LFE BL BR ...); 18 are defined.
    put32(fmt_body, channels <= 18 ? (1u << channels) - 1 : 0);
    put16(fmt_body, tag);
    fmt_body.insert(fmt_body.end(), std::begin(kSubformatGuidTail), std::end(kSubformatGuidTail));
  } else if (is_float) {
    put16(fmt_body, 0);  // non-PCM formats carry cbSize even when it is 0
  }

  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(data_bytes) + 80);
  put_id(out, "RIFF");
  put32(out, 0);  // patched below
  put_id(out, "WAVE");
  put_id(out, "fmt ");
  put32(out, static_cast<uint32_t>(fmt_body.size()));
  out.insert(out.end(), fmt_body.begin(), fmt_body.end());
  if (is_float) {
    // Non-PCM files must have a fact chunk with the frame count.
    put_id(out, "fact");
    put32(out, 4);
    put32(out, static_cast<uint32_t>(frames));
  }
  put_id(out, "data");
  put32(out, static_cast<uint32_t>(data_bytes));
  for (float x : interleaved) {
    if (is_float) {
      put32(out, std::bit_cast<uint32_t>(x));
      continue;
    }
    const uint32_t v = static_cast<uint32_t>(quantize(x, bits));  // two's complement bytes
    for (int i = 0; i < bytes_per_sample; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  if (data_bytes & 1) out.push_back(0);  // pad byte after an odd-sized chunk
  const uint32_t riff_size = static_cast<uint32_t>(out.size() - 8);
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<uint8_t>(riff_size >> (8 * i));

  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return fail(std::string("cannot create: ") + std::strerror(errno));
  const size_t written = std::fwrite(out.data(), 1, out.size(), file);
  const int write_errno = errno;
  const bool closed = std::fclose(file) == 0;
  if (written != out.size()) return fail(std::string("write failed: ") + std::strerror(write_errno));
  if (!closed) return fail(std::string("write failed: ") + std::strerror(errno));
  return Status::Ok();
}

}  // namespace ama
