// libFuzzer target: the WAV reader (src/audio/wav.h), from memory and from a
// file.
//
// Input: the whole file. Checks beyond "no crash, no sanitizer report", the
// promises of wav.h: a decoded file has a sample rate in 1..384000 Hz and
// samples that are finite and within [-1, 1]; read_wav_file on the same
// bytes gives the same result as read_wav_memory (same rate, same samples,
// bit for bit; or an error in both); errors carry a message that starts with
// the file name. read_wav_file reads in 1 MiB blocks, and a 1 MiB allocation
// under AddressSanitizer costs about 1 ms (mmap and page faults: 300 inputs/s
// instead of thousands), so the file path is compared on one input in 16
// (the last byte's low 4 bits zero): it adds only the read loop, which does
// not depend on the bytes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "audio/wav.h"
#include "fuzz/fuzz_file.h"

using namespace ama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string name = "fuzz.wav";
  auto mem = read_wav_memory(data, size, name);
  if (!mem) {
    if (mem.message().rfind(name + ": ", 0) != 0) fuzz::fail("read_wav_memory error does not start with the name");
  } else {
    if (mem->sample_rate < 1 || mem->sample_rate > 384000) fuzz::fail("sample rate outside 1..384000");
    for (float s : mem->samples)
      if (!std::isfinite(s) || s < -1.0f || s > 1.0f) fuzz::fail("sample not finite or outside [-1, 1]");
  }
  if (size == 0 || (data[size - 1] & 15) != 0) return 0;

  fuzz::MemFile file(data, size);
  auto disk = read_wav_file(file.path());
  if (mem.ok() != disk.ok()) fuzz::fail("read_wav_memory and read_wav_file disagree on success");
  if (!mem) {
    if (disk.message().rfind(file.path() + ": ", 0) != 0) fuzz::fail("read_wav_file error does not start with the path");
    return 0;
  }
  if (disk->sample_rate != mem->sample_rate || disk->samples.size() != mem->samples.size() ||
      (!mem->samples.empty() &&
       std::memcmp(disk->samples.data(), mem->samples.data(), mem->samples.size() * sizeof(float)) != 0))
    fuzz::fail("read_wav_file and read_wav_memory decode differently");
  return 0;
}
