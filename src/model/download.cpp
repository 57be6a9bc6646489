// See download.h. libcurl does the HTTP (redirects, TLS, timeouts); this
// file decides what the answer means for the .part file: append (206 at
// the right offset), restart (200), or leave it alone (errors).
#include "model/download.h"

// curl's typecheck-gcc.h makes curl_easy_setopt a macro, which would also
// expand inside curl.curl_easy_setopt(...): calls go through pointers here.
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/shared_library.h"

namespace ama::models {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r' || s[a] == '\n')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r' || s[b - 1] == '\n')) --b;
  return s.substr(a, b - a);
}

// An ETag as a SHA-256: strip a weak-validator "W/" and the quotes; the
// rest must be 64 hex digits (lowercased), else "".
std::string etag_sha256(std::string v) {
  v = trim(v);
  if (v.rfind("W/", 0) == 0) v = v.substr(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.size() != 64) return "";
  for (char c : v)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return "";
  return lower(v);
}

bool parse_u64(const std::string& s, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  out = v;
  return true;
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

// libcurl, opened on the first download rather than linked (why:
// src/core/shared_library.h). Its soname has been libcurl.so.4 since 2006.
#define AMA_CURL_FUNCTIONS(X) \
  X(curl_global_init) X(curl_easy_init) X(curl_easy_cleanup) X(curl_easy_setopt) X(curl_easy_perform) \
      X(curl_easy_getinfo) X(curl_easy_strerror)
struct CurlApi {
#define AMA_CURL_POINTER(name) decltype(&::name) name = nullptr;
  AMA_CURL_FUNCTIONS(AMA_CURL_POINTER)
#undef AMA_CURL_POINTER
};
constexpr const char* kCurlSoname = "libcurl.so.4";

Result<CurlApi> load_curl() {
  auto lib = open_shared_library(kCurlSoname, "downloading models (libcurl)");
  if (!lib) return lib.error();
  CurlApi api;
#define AMA_CURL_LOOKUP(name) AMA_TRY(bind_function(*lib, kCurlSoname, #name, api.name));
  AMA_CURL_FUNCTIONS(AMA_CURL_LOOKUP)
#undef AMA_CURL_LOOKUP
  const CURLcode code = api.curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) return make_error(std::string("libcurl failed to initialize: ") + api.curl_easy_strerror(code));
  return api;
}

// Loaded and initialized once per process; the same error on every call if
// it cannot be.
Result<const CurlApi*> curl_ready() {
  static std::once_flag once;
  static std::optional<CurlApi> api;
  static std::string error;
  std::call_once(once, [] {
    auto r = load_curl();
    if (r) api = *r;
    else error = r.message();
  });
  if (!api) return make_error(error);
  return static_cast<const CurlApi*>(&*api);
}

// One request's state, shared with the curl callbacks.
struct Transfer {
  int fd = -1;
  uint64_t offset = 0;  // bytes already in the .part when the request was sent
  // The current response (reset at each status line: a redirect's headers
  // come first, then the next hop's).
  long status = 0;
  std::string reason;
  std::string etag, content_range;
  int64_t content_length = -1;
  // From any hop: Hugging Face puts these on the 302 to its CDN.
  std::string linked_etag;
  int64_t linked_size = -1;

