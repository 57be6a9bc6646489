// AudioSource: FFmpeg demuxing and decoding, libswresample conversion to
// 16 kHz mono float, one packet at a time.
//
// Why libswresample with soxr, not our resample() (src/audio/resample.h):
// Debian's libswresample is built with libsoxr, and with cutoff 0.97 and
// precision 28 it matches or beats ours on every figure that matters. Sine
// tones at amplitude 0.5, 44.1 kHz -> 16 kHz, gain of the tone (passband) or
// level of whatever comes out (stopband); tests/test_audio_source.cpp
// (AudioSourceResampler) re-measures the first two columns at 44.1, 48 and
// 22.05 kHz on every run:
//                          ours            soxr (used)     swr's own engine, 64 taps
//   1 kHz                  +0.00005 dB     -0.00000 dB     0.00000 dB
//   7.6 kHz (0.95 fN)      +0.00007 dB     -0.0014 dB      -2.46 dB
//   7.8 kHz                -0.54 dB        -0.010 dB       -7.28 dB
//   8.2 kHz (aliases)      -24.4 dB        -158 dB         -32.6 dB
//   8.4 kHz                -112 dB         -167 dB         -65 dB
//   10 kHz                 -106 dB         -159 dB         -103 dB
//   time for 600 s         0.66 s          0.35 s          (128 taps: 0.50 s)
// Both are flat to well under 0.01 dB up to 7.6 kHz (ours a little flatter
// there); above it soxr stays flat to 7.8 kHz where ours has begun its
// transition, and lets nothing alias, where ours folds 8.0-8.4 kHz into
// 7.6-8.0 kHz (8.2 kHz comes through at -24 dB). It is also 2x faster, has no
// delay (output 0 is input time 0, like ours), and its output does not depend
// on how the input is split into frames, so a file and the same bytes on stdin
// decode bit-identically. swr's own engine is worse than ours in the
// transition band even at 64 taps, so it is not used; if the library lacks
// soxr, open() fails with a message saying so rather than quietly degrade.
// One thing ours does that soxr does not: 2x upsampling that reproduces the
// input exactly at even output samples (soxr's 8 kHz -> 16 kHz differs there
// by up to 6e-5, -84 dB, because its passband is wider than a half-band
// filter's).
#include "audio/audio_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>

#include "audio/ffmpeg_lib.h"

namespace ama {
namespace {

// soxr settings (measured above). cutoff: passband end as a fraction of the
// output Nyquist frequency (7.76 kHz); soxr puts the stopband at Nyquist.
// precision: bits of accuracy, 28 = soxr's "very high quality" (~ -160 dB);
// it costs 15% more time than the default 20 bits and both are far below
// float32 speech levels, so we take the better one.
constexpr double kResampleCutoff = 0.97;
constexpr double kResamplePrecision = 28.0;
// Refuse to make load_audio output longer than 24 h at 16 kHz (1.38e9
// samples, 5.5 GB).
constexpr uint64_t kMaxLoadSamples = uint64_t{kAudioSampleRate} * 3600 * 24;
// stdin is read in blocks of this size (FFmpeg's own file protocol uses 32 KiB).
constexpr int kStdinBufferBytes = 64 * 1024;
// load_audio reads in blocks of 1 s.
constexpr size_t kLoadBlock = kAudioSampleRate;

std::string av_error_string(const FfmpegApi* ff, int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  if (ff->av_strerror(err, buf, sizeof buf) < 0) return "error " + std::to_string(err);
  return buf;
}

int read_stdin(void* /*opaque*/, uint8_t* buf, int size) {
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buf, static_cast<size_t>(size));
    if (n > 0) return static_cast<int>(n);
    if (n == 0) return AVERROR_EOF;
    if (errno != EINTR) return AVERROR(errno);
  }
}

std::string describe_streams(const AVFormatContext* fmt) {
  int counts[AVMEDIA_TYPE_NB] = {};
  int other = 0;
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    const int t = fmt->streams[i]->codecpar->codec_type;
    if (t >= 0 && t < AVMEDIA_TYPE_NB) ++counts[t];
    else ++other;
  }
  std::string s;
  auto add = [&](int n, const char* what) {
    if (n == 0) return;
    if (!s.empty()) s += ", ";
    s += std::to_string(n) + " " + what + (n > 1 ? " streams" : " stream");
  };
  add(counts[AVMEDIA_TYPE_VIDEO], "video");
  add(counts[AVMEDIA_TYPE_SUBTITLE], "subtitle");
  add(counts[AVMEDIA_TYPE_DATA], "data");
  add(counts[AVMEDIA_TYPE_ATTACHMENT], "attachment");
  add(counts[AVMEDIA_TYPE_AUDIO], "audio");  // only if the decoder search failed oddly
  add(other, "unknown");  // AVMEDIA_TYPE_UNKNOWN is -1, counted here
  return s.empty() ? "it has no streams" : "it has " + s;
}

}  // namespace

