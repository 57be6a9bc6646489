// See ffmpeg_lib.h.
#include "audio/ffmpeg_lib.h"

#include <mutex>

#include "core/shared_library.h"

namespace ama {
namespace {

std::string soname(const char* lib, int major) { return std::string("lib") + lib + ".so." + std::to_string(major); }

}  // namespace

FfmpegLibraries default_ffmpeg_libraries() {
  return {soname("avutil", LIBAVUTIL_VERSION_MAJOR), soname("swresample", LIBSWRESAMPLE_VERSION_MAJOR),
          soname("avcodec", LIBAVCODEC_VERSION_MAJOR), soname("avformat", LIBAVFORMAT_VERSION_MAJOR)};
}

Result<std::unique_ptr<FfmpegApi>> load_ffmpeg(const FfmpegLibraries& libs) {
  struct Handles {
    void *avutil = nullptr, *swresample = nullptr, *avcodec = nullptr, *avformat = nullptr;
  } h;
  for (auto [so, handle] : {std::pair{&libs.avutil, &h.avutil}, std::pair{&libs.swresample, &h.swresample},
                            std::pair{&libs.avcodec, &h.avcodec}, std::pair{&libs.avformat, &h.avformat}}) {
    auto r = open_shared_library(*so, "decoding audio (FFmpeg)");
    if (!r) return r.error();
    *handle = *r;
  }
  auto api = std::make_unique<FfmpegApi>();
#define AMA_FFMPEG_LOOKUP(lib, name) AMA_TRY(bind_function(h.lib, libs.lib, #name, api->name));
  AMA_FFMPEG_FUNCTIONS(AMA_FFMPEG_LOOKUP)
#undef AMA_FFMPEG_LOOKUP
  return api;
}

Result<const FfmpegApi*> ffmpeg() {
  static std::once_flag once;
  static std::unique_ptr<FfmpegApi> api;
  static std::string error;
  std::call_once(once, [] {
    auto r = load_ffmpeg(default_ffmpeg_libraries());
    if (!r) {
      error = r.message();
      return;
    }
    api = std::move(*r);
    // FFmpeg logs to stderr by default; our callers print one line per
    // error. Process-wide, so here, before the first open.
    api->av_log_set_level(AV_LOG_QUIET);
  });
  if (!api) return make_error(error);
  return static_cast<const FfmpegApi*>(api.get());
}

}  // namespace ama