  bool begun = false;       // begin() ran: the body's fate is decided
  bool http_error = false;  // a non-2xx final answer
  bool restarted = false;   // asked for a range, got 200: the .part was emptied
  std::string abort_reason;  // why a callback stopped the transfer
  bool discard_part = false;  // and the .part cannot be resumed
  int64_t expected_total = -1;  // the whole file's size, if the answer said
  uint64_t on_disk = 0;         // bytes in the .part now
  const DownloadOptions* options = nullptr;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line = trim(std::string(data, size * n));
  if (line.rfind("HTTP/", 0) == 0) {
    t->status = 0;
    t->reason.clear();
    t->etag.clear();
    t->content_range.clear();
    t->content_length = -1;
    const size_t sp = line.find(' ');
    if (sp != std::string::npos) {
      t->status = std::strtol(line.c_str() + sp + 1, nullptr, 10);
      const size_t sp2 = line.find(' ', sp + 1);
      if (sp2 != std::string::npos) t->reason = line.substr(sp2 + 1);
    }
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  const std::string name = lower(trim(line.substr(0, colon)));
  const std::string value = trim(line.substr(colon + 1));
  uint64_t v = 0;
  if (name == "content-length" && parse_u64(value, v)) t->content_length = static_cast<int64_t>(v);
  else if (name == "etag") t->etag = value;
  else if (name == "content-range") t->content_range = value;
  else if (name == "x-linked-etag") t->linked_etag = value;
  else if (name == "x-linked-size" && parse_u64(value, v)) t->linked_size = static_cast<int64_t>(v);
  return size * n;
}

// Decides what the final answer means for the .part, once, before its
// first byte is written (or after the transfer, for an empty body).
// Returns false to stop the transfer.
bool begin(Transfer* t) {
  if (t->begun) return !t->http_error && t->abort_reason.empty();
  t->begun = true;
  if (t->status == 206) {
    // "bytes START-END/TOTAL": it must continue exactly where the .part ends.
    const std::string& cr = t->content_range;
    const size_t sp = cr.find(' '), dash = cr.find('-'), slash = cr.find('/');
    uint64_t start = 0, total = 0;
    if (cr.rfind("bytes ", 0) != 0 || dash == std::string::npos || slash == std::string::npos ||
        !parse_u64(cr.substr(sp + 1, dash - sp - 1), start)) {
      t->abort_reason = "a 206 answer without a usable Content-Range (\"" + cr + "\")";
      t->discard_part = true;
      return false;
    }
    if (start != t->offset) {
      t->abort_reason = "the server resumed at byte " + std::to_string(start) + ", not at " + std::to_string(t->offset);
      t->discard_part = true;
      return false;
    }
    if (parse_u64(cr.substr(slash + 1), total)) t->expected_total = static_cast<int64_t>(total);
    return true;
  }
  if (t->status == 200) {
    // A whole file: if we asked for a range, the server ignored it, and
    // what the .part holds would be duplicated. Start it over.
    if (t->offset > 0) {
      if (ftruncate(t->fd, 0) != 0 || lseek(t->fd, 0, SEEK_SET) != 0) {
        t->abort_reason = std::string("cannot empty the partial file: ") + std::strerror(errno);
        return false;
      }
      t->restarted = true;
      t->on_disk = 0;
    }
    t->expected_total = t->content_length;
    return true;
  }
  t->http_error = true;
  return false;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (!begin(t)) return 0;  // curl stops with CURLE_WRITE_ERROR
  const size_t len = size * n;
  size_t done = 0;
  while (done < len) {
    const ssize_t w = ::write(t->fd, data + done, len - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      t->abort_reason = std::string("cannot write the partial file: ") + std::strerror(errno);
      return 0;
    }
    done += static_cast<size_t>(w);
  }
  t->on_disk += len;
  return len;
}

int on_xfer(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->begun && !t->http_error && t->options->on_progress)
    t->options->on_progress(t->on_disk, t->expected_total > 0 ? static_cast<uint64_t>(t->expected_total) : 0);
  return 0;
}

// Opens and locks the .part. flock is per open file, and another process
// may rename the .part into place between our open() and flock(): then the
// descriptor we hold is the finished model, not a .part. Check the path
// still names the same file after locking, and retry if not.
Result<int> open_locked_part(const std::string& part) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    const int fd = ::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return make_error("cannot create " + part + ": " + std::strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      ::close(fd);
      if (e == EWOULDBLOCK) return make_error(part + " is being downloaded by another process; wait for it to finish");
      return make_error("cannot lock " + part + ": " + std::strerror(e));
    }
    struct stat a {}, b {};
    if (fstat(fd, &a) == 0 && ::stat(part.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      return fd;
    ::close(fd);
  }
  return make_error("cannot lock " + part + ": it keeps being replaced");
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<DownloadOptions> download_options_from_env() {
  DownloadOptions o;
  if (const char* env = std::getenv("AMANUENSIS_DOWNLOAD_TIMEOUT"); env && *env) {
    uint64_t v = 0;
    if (!parse_u64(env, v) || v == 0 || v > 86400)
      return make_error(std::string("AMANUENSIS_DOWNLOAD_TIMEOUT must be whole seconds in [1, 86400], not \"") + env +
                        "\"");
    o.low_speed_time = static_cast<long>(v);
    o.connect_timeout = std::min<long>(o.connect_timeout, static_cast<long>(v));
  }
  return o;
}

Result<std::string> sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return make_error("cannot read " + path + ": " + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1;
  std::vector<unsigned char> buf(1 << 20);
  size_t n = 0;
  while (ok && (n = std::fread(buf.data(), 1, buf.size(), f)) > 0) ok = EVP_DigestUpdate(ctx.get(), buf.data(), n) == 1;
  const bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  if (read_error) return make_error("cannot read " + path);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!ok || EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) return make_error("SHA-256 failed (OpenSSL)");
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned int i = 0; i < len; ++i) {
    s += hex[md[i] >> 4];
    s += hex[md[i] & 15];
  }
  return s;
}