struct AudioSource::Impl {
  enum class Stage { demux, drain_decoder, flush_resampler, done };

  const FfmpegApi* ff;  // loaded before any Impl exists
  std::string name;
  AVIOContext* stdin_io = nullptr;  // our AVIOContext for "-"; FFmpeg does not free custom I/O
  AVFormatContext* fmt = nullptr;
  AVCodecContext* dec = nullptr;
  AVPacket* pkt = nullptr;
  AVFrame* frame = nullptr;
  SwrContext* swr = nullptr;
  // The input parameters `swr` was made for; a frame that differs (a stream
  // that changes rate or channels midway) gets a new converter.
  int swr_rate = 0;
  int swr_format = -1;
  AVChannelLayout swr_layout{};
  int stream = -1;

  std::vector<float> buf;  // converted samples of the last packet, not yet read
  size_t pos = 0;
  Stage stage = Stage::demux;
  uint64_t produced = 0;
  // A decode error waits here until we know whether it was the tail (the
  // stream ends before another frame decodes: end quietly, as ffmpeg does) or
  // mid-stream (a later frame decodes: fail, since skipping the bad frame
  // would shift every later timestamp of the transcript).
  std::string pending_decode_error;
  std::string demux_error;  // a read error ends the stream, as it does in ffmpeg
  std::optional<Error> failed;

  explicit Impl(const FfmpegApi* api) : ff(api) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    ff->swr_free(&swr);
    ff->av_channel_layout_uninit(&swr_layout);
    ff->av_frame_free(&frame);
    ff->av_packet_free(&pkt);
    ff->avcodec_free_context(&dec);
    ff->avformat_close_input(&fmt);  // does not close a custom AVIOContext
    if (stdin_io) {
      ff->av_freep(&stdin_io->buffer);  // may differ from the one we allocated: probing reallocates it
      ff->avio_context_free(&stdin_io);
    }
  }

  Error fail(const std::string& what) const { return make_error(name + ": " + what); }
  Error fail(const std::string& what, int err) const { return fail(what + " (" + av_error_string(ff, err) + ")"); }

  Status open_input(const std::string& path);
  Status open_decoder();
  Status fill();
  Status receive_frames();
  Status convert(const AVFrame* f);
  Status make_resampler(const AVFrame* f);
  Status flush_resampler();
  void append(const float* x, int n);
};

Status AudioSource::Impl::open_input(const std::string& path) {
  AVDictionary* opts = nullptr;
  // Playlists and the like (hls, concat) may name other files; allow local
  // files only, never the network.
  ff->av_dict_set(&opts, "protocol_whitelist", "file", 0);
  int r;
  if (path == "-") {
    fmt = ff->avformat_alloc_context();
    uint8_t* io_buf = static_cast<uint8_t*>(ff->av_malloc(kStdinBufferBytes));
    if (io_buf) stdin_io = ff->avio_alloc_context(io_buf, kStdinBufferBytes, 0, nullptr, read_stdin, nullptr, nullptr);
    if (!stdin_io) ff->av_free(io_buf);
    if (!fmt || !stdin_io) {
      ff->av_dict_free(&opts);
      return fail("out of memory");
    }
    fmt->pb = stdin_io;
    fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    r = ff->avformat_open_input(&fmt, "pipe:", nullptr, &opts);  // frees fmt on failure
  } else {
    // "file:" keeps a name with a colon from being taken for a protocol.
    r = ff->avformat_open_input(&fmt, ("file:" + path).c_str(), nullptr, &opts);
  }
  ff->av_dict_free(&opts);
  if (r == AVERROR_INVALIDDATA) return fail("not an audio or video file", r);
  if (r < 0) return fail("cannot read", r);

  r = ff->avformat_find_stream_info(fmt, nullptr);
  if (r < 0) return fail("not an audio or video file", r);
  return Status::Ok();
}

