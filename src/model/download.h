// Downloading a model file over HTTP(S) with libcurl, safely:
//
// - the body goes to DEST.part, which is renamed to DEST only after its
//   size and SHA-256 check out, so a truncated or corrupt file never sits
//   under the final name;
// - an interrupted download resumes: the next call asks for the rest with
//   "Range: bytes=N-" and appends the 206 answer; a server that ignores
//   Range and answers 200 with the whole file restarts the .part from zero;
// - redirects are followed (Hugging Face sends LFS files to a CDN with a
//   302), http and https only, at most 10 hops;
// - the SHA-256 is the one the server reports: Hugging Face's
//   X-Linked-ETag: "<64 hex>" (on the redirect, for LFS files), or a plain
//   ETag that is 64 hex digits. A mismatch deletes the .part (its bytes are
//   wrong, resuming would keep them) and is an error. No reported hash: the
//   file is kept unchecked and the result says so (what users of
//   whisper.cpp's script get);
// - a server that stalls fails after `low_speed_time` seconds under
//   `low_speed_limit` bytes/s (the .part is kept for a resume), and an
//   unreachable one after `connect_timeout`; HTTP errors name the URL and
//   the status;
// - the .part is locked (flock) while in use: a second process pulling the
//   same file gets an error instead of interleaving writes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/result.h"

namespace ama::models {

struct DownloadOptions {
  long connect_timeout = 30;  // seconds to connect (each hop)
  // Fail when the transfer runs slower than low_speed_limit bytes/s for
  // low_speed_time seconds: 1000 B/s for 30 s by default, so a stalled CDN
  // connection ends in half a minute while any real link (a 75 MB tiny
  // model at 1000 B/s would take 21 hours, so nobody is cut off who would
  // have finished) keeps going. $AMANUENSIS_DOWNLOAD_TIMEOUT sets the
  // seconds (see options_from_env).
  long low_speed_limit = 1000;
  long low_speed_time = 30;
  // (bytes on disk so far, total bytes or 0 if unknown), from the transfer
  // thread, at most a few times a second.
  std::function<void(uint64_t, uint64_t)> on_progress;
};

// The defaults with $AMANUENSIS_DOWNLOAD_TIMEOUT (whole seconds > 0) as the
// low-speed time; an unusable value is an error, not ignored.
Result<DownloadOptions> download_options_from_env();

struct DownloadResult {
  uint64_t bytes = 0;         // the file's size
  uint64_t resumed_from = 0;  // bytes kept from an earlier .part (0: a fresh download)
  std::string sha256;         // of the file, lowercase hex
  bool verified = false;      // the server reported a SHA-256 and it matched
};

// Downloads `url` to `dest` (through dest + ".part"), as above. The folder
// of dest must exist.
Result<DownloadResult> download_file(const std::string& url, const std::string& dest, const DownloadOptions& options);

// SHA-256 of a file, lowercase hex (OpenSSL's EVP).
Result<std::string> sha256_file(const std::string& path);

// A progress display for downloads on stderr: a bar redrawn in place when
// stderr is a terminal, else a line every 10% (or every 10 MB when the size
// is unknown), so logs stay short. finish() ends the bar's line.
class DownloadProgress {
 public:
  DownloadProgress(std::string label, bool terminal);
  static DownloadProgress for_stderr(std::string label);
  void update(uint64_t done, uint64_t total);
  void finish();
  std::function<void(uint64_t, uint64_t)> callback();  // must not outlive *this
  // "base.en  42% |############                  | 61.3/147.0 MB"
  static std::string render(const std::string& label, uint64_t done, uint64_t total, int width);

 private:
  std::string label_;
  bool terminal_;
  int last_step_ = -1;  // the last 10% step (or 10 MB step) printed
  double last_draw_ = -1;
  uint64_t drawn_done_ = 0, drawn_total_ = 0;  // the state on the line
  bool drawn_ = false;
};

}  // namespace ama::models
