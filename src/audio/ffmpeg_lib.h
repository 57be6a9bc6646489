// FFmpeg's libraries, opened with dlopen on the first audio file rather than
// linked (why: src/core/shared_library.h). The sonames are the major
// versions of the headers we compile against, so the ABI is the one the
// code was written for.
#pragma once

#include <memory>
#include <string>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
}

#include "core/result.h"

namespace ama {

// Every FFmpeg function we call, with its library.
#define AMA_FFMPEG_FUNCTIONS(X)                                                                    \
  X(avutil, av_strerror)                                                                           \
  X(avutil, av_log_set_level)                                                                      \
  X(avutil, av_malloc)                                                                             \
  X(avutil, av_free)                                                                               \
  X(avutil, av_freep)                                                                              \
  X(avutil, av_dict_set)                                                                           \
  X(avutil, av_dict_free)                                                                          \
  X(avutil, av_frame_alloc)                                                                        \
  X(avutil, av_frame_free)                                                                         \
  X(avutil, av_frame_unref)                                                                        \
  X(avutil, av_channel_layout_uninit)                                                              \
  X(avutil, av_channel_layout_describe)                                                            \
  X(avutil, av_channel_layout_copy)                                                                \
  X(avutil, av_channel_layout_compare)                                                             \
  X(avutil, av_opt_set)                                                                            \
  X(avutil, av_opt_set_double)                                                                     \
  X(swresample, swr_alloc_set_opts2)                                                               \
  X(swresample, swr_set_matrix)                                                                    \
  X(swresample, swr_init)                                                                          \
  X(swresample, swr_free)                                                                          \
  X(swresample, swr_get_out_samples)                                                               \
  X(swresample, swr_convert)                                                                       \
  X(avcodec, avcodec_get_name)                                                                     \
  X(avcodec, avcodec_alloc_context3)                                                               \
  X(avcodec, avcodec_free_context)                                                                 \
  X(avcodec, avcodec_parameters_to_context)                                                        \
  X(avcodec, avcodec_open2)                                                                        \
  X(avcodec, avcodec_send_packet)                                                                  \
  X(avcodec, avcodec_receive_frame)                                                                \
  X(avcodec, av_packet_alloc)                                                                      \
  X(avcodec, av_packet_free)                                                                       \
  X(avcodec, av_packet_unref)                                                                      \
  X(avformat, avformat_alloc_context)                                                              \
  X(avformat, avformat_open_input)                                                                 \
  X(avformat, avformat_find_stream_info)                                                           \
  X(avformat, avformat_close_input)                                                                \
  X(avformat, av_find_best_stream)                                                                 \
  X(avformat, av_read_frame)                                                                       \
  X(avformat, avio_alloc_context)                                                                  \
  X(avformat, avio_context_free)

struct FfmpegApi {
#define AMA_FFMPEG_POINTER(lib, name) decltype(&::name) name = nullptr;
  AMA_FFMPEG_FUNCTIONS(AMA_FFMPEG_POINTER)
#undef AMA_FFMPEG_POINTER
};

// The sonames to open, in dependency order.
struct FfmpegLibraries {
  std::string avutil, swresample, avcodec, avformat;
};
FfmpegLibraries default_ffmpeg_libraries();  // e.g. libavutil.so.57, ..., libavformat.so.59

// Opens the four libraries (never closed) and looks up every function. The
// error names the library or function that is missing.
Result<std::unique_ptr<FfmpegApi>> load_ffmpeg(const FfmpegLibraries& libs);

// The default libraries, loaded once per process (thread-safe), with
// FFmpeg's own logging turned off; the same error on every call if they
// cannot be loaded.
Result<const FfmpegApi*> ffmpeg();

}  // namespace ama