namespace {

// download_file with the .part open and locked.
Result<DownloadResult> download_locked(const std::string& url, const std::string& dest, const std::string& part,
                                       int fd, const DownloadOptions& options, const CurlApi& cu) {

  // A .part that the server calls unsatisfiable (416) may already be whole
  // (a crash between the download and the rename) or longer than the file:
  // start over once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return make_error("cannot stat " + part + ": " + std::strerror(errno));
    if (lseek(fd, 0, SEEK_END) < 0) return make_error("cannot seek " + part + ": " + std::strerror(errno));

    Transfer t;
    t.fd = fd;
    t.offset = static_cast<uint64_t>(st.st_size);
    t.on_disk = t.offset;
    t.options = &options;

    std::unique_ptr<CURL, void (*)(CURL*)> curl(cu.curl_easy_init(), cu.curl_easy_cleanup);
    if (!curl) return make_error("libcurl: cannot create a handle");
    char errbuf[CURL_ERROR_SIZE] = {0};
    CURL* c = curl.get();
    cu.curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    cu.curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    cu.curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    cu.curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    cu.curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cu.curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    cu.curl_easy_setopt(c, CURLOPT_USERAGENT, "amanuensis/0.1");
    cu.curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    cu.curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options.connect_timeout);
    cu.curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, options.low_speed_limit);
    cu.curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options.low_speed_time);
    cu.curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    cu.curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    cu.curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    cu.curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    cu.curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    cu.curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    cu.curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    // CURLOPT_RANGE rather than CURLOPT_RESUME_FROM: the latter makes curl
    // itself fail on a 200, and a 200 here only means "start over".
    const std::string range = std::to_string(t.offset) + "-";
    if (t.offset > 0) cu.curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());

    const CURLcode rc = cu.curl_easy_perform(c);
    const std::string detail = errbuf[0] ? errbuf : cu.curl_easy_strerror(rc);
    const std::string kept = std::to_string(t.on_disk) + " bytes are kept in " + part + "; run again to resume";

    if (rc == CURLE_OK && !t.begun) begin(&t);  // an empty body
    if (t.http_error) {
      if (t.status == 416 && t.offset > 0 && attempt == 0) {
        if (ftruncate(fd, 0) != 0) return make_error("cannot empty " + part + ": " + std::strerror(errno));
        continue;
      }
      return make_error(url + ": HTTP " + std::to_string(t.status) + (t.reason.empty() ? "" : " " + t.reason));
    }
    if (!t.abort_reason.empty()) {
      // An answer that does not continue the .part: it cannot be resumed.
      if (t.discard_part) {
        ::unlink(part.c_str());
        return make_error(url + ": " + t.abort_reason + "; the partial file was deleted");
      }
      return make_error(url + ": " + t.abort_reason);
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      if (!t.begun) {
        // Either the connection never came up (connect_timeout) or the
        // server took it and said nothing (the low-speed rule runs from the
        // start): name the limit that fired, not always the connect one.
        double connect_s = 0;
        cu.curl_easy_getinfo(c, CURLINFO_CONNECT_TIME, &connect_s);
        if (connect_s <= 0)
          return make_error(url + ": could not connect within " + std::to_string(options.connect_timeout) + " s (" +
                            detail + ")");
        return make_error(url + ": connected, but no answer within " + std::to_string(options.low_speed_time) +
                          " s (" + detail + "; AMANUENSIS_DOWNLOAD_TIMEOUT sets the seconds)");
      }
      return make_error(url + ": the download stalled (under " + std::to_string(options.low_speed_limit) +
                        " bytes/s for " + std::to_string(options.low_speed_time) +
                        " s; AMANUENSIS_DOWNLOAD_TIMEOUT sets the seconds); " + kept);
    }
    if (rc == CURLE_PARTIAL_FILE || (rc != CURLE_OK && t.begun))
      return make_error(url + ": the download was cut off (" + detail + "); " + kept);
    if (rc != CURLE_OK) return make_error(url + ": " + detail);

    // The whole body arrived as far as HTTP can tell: check its size.
    int64_t expected = t.expected_total;
    if (expected < 0) expected = t.linked_size;
    if (expected >= 0 && t.on_disk < static_cast<uint64_t>(expected))
      return make_error(url + ": the download ended at " + std::to_string(t.on_disk) + " of " +
                        std::to_string(expected) + " bytes; " + kept);
    if (expected >= 0 && t.on_disk > static_cast<uint64_t>(expected)) {
      ::unlink(part.c_str());
      return make_error(url + ": got " + std::to_string(t.on_disk) + " bytes, the server said " +
                        std::to_string(expected) + "; the partial file was deleted");
    }
    if (fsync(fd) != 0) return make_error("cannot write " + part + ": " + std::strerror(errno));

    DownloadResult r;
    r.bytes = t.on_disk;
    r.resumed_from = t.restarted ? 0 : t.offset;
    auto sha = sha256_file(part);
    if (!sha) return sha.error();
    r.sha256 = *sha;
    std::string want = etag_sha256(t.linked_etag);
    if (want.empty()) want = etag_sha256(t.etag);
    if (!want.empty()) {
      if (want != r.sha256) {
        // Wrong bytes somewhere: resuming would keep them, so start clean next time.
        ::unlink(part.c_str());
        return make_error(url + ": SHA-256 mismatch: the server reports " + want + ", the download has " + r.sha256 +
                          "; the partial file was deleted, run again to download it afresh");
      }
      r.verified = true;
    }
    if (std::rename(part.c_str(), dest.c_str()) != 0)
      return make_error("cannot rename " + part + " to " + dest + ": " + std::strerror(errno));
    return r;
  }
  return make_error(url + ": HTTP 416 Range Not Satisfiable, even without a range");
}

}  // namespace