Status AudioSource::Impl::open_decoder() {
  const AVCodec* codec = nullptr;
  // Skips cover pictures and video; among several audio streams, FFmpeg's
  // pick (the default-flagged or most complete one).
  const int r = ff->av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (r == AVERROR_DECODER_NOT_FOUND) {
    for (unsigned i = 0; i < fmt->nb_streams; ++i) {
      const AVCodecParameters* p = fmt->streams[i]->codecpar;
      if (p->codec_type == AVMEDIA_TYPE_AUDIO)
        return fail(std::string("no decoder for its audio codec '") + ff->avcodec_get_name(p->codec_id) + "'");
    }
  }
  if (r < 0) return fail("no audio stream (" + describe_streams(fmt) + ")");
  stream = r;
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    if (static_cast<int>(i) != stream) fmt->streams[i]->discard = AVDISCARD_ALL;  // not even read into packets
  }
  const AVStream* st = fmt->streams[stream];
  dec = ff->avcodec_alloc_context3(codec);
  pkt = ff->av_packet_alloc();
  frame = ff->av_frame_alloc();
  if (!dec || !pkt || !frame) return fail("out of memory");
  int e = ff->avcodec_parameters_to_context(dec, st->codecpar);
  if (e < 0) return fail("bad audio stream parameters", e);
  dec->pkt_timebase = st->time_base;
  e = ff->avcodec_open2(dec, codec, nullptr);
  if (e < 0) return fail(std::string("cannot open the ") + codec->name + " decoder", e);
  return Status::Ok();
}

void AudioSource::Impl::append(const float* x, int n) {
  // Clip to [-1, 1] (MP3/AAC/Opus decoders and the resampler overshoot a
  // little on loud input); NaN, which no decoder should give, becomes 0.
  const size_t old = buf.size();
  buf.resize(old + static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const float v = x[i];
    buf[old + static_cast<size_t>(i)] = std::isnan(v) ? 0.0f : std::clamp(v, -1.0f, 1.0f);
  }
  produced += static_cast<uint64_t>(n);
}

Status AudioSource::Impl::make_resampler(const AVFrame* f) {
  if (f->sample_rate <= 0 || f->ch_layout.nb_channels <= 0) {
    return fail("bad audio parameters (" + std::to_string(f->sample_rate) + " Hz, " +
                std::to_string(f->ch_layout.nb_channels) + " channels)");
  }
  ff->swr_free(&swr);
  ff->av_channel_layout_uninit(&swr_layout);
  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  // FFmpeg 5.1 declares the layouts non-const; it only copies them (6.0 made them const).
  int r = ff->swr_alloc_set_opts2(&swr, &mono, AV_SAMPLE_FMT_FLT, kAudioSampleRate,
                              const_cast<AVChannelLayout*>(&f->ch_layout), static_cast<AVSampleFormat>(f->format),
                              f->sample_rate, 0, nullptr);
  if (r < 0) return fail("cannot convert this audio (" + std::to_string(f->ch_layout.nb_channels) + " channels)", r);
  ff->av_opt_set(swr, "resampler", "soxr", 0);
  ff->av_opt_set_double(swr, "cutoff", kResampleCutoff, 0);
  ff->av_opt_set_double(swr, "precision", kResamplePrecision, 0);
  // With float samples swr leaves its downmix unnormalised (stereo -> 0.707
  // (L + R), which clips); maxval 1 scales the coefficients to sum to 1.
  ff->av_opt_set_double(swr, "rematrix_maxval", 1.0, 0);
  if (f->ch_layout.order != AV_CHANNEL_ORDER_NATIVE && f->ch_layout.nb_channels > 1) {
    // No channel positions (e.g. a WAV with 3 channels and no mask): swr
    // cannot build a matrix, so average, as the WAV reader does.
    const int n = f->ch_layout.nb_channels;
    std::vector<double> matrix(static_cast<size_t>(n), 1.0 / n);
    r = ff->swr_set_matrix(swr, matrix.data(), n);
    if (r < 0) return fail("cannot downmix " + std::to_string(n) + " channels", r);
  }
  r = ff->swr_init(swr);
  if (r < 0) {
    char layout[128] = {};
    ff->av_channel_layout_describe(&f->ch_layout, layout, sizeof layout);
    return fail(std::string("cannot convert ") + layout + " audio at " + std::to_string(f->sample_rate) +
                    " Hz to 16 kHz mono (is libswresample built with soxr?)",
                r);
  }
  swr_rate = f->sample_rate;
  swr_format = f->format;
  r = ff->av_channel_layout_copy(&swr_layout, &f->ch_layout);
  if (r < 0) return fail("out of memory");
  return Status::Ok();
}

