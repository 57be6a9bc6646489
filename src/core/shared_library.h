// Libraries opened with dlopen when first needed rather than linked: FFmpeg
// (src/audio/ffmpeg_lib.h) and libcurl (src/model/download.cpp). Linked,
// their dependencies cost every process its start-up, whether it decodes or
// downloads anything or not: on our 2-core Zen 5 VM, an empty program
// linked with FFmpeg's four libraries (~110 more shared libraries) started
// in 0.16-0.19 s instead of 0.01-0.05 s, and under AddressSanitizer 0.51-0.55 s
// instead of 0.20; libcurl's 36 added ~0.03 s (0.08 s under ASan). A test
// run starts ~1000 processes.
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

// Debian names a library's package after its soname: libavcodec.so.59 is
// in libavcodec59, libcurl.so.4 in libcurl4.
std::string debian_package_of(const std::string& soname);

}  // namespace ama