Result<DownloadResult> download_file(const std::string& url, const std::string& dest, const DownloadOptions& options) {
  auto cu = curl_ready();
  if (!cu) return cu.error();
  const std::string part = dest + ".part";
  auto fd = open_locked_part(part);
  if (!fd) return fd.error();
  FdCloser closer{*fd};
  auto r = download_locked(url, dest, part, *fd, options, **cu);
  // A failure before any byte arrived (404, no connection) leaves nothing
  // worth resuming: do not leave an empty .part behind (`models list`
  // would show it as a partial download).
  struct stat st {};
  if (!r && fstat(*fd, &st) == 0 && st.st_size == 0 && st.st_nlink > 0) ::unlink(part.c_str());
  return r;
}

// ---- progress -------------------------------------------------------------

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

DownloadProgress::DownloadProgress(std::string label, bool terminal) : label_(std::move(label)), terminal_(terminal) {}

DownloadProgress DownloadProgress::for_stderr(std::string label) { return DownloadProgress(std::move(label), isatty(2)); }

std::string DownloadProgress::render(const std::string& label, uint64_t done, uint64_t total, int width) {
  if (total == 0) return label + " " + mib(done) + " MiB";
  const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const int filled = static_cast<int>(frac * width);
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(frac * 100));
  return label + " " + pct + " |" + std::string(filled, '#') + std::string(width - filled, ' ') + "| " + mib(done) +
         "/" + mib(total) + " MiB";
}

void DownloadProgress::update(uint64_t done, uint64_t total) {
  if (terminal_) {
    const double now = now_seconds();
    const bool complete = total > 0 && done >= total;
    if (drawn_ && done == drawn_done_ && total == drawn_total_) return;  // curl reports while idle too
    if (!complete && last_draw_ >= 0 && now - last_draw_ < 0.1) return;
    last_draw_ = now;
    drawn_done_ = done;
    drawn_total_ = total;
    std::string line = "\r" + render(label_, done, total, 30) + "  ";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    drawn_ = true;
    return;
  }
  // Logs: one line per 10% (or per 10 MiB when the size is unknown).
  const int step = total > 0 ? static_cast<int>(std::min<uint64_t>(10, done * 10 / total))
                             : static_cast<int>(done / (10u << 20));
  if (step <= last_step_) return;
  last_step_ = step;
  std::fprintf(stderr, "%s\n", render(label_, done, total, 10).c_str());
}

void DownloadProgress::finish() {
  if (terminal_ && drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

std::function<void(uint64_t, uint64_t)> DownloadProgress::callback() {
  return [this](uint64_t done, uint64_t total) { update(done, total); };
}

}  // namespace ama::models