Status AudioSource::Impl::flush_resampler() {
  if (!swr) return Status::Ok();
  // soxr holds back about one filter length; it comes out in a few calls.
  std::vector<float> tmp;
  for (;;) {
    const int cap = std::max(ff->swr_get_out_samples(swr, 0), 4096);
    tmp.resize(static_cast<size_t>(cap));
    uint8_t* out = reinterpret_cast<uint8_t*>(tmp.data());
    const int n = ff->swr_convert(swr, &out, cap, nullptr, 0);
    if (n < 0) return fail("resampling failed", n);
    if (n == 0) break;
    append(tmp.data(), n);
  }
  ff->swr_free(&swr);
  return Status::Ok();
}

Status AudioSource::Impl::convert(const AVFrame* f) {
  if (f->nb_samples <= 0) return Status::Ok();
  if (!swr || f->sample_rate != swr_rate || f->format != swr_format ||
      ff->av_channel_layout_compare(&f->ch_layout, &swr_layout) != 0) {
    AMA_TRY(flush_resampler());  // what the old converter holds belongs before this frame
    AMA_TRY(make_resampler(f));
  }
  const int cap = ff->swr_get_out_samples(swr, f->nb_samples);
  if (cap < 0) return fail("resampling failed", cap);
  std::vector<float> tmp(static_cast<size_t>(cap));
  uint8_t* out = reinterpret_cast<uint8_t*>(tmp.data());
  const int n = ff->swr_convert(swr, &out, cap, const_cast<const uint8_t**>(f->extended_data), f->nb_samples);
  if (n < 0) return fail("resampling failed", n);
  append(tmp.data(), n);
  return Status::Ok();
}

Status AudioSource::Impl::receive_frames() {
  // A decoder reports each bad packet once and moves on; the cap only guards
  // against one that repeats an error forever (we then treat it as the end).
  constexpr int kMaxErrorsInARow = 1000;
  for (int errors = 0; errors < kMaxErrorsInARow;) {
    const int r = ff->avcodec_receive_frame(dec, frame);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return Status::Ok();
    if (r < 0) {
      // The decoder has dropped the bad packet; whether this ends the stream
      // is known only when the next frame decodes, or does not.
      pending_decode_error = av_error_string(ff, r);
      ++errors;
      continue;
    }
    errors = 0;
    if (!pending_decode_error.empty()) {
      ff->av_frame_unref(frame);
      char at[32];
      std::snprintf(at, sizeof at, "%.2f", static_cast<double>(produced) / kAudioSampleRate);
      return fail("decode error at " + std::string(at) + " s (" + pending_decode_error + ")");
    }
    const Status s = convert(frame);
    ff->av_frame_unref(frame);
    if (!s) return s;
  }
  return Status::Ok();
}

// Decodes until `buf` holds unread samples or the stream has ended.
Status AudioSource::Impl::fill() {
  while (pos >= buf.size() && stage != Stage::done) {
    buf.clear();
    pos = 0;
    switch (stage) {
      case Stage::demux: {
        const int r = ff->av_read_frame(fmt, pkt);
        if (r < 0) {
          // End of file, or a read error (a truncated MP4 points past the
          // end): either way the stream ends here, as in ffmpeg.
          if (r != AVERROR_EOF) demux_error = av_error_string(ff, r);
          const int e = ff->avcodec_send_packet(dec, nullptr);  // start draining
          if (e < 0 && e != AVERROR_EOF) return fail("decoder failed", e);
          stage = Stage::drain_decoder;
          break;
        }
        if (pkt->stream_index != stream) {
          ff->av_packet_unref(pkt);
          break;
        }
        int e = ff->avcodec_send_packet(dec, pkt);
        if (e == AVERROR(EAGAIN)) {  // output pending: take it, then resend
          AMA_TRY(receive_frames());
          e = ff->avcodec_send_packet(dec, pkt);
        }
        ff->av_packet_unref(pkt);
        if (e < 0 && e != AVERROR(EAGAIN)) pending_decode_error = av_error_string(ff, e);
        AMA_TRY(receive_frames());
        break;
      }
      case Stage::drain_decoder:
        AMA_TRY(receive_frames());
        stage = Stage::flush_resampler;
        break;
      case Stage::flush_resampler:
        AMA_TRY(flush_resampler());
        stage = Stage::done;
        if (produced == 0 && !pending_decode_error.empty())
          return fail("no audio could be decoded (" + pending_decode_error + ")");
        if (produced == 0 && !demux_error.empty()) {
          // MP4/M4A/MOV with the index at the end: read to the end to find the
          // index, then unable to seek back to the samples.
          return fail("no audio could be read (" + demux_error + ")" +
                      (stdin_io ? "; formats that need seeking, such as MP4 with its index at the end, "
                                  "cannot be read from a pipe"
                                : ""));
        }
        break;
      case Stage::done:
        break;
    }
  }
  return Status::Ok();
}

