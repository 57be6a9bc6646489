// Libraries opened with dlopen when first needed rather than linked: FFmpeg
// (src/audio/ffmpeg_lib.h) and libcurl (src/model/download.cpp). Linked,
// their dependencies cost every process its start-up, whether it decodes or
// downloads anything or not. An empty program on our 2-core Zen 5 VM
// (`/usr/bin/time`, linked -Wl,--no-as-needed) started in 0.21-0.24 s
// linked with FFmpeg's four libraries (~110 more shared libraries) and
// libcurl, 0.03-0.07 s with libcurl alone, 0.01 s with neither; under
// AddressSanitizer 0.51-0.55, 0.20-0.22 and 0.11-0.14 s. A test run starts
// ~1000 processes.
#pragma once

#include <string>

#include "core/result.h"

namespace ama {

// dlopen(soname, RTLD_NOW | RTLD_LOCAL), kept open for the process's life.
// The error names the library, dlerror()'s reason, what needs it
// (`needed_for`, e.g. "decoding audio") and the Debian package to install.
Result<void*> open_shared_library(const std::string& soname, const std::string& needed_for);

// dlsym, or an error naming the library and the function.
Result<void*> find_function(void* library, const std::string& soname, const char* name);

// find_function into a typed pointer: `out` is set only on success.
template <typename Fn>
Status bind_function(void* library, const std::string& soname, const char* name, Fn& out) {
  auto f = find_function(library, soname, name);
  if (!f) return f.error();
  out = reinterpret_cast<Fn>(*f);
  return Status::Ok();
}

// Debian names a library's package after its soname: libavcodec.so.59 is
// in libavcodec59, libcurl.so.4 in libcurl4.
std::string debian_package_of(const std::string& soname);

}  // namespace ama
