// A fuzz input as a file, for readers that take a path (GgmlReader::open,
// SafetensorsFile::open, read_wav_file). The bytes go into an anonymous
// memory file (memfd_create), named /proc/self/fd/N: nothing touches the disk,
// nothing is left behind when a run is killed, and the file is a regular
// file, as the readers require (they refuse pipes and devices).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ama::fuzz {

class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("ama-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();  // the harness itself is broken: stop rather than fuzz nothing
    }
    for (size_t done = 0; done < size;) {
      const ssize_t w = ::write(fd_, data + done, size - done);
      if (w <= 0) {
        std::perror("write to memfd");
        std::abort();
      }
      done += static_cast<size_t>(w);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Stops the run with a message: a broken property, not a sanitizer report.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

}  // namespace ama::fuzz