AudioSource::AudioSource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AudioSource::~AudioSource() = default;

Result<std::unique_ptr<AudioSource>> AudioSource::open(const std::string& path) {
  auto ff = ffmpeg();
  if (!ff) return make_error((path == "-" ? std::string("stdin") : path) + ": " + ff.message());
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(*ff);
    impl->name = path == "-" ? "stdin" : path;
    if (path != "-") {
      // Clear messages for the common mistakes before FFmpeg sees the path.
      struct stat st{};
      if (::stat(path.c_str(), &st) != 0) {
        return make_error(path + ": " + (errno == ENOENT ? std::string("no such file") : std::strerror(errno)));
      }
      if (S_ISDIR(st.st_mode)) return make_error(path + ": is a directory, not an audio file");
      if (S_ISREG(st.st_mode) && st.st_size == 0) return make_error(path + ": empty file (0 bytes)");
    }
    AMA_TRY(impl->open_input(path));
    AMA_TRY(impl->open_decoder());
    // Decode the first packets now, so that input that is not audio fails in
    // open() rather than in the middle of a caller's pipeline.
    AMA_TRY(impl->fill());
  } catch (const std::bad_alloc&) {
    return make_error((path == "-" ? std::string("stdin") : path) + ": out of memory");
  }
  return std::unique_ptr<AudioSource>(new AudioSource(std::move(impl)));
}

Result<size_t> AudioSource::read(float* out, size_t max) {
  Impl& s = *impl_;
  if (s.failed) return *s.failed;
  size_t n = 0;
  try {
    while (n < max) {
      if (s.pos < s.buf.size()) {
        const size_t k = std::min(max - n, s.buf.size() - s.pos);
        std::copy_n(s.buf.data() + s.pos, k, out + n);
        s.pos += k;
        n += k;
        continue;
      }
      if (s.stage == Impl::Stage::done) break;
      if (Status st = s.fill(); !st) {
        s.failed = st.error();
        if (n > 0) return n;  // the error comes on the next call
        return *s.failed;
      }
    }
  } catch (const std::bad_alloc&) {
    s.failed = s.fail("out of memory");
    return *s.failed;
  }
  return n;
}

double AudioSource::duration_hint() const {
  const AVFormatContext* fmt = impl_->fmt;
  if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0) return static_cast<double>(fmt->duration) / AV_TIME_BASE;
  const AVStream* st = fmt->streams[impl_->stream];
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0) return static_cast<double>(st->duration) * av_q2d(st->time_base);
  return -1.0;
}

const std::string& AudioSource::name() const { return impl_->name; }

Result<std::vector<float>> load_audio(const std::string& path) {
  auto src = AudioSource::open(path);
  if (!src) return src.error();
  AudioSource& a = **src;
  std::vector<float> all;
  try {
    // Reserve from the container's duration when it is plausible; a wrong
    // hint costs only a reallocation.
    const double hint = a.duration_hint();
    if (hint > 0 && hint * kAudioSampleRate < static_cast<double>(kMaxLoadSamples))
      all.reserve(static_cast<size_t>(hint * kAudioSampleRate) + kLoadBlock);
    for (;;) {
      const size_t old = all.size();
      all.resize(old + kLoadBlock);
      auto n = a.read(all.data() + old, kLoadBlock);
      if (!n) return n.error();
      all.resize(old + *n);
      if (*n == 0) break;
      if (all.size() > kMaxLoadSamples) {
        return make_error(a.name() + ": audio too long (over 24 h at 16 kHz; the limit is 24 h)");
      }
    }
  } catch (const std::bad_alloc&) {
    return make_error(a.name() + ": out of memory reading the audio");
  }
  if (all.empty()) return make_error(a.name() + ": no audio samples");
  return all;
}

}  // namespace ama
