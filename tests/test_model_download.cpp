// Models by name: the registry (names, URLs, cache folder), the downloader
// (resume with Range, a server that ignores Range, SHA-256 checks, 404,
// redirects, stalls, locking) and the CLI (`models list|pull|rm`, and
// `-m NAME` pulling on first use), all against a small HTTP server on
// loopback that this file runs itself.
//
// The server is raw sockets, not cpp-httplib: the cases need exact control
// of what goes on the wire (a Content-Length the body never reaches, a
// connection closed halfway, a 200 that ignores a Range header, headers and
// then silence), which httplib's own Range handling would get in the way of.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "model/download.h"
#include "model/model_registry.h"
#include "test_util.h"

namespace ama {
namespace {

namespace fs = std::filesystem;
using models::DownloadOptions;

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A fresh folder per test.
std::string temp_dir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "/dl_" + name + "_" + std::to_string(getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// ---- the loopback server ---------------------------------------------------

struct SeenRequest {
  std::string path;
  std::string range;  // the Range header, "" if none
};

bool send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

const std::string& model_sha();  // the served model's (below), made on first use

// One connection at a time, one request per connection (every answer says
// Connection: close). The handler writes the raw answer to the socket.
class LoopbackServer {
 public:
  using Handler = std::function<void(int fd, const SeenRequest&, LoopbackServer&)>;

  explicit LoopbackServer(Handler handler) : handler_(std::move(handler)) {
    // libcurl honours http_proxy and friends: keep loopback off any proxy
    // the machine may have (the CLI children inherit this too).
    ::setenv("no_proxy", "127.0.0.1,localhost", 1);
    // Make the served bytes before any client waits. Making them runs the
    // CLI (over 1 s in the sanitized CI build), and a handler that did it
    // first spent that inside quick_options()' 1 s stall limit: CI once
    // failed CorruptBodyIsRejectedAndNothingLands on "no answer".
    (void)model_sha();
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;  // any free port
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 16) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
      return;
    }
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~LoopbackServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<SeenRequest> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }
  bool stopping() const { return stop_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      timeval tv{5, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string head;
      char buf[4096];
      while (!contains(head, "\r\n\r\n") && head.size() < 65536) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      SeenRequest r;
      const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
      if (sp1 != std::string::npos && sp2 != std::string::npos) r.path = head.substr(sp1 + 1, sp2 - sp1 - 1);
      for (size_t at = head.find("\r\n"); at != std::string::npos && at + 2 < head.size();) {
        const size_t end = head.find("\r\n", at + 2);
        if (end == std::string::npos) break;
        const std::string line = head.substr(at + 2, end - at - 2);
        if (line.size() > 6 && (line.rfind("Range:", 0) == 0 || line.rfind("range:", 0) == 0))
          r.range = line.substr(line.find(':') + 2);
        at = end;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        seen_.push_back(r);
      }
      handler_(fd, r, *this);
      ::close(fd);
    }
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<SeenRequest> seen_;
};

std::string status_head(int code, const std::string& reason, const std::vector<std::string>& headers,
                        uint64_t content_length) {
  std::string s = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\n";
  for (const std::string& h : headers) s += h + "\r\n";
  s += "Content-Length: " + std::to_string(content_length) + "\r\nConnection: close\r\n\r\n";
  return s;
}

// Serves `body` honestly: 200, or 206 for "bytes=N-".
void serve_file(int fd, const SeenRequest& r, const std::string& body, const std::vector<std::string>& headers) {
  if (r.range.rfind("bytes=", 0) == 0) {
    const uint64_t start = std::stoull(r.range.substr(6));
    if (start >= body.size()) {
      send_all(fd, status_head(416, "Range Not Satisfiable",
                               {"Content-Range: bytes */" + std::to_string(body.size())}, 0));
      return;
    }
    std::vector<std::string> h = headers;
    h.push_back("Content-Range: bytes " + std::to_string(start) + "-" + std::to_string(body.size() - 1) + "/" +
                std::to_string(body.size()));
    send_all(fd, status_head(206, "Partial Content", h, body.size() - start) + body.substr(start));
    return;
  }
  send_all(fd, status_head(200, "OK", headers, body.size()) + body);
}

// Waits (bounded) until the client hangs up or the server stops: a server
// that has stopped sending.
void stall(int fd, LoopbackServer& server) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!server.stopping() && std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) {
      char c;
      if (::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) return;  // the client closed
    }
  }
}

// ---- the model served ------------------------------------------------------

// A small generated model (64-wide, one layer each side: ~7 MB, most of it
// the vocabulary's embedding), made once through the CLI.
const std::string& model_bytes() {
  static const std::string bytes = [] {
    const std::string path = ::testing::TempDir() + "/dl_model_" + std::to_string(getpid()) + ".bin";
    auto r = test::run_command(std::string(AMA_CLI_PATH) + " make-test-model --dims 64,2,1,1 --seed 3 -o " + path);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string b = read_all(path);
    fs::remove(path);
    return b;
  }();
  return bytes;
}

const std::string& model_sha() {
  static const std::string sha = [] {
    const std::string path = ::testing::TempDir() + "/dl_sha_" + std::to_string(getpid()) + ".bin";
    std::ofstream(path, std::ios::binary) << model_bytes();
    auto s = models::sha256_file(path);
    fs::remove(path);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : std::string();
  }();
  return sha;
}

std::string linked_etag() { return "X-Linked-ETag: \"" + model_sha() + "\""; }

DownloadOptions quick_options() {
  DownloadOptions o;
  o.connect_timeout = 5;
  o.low_speed_time = 1;  // a stall fails after ~1 s
  return o;
}

// ---- downloader --------------------------------------------------------------

TEST(Sha256, KnownVectors) {
  const std::string d = temp_dir("sha");
  std::ofstream(d + "/abc", std::ios::binary) << "abc";
  std::ofstream(d + "/empty", std::ios::binary);
  EXPECT_EQ(*models::sha256_file(d + "/abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(*models::sha256_file(d + "/empty"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_FALSE(models::sha256_file(d + "/missing").ok());
}

TEST(Download, NormalPullIsByteIdenticalAndVerified) {
  LoopbackServer server([](int fd, const SeenRequest& r, LoopbackServer&) {
    if (r.path == "/m/ggml-tiny.bin") serve_file(fd, r, model_bytes(), {linked_etag()});
    else send_all(fd, status_head(404, "Not Found", {}, 0));
  });
  const std::string d = temp_dir("normal");
  auto r = models::download_file(server.base() + "/m/ggml-tiny.bin", d + "/ggml-tiny.bin", quick_options());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_TRUE(r->verified);
  EXPECT_EQ(r->bytes, model_bytes().size());
  EXPECT_EQ(r->resumed_from, 0u);
  EXPECT_EQ(r->sha256, model_sha());
  EXPECT_EQ(read_all(d + "/ggml-tiny.bin"), model_bytes());
  EXPECT_FALSE(fs::exists(d + "/ggml-tiny.bin.part"));
}

TEST(Download, PlainEtagShaIsCheckedAndNoShaIsKeptUnverified) {
  std::atomic<int> mode{0};
  LoopbackServer server([&](int fd, const SeenRequest& r, LoopbackServer&) {
    if (mode == 0) serve_file(fd, r, model_bytes(), {"ETag: \"" + model_sha() + "\""});
    else if (mode == 1) serve_file(fd, r, model_bytes(), {"ETag: \"5d41402abc4b2a76b9719d911017c592\""});  // md5-like
    else serve_file(fd, r, model_bytes(), {"ETag: \"" + std::string(64, 'a') + "\""});  // a wrong sha
  });
  const std::string d = temp_dir("etag");
  auto a = models::download_file(server.base() + "/x", d + "/a.bin", quick_options());
  ASSERT_TRUE(a.ok()) << a.message();
  EXPECT_TRUE(a->verified);
  mode = 1;
  auto b = models::download_file(server.base() + "/x", d + "/b.bin", quick_options());
  ASSERT_TRUE(b.ok()) << b.message();
  EXPECT_FALSE(b->verified);  // no SHA-256 reported: kept, and said so
  EXPECT_EQ(read_all(d + "/b.bin"), model_bytes());
  mode = 2;
  auto c = models::download_file(server.base() + "/x", d + "/c.bin", quick_options());
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(contains(c.message(), "SHA-256 mismatch")) << c.message();
  EXPECT_FALSE(fs::exists(d + "/c.bin"));
}

TEST(Download, InterruptedPullResumesWithRange) {
  const size_t half = model_bytes().size() / 2;
  std::atomic<int> served{0};
  LoopbackServer server([&](int fd, const SeenRequest& r, LoopbackServer&) {
    if (served++ == 0) {
      // The whole length promised, half sent, then the connection closes.
      send_all(fd, status_head(200, "OK", {linked_etag()}, model_bytes().size()) + model_bytes().substr(0, half));
      return;
    }
    serve_file(fd, r, model_bytes(), {linked_etag()});
  });
  const std::string d = temp_dir("resume");
  const std::string dest = d + "/ggml-base.bin";
  auto first = models::download_file(server.base() + "/ggml-base.bin", dest, quick_options());
  ASSERT_FALSE(first.ok());
  EXPECT_TRUE(contains(first.message(), "cut off")) << first.message();
  EXPECT_TRUE(contains(first.message(), "run again to resume")) << first.message();
  EXPECT_FALSE(fs::exists(dest));  // a truncated file never lands under its name
  ASSERT_TRUE(fs::exists(dest + ".part"));
  EXPECT_EQ(fs::file_size(dest + ".part"), half);  // kept for the resume

  auto second = models::download_file(server.base() + "/ggml-base.bin", dest, quick_options());
  ASSERT_TRUE(second.ok()) << second.message();
  const auto seen = server.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].range, "");
  EXPECT_EQ(seen[1].range, "bytes=" + std::to_string(half) + "-");
  EXPECT_EQ(second->resumed_from, half);
  EXPECT_TRUE(second->verified);
  EXPECT_EQ(read_all(dest), model_bytes());
  EXPECT_FALSE(fs::exists(dest + ".part"));
}

TEST(Download, ServerThatIgnoresRangeRestartsThePart) {
  const size_t third = model_bytes().size() / 3;
  std::atomic<int> served{0};
  LoopbackServer server([&](int fd, const SeenRequest&, LoopbackServer&) {
    const std::string full = status_head(200, "OK", {linked_etag()}, model_bytes().size());
    if (served++ == 0) send_all(fd, full + model_bytes().substr(0, third));
    else send_all(fd, full + model_bytes());  // 200 and the whole file, whatever the Range
  });
  const std::string d = temp_dir("norange");
  const std::string dest = d + "/m.bin";
  ASSERT_FALSE(models::download_file(server.base() + "/m.bin", dest, quick_options()).ok());
  auto r = models::download_file(server.base() + "/m.bin", dest, quick_options());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(server.requests().at(1).range, "bytes=" + std::to_string(third) + "-");
  EXPECT_EQ(r->resumed_from, 0u);  // started over, not appended
  EXPECT_EQ(read_all(dest), model_bytes());
}

TEST(Download, CompletePartThatTheServerCallsUnsatisfiableStartsOver) {
  // A crash between the download and the rename leaves a whole .part; the
  // server answers its Range with 416.
  LoopbackServer server([](int fd, const SeenRequest& r, LoopbackServer&) {
    serve_file(fd, r, model_bytes(), {linked_etag()});
  });
  const std::string d = temp_dir("416");
  std::ofstream(d + "/m.bin.part", std::ios::binary) << model_bytes();
  auto r = models::download_file(server.base() + "/m.bin", d + "/m.bin", quick_options());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(server.requests().size(), 2u);
  EXPECT_EQ(read_all(d + "/m.bin"), model_bytes());
}

TEST(Download, CorruptBodyIsRejectedAndNothingLands) {
  LoopbackServer server([](int fd, const SeenRequest& r, LoopbackServer&) {
    std::string bad = model_bytes();
    bad[bad.size() / 2] ^= 0x40;
    serve_file(fd, r, bad, {linked_etag()});
  });
  const std::string d = temp_dir("corrupt");
  auto r = models::download_file(server.base() + "/m.bin", d + "/m.bin", quick_options());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.message(), "SHA-256 mismatch")) << r.message();
  EXPECT_TRUE(contains(r.message(), model_sha())) << r.message();
  EXPECT_FALSE(fs::exists(d + "/m.bin"));
  EXPECT_FALSE(fs::exists(d + "/m.bin.part"));  // deleted: the next pull starts clean
}

TEST(Download, HttpErrorNamesUrlAndStatus) {
  LoopbackServer server([](int fd, const SeenRequest&, LoopbackServer&) {
    const std::string body = "Entry not found";
    send_all(fd, status_head(404, "Not Found", {}, body.size()) + body);
  });
  const std::string d = temp_dir("404");
  const std::string url = server.base() + "/m/ggml-nothing.bin";
  auto r = models::download_file(url, d + "/m.bin", quick_options());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.message(), url)) << r.message();
  EXPECT_TRUE(contains(r.message(), "HTTP 404")) << r.message();
  EXPECT_FALSE(fs::exists(d + "/m.bin"));
  EXPECT_FALSE(fs::exists(d + "/m.bin.part"));  // nothing arrived: no empty partial left
}

TEST(Download, NothingListeningIsAClearError) {
  int port = 0;
  {
    LoopbackServer closed([](int, const SeenRequest&, LoopbackServer&) {});
    port = std::stoi(closed.base().substr(closed.base().rfind(':') + 1));
  }  // closed: the port now refuses
  const std::string d = temp_dir("refused");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/m.bin";
  auto r = models::download_file(url, d + "/m.bin", quick_options());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.message(), url)) << r.message();
  EXPECT_FALSE(fs::exists(d + "/m.bin.part"));
}

TEST(Download, FollowsRedirectAndChecksTheLinkedSha) {
  // Hugging Face's shape: the resolve URL answers 302 with X-Linked-ETag
  // (the LFS file's SHA-256) and X-Linked-Size; the CDN's ETag is no SHA-256.
  std::atomic<bool> wrong_sha{false};
  LoopbackServer server([&](int fd, const SeenRequest& r, LoopbackServer& s) {
    if (r.path == "/resolve/ggml-tiny.bin") {
      const std::string sha = wrong_sha ? std::string(64, 'b') : model_sha();
      send_all(fd, status_head(302, "Found",
                               {"Location: " + s.base() + "/cdn/blob?sig=1", "X-Linked-ETag: \"" + sha + "\"",
                                "X-Linked-Size: " + std::to_string(model_bytes().size())},
                               0));
    } else if (r.path == "/cdn/blob?sig=1") {
      serve_file(fd, r, model_bytes(), {"ETag: \"0123abcd-17\""});
    } else {
      send_all(fd, status_head(404, "Not Found", {}, 0));
    }
  });
  const std::string d = temp_dir("redirect");
  auto r = models::download_file(server.base() + "/resolve/ggml-tiny.bin", d + "/m.bin", quick_options());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_TRUE(r->verified);
  EXPECT_EQ(read_all(d + "/m.bin"), model_bytes());
  const auto seen = server.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].path, "/cdn/blob?sig=1");

  wrong_sha = true;
  auto bad = models::download_file(server.base() + "/resolve/ggml-tiny.bin", d + "/n.bin", quick_options());
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.message(), "SHA-256 mismatch")) << bad.message();
  EXPECT_FALSE(fs::exists(d + "/n.bin"));
}

TEST(Download, StalledServerTimesOutAndKeepsThePart) {
  LoopbackServer server([](int fd, const SeenRequest&, LoopbackServer& s) {
    send_all(fd, status_head(200, "OK", {linked_etag()}, model_bytes().size()) + model_bytes().substr(0, 100));
    stall(fd, s);
  });
  const std::string d = temp_dir("stall");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = models::download_file(server.base() + "/m.bin", d + "/m.bin", quick_options());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.message(), "stalled")) << r.message();
  EXPECT_TRUE(contains(r.message(), "AMANUENSIS_DOWNLOAD_TIMEOUT")) << r.message();
  EXPECT_LT(seconds, 10.0);  // low_speed_time is 1 s
  EXPECT_FALSE(fs::exists(d + "/m.bin"));
  EXPECT_EQ(fs::file_size(d + "/m.bin.part"), 100u);
}

TEST(Download, ServerThatSaysNothingIsNoAnswerNamingItsLimit) {
  LoopbackServer server([](int fd, const SeenRequest&, LoopbackServer& s) { stall(fd, s); });
  const std::string d = temp_dir("silent");
  auto r = models::download_file(server.base() + "/m.bin", d + "/m.bin", quick_options());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.message(), "connected, but no answer within 1 s")) << r.message();
  EXPECT_TRUE(contains(r.message(), "AMANUENSIS_DOWNLOAD_TIMEOUT")) << r.message();
  EXPECT_FALSE(fs::exists(d + "/m.bin"));
}

TEST(Download, SecondDownloadOfTheSameFileIsRefusedWhileTheFirstRuns) {
  std::atomic<bool> first_started{false};
  LoopbackServer server([&](int fd, const SeenRequest&, LoopbackServer& s) {
    send_all(fd, status_head(200, "OK", {}, model_bytes().size()) + model_bytes().substr(0, 10));
    first_started = true;
    stall(fd, s);
  });
  const std::string d = temp_dir("lock");
  DownloadOptions slow = quick_options();
  slow.low_speed_time = 3;
  std::thread first([&] { (void)models::download_file(server.base() + "/m.bin", d + "/m.bin", slow); });
  for (int i = 0; i < 200 && !first_started; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(first_started);
  auto second = models::download_file(server.base() + "/m.bin", d + "/m.bin", slow);
  first.join();
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(contains(second.message(), "another process")) << second.message();
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(Download, TimeoutFromEnvironment) {
  ::setenv("AMANUENSIS_DOWNLOAD_TIMEOUT", "7", 1);
  auto o = models::download_options_from_env();
  ASSERT_TRUE(o.ok()) << o.message();
  EXPECT_EQ(o->low_speed_time, 7);
  ::setenv("AMANUENSIS_DOWNLOAD_TIMEOUT", "soon", 1);
  auto bad = models::download_options_from_env();
  ::unsetenv("AMANUENSIS_DOWNLOAD_TIMEOUT");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.message(), "AMANUENSIS_DOWNLOAD_TIMEOUT")) << bad.message();
  EXPECT_EQ(models::download_options_from_env()->low_speed_time, 30);
}

TEST(DownloadProgress, RendersBarAndUnknownSize) {
  EXPECT_EQ(models::DownloadProgress::render("base", 1 << 20, 4 << 20, 8), "base  25% |##      | 1.0/4.0 MiB");
  EXPECT_EQ(models::DownloadProgress::render("base", 3 << 20, 0, 8), "base 3.0 MiB");
  EXPECT_EQ(models::DownloadProgress::render("x", 9, 4, 4), "x 100% |####| 0.0/0.0 MiB");
}

// ---- registry ----------------------------------------------------------------

// Sets environment variables for one test and restores them.
class EnvGuard {
 public:
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.push_back({name, old ? std::optional<std::string>(old) : std::nullopt});
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~EnvGuard() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(ModelRegistry, NamesAndUrlsFollowWhisperCppsScript) {
  EnvGuard env;
  env.set("AMANUENSIS_MODEL_URL", nullptr);
  EXPECT_EQ(models::known_models().size(), 30u);
  for (const char* n : {"tiny", "tiny.en", "base.en-q5_1", "small.en-tdrz", "medium-q8_0", "large-v1", "large-v2-q8_0",
                        "large-v3", "large-v3-turbo", "large-v3-turbo-q8_0"})
    EXPECT_TRUE(models::is_known_model(n)) << n;
  for (const char* n : {"", "large", "base.bin", "ggml-base", "../base", "tiny "})
    EXPECT_FALSE(models::is_known_model(n)) << n;
  EXPECT_EQ(models::model_url("base.en"), "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-base.en.bin");
  EXPECT_EQ(models::model_url("small.en-tdrz"),
            "https://huggingface.co/akashmjn/tinydiarize-whisper.cpp/resolve/main/ggml-small.en-tdrz.bin");
  env.set("AMANUENSIS_MODEL_URL", "http://mirror.example/models//");
  EXPECT_EQ(models::model_url("large-v3"), "http://mirror.example/models/ggml-large-v3.bin");
}

TEST(ModelRegistry, CacheFolderFromXdgOrHome) {
  EnvGuard env;
  env.set("XDG_CACHE_HOME", "/tmp/xdg-test");
  env.set("HOME", "/home/someone");
  EXPECT_EQ(*models::cache_dir(), "/tmp/xdg-test/amanuensis");
  EXPECT_EQ(*models::cached_model_path("base"), "/tmp/xdg-test/amanuensis/ggml-base.bin");
  env.set("XDG_CACHE_HOME", "relative/cache");  // invalid per the XDG spec: ignored
  EXPECT_EQ(*models::cache_dir(), "/home/someone/.cache/amanuensis");
  env.set("XDG_CACHE_HOME", nullptr);
  EXPECT_EQ(*models::cache_dir(), "/home/someone/.cache/amanuensis");
  env.set("HOME", nullptr);
  auto none = models::cache_dir();
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(contains(none.message(), "XDG_CACHE_HOME")) << none.message();
}

TEST(ModelRegistry, PullIntoCacheThenRemove) {
  LoopbackServer server([](int fd, const SeenRequest& r, LoopbackServer&) {
    if (r.path == "/hf/ggml-base.en.bin") serve_file(fd, r, model_bytes(), {linked_etag()});
    else send_all(fd, status_head(404, "Not Found", {}, 0));
  });
  const std::string d = temp_dir("registry");
  EnvGuard env;
  env.set("XDG_CACHE_HOME", (d + "/cache").c_str());  // does not exist yet: created
  env.set("AMANUENSIS_MODEL_URL", (server.base() + "/hf/").c_str());
  auto p = models::pull_model("base.en", quick_options());
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_EQ(p->path, d + "/cache/amanuensis/ggml-base.en.bin");
  EXPECT_FALSE(p->already_cached);
  EXPECT_EQ(read_all(p->path), model_bytes());
  auto again = models::pull_model("base.en", quick_options());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_cached);
  EXPECT_EQ(server.requests().size(), 1u);

  auto missing = models::pull_model("base", quick_options());  // the server has no ggml-base.bin
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.message(), "HTTP 404")) << missing.message();
  auto unknown = models::pull_model("enormous", quick_options());
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(contains(unknown.message(), "unknown model name \"enormous\"")) << unknown.message();
  EXPECT_TRUE(contains(unknown.message(), "large-v3-turbo")) << unknown.message();

  auto freed = models::remove_model("base.en");
  ASSERT_TRUE(freed.ok()) << freed.message();
  EXPECT_EQ(*freed, model_bytes().size());
  EXPECT_FALSE(fs::exists(p->path));
  auto twice = models::remove_model("base.en");
  ASSERT_FALSE(twice.ok());
  EXPECT_TRUE(contains(twice.message(), "not in the cache")) << twice.message();
}

// ---- CLI ---------------------------------------------------------------------------

struct CliFixture {
  std::string dir, cache, env;
  CliFixture(const std::string& name, const std::string& base_url) {
    dir = temp_dir(name);
    cache = dir + "/cache/amanuensis";
    env = "XDG_CACHE_HOME=" + dir + "/cache AMANUENSIS_MODEL_URL=" + base_url + " ";
  }
  test::CommandResult run(const std::string& args, const std::string& extra_env = "") const {
    return test::run_command(env + extra_env + std::string(AMA_CLI_PATH) + " " + args);
  }
};

LoopbackServer::Handler models_handler() {
  return [](int fd, const SeenRequest& r, LoopbackServer&) {
    if (r.path == "/m/ggml-tiny.bin" || r.path == "/m/ggml-tiny.en.bin")
      serve_file(fd, r, model_bytes(), {linked_etag()});
    else
      send_all(fd, status_head(404, "Not Found", {}, 0));
  };
}

TEST(ModelsCli, ListPullRm) {
  LoopbackServer server(models_handler());
  CliFixture cli("cli_models", server.base() + "/m");

  auto pull = cli.run("models pull tiny");
  ASSERT_EQ(pull.exit_code, 0) << pull.err;
  EXPECT_EQ(pull.out, cli.cache + "/ggml-tiny.bin\n");
  EXPECT_TRUE(contains(pull.err, "tiny is not in the cache; downloading it from " + server.base() + "/m/ggml-tiny.bin"))
      << pull.err;
  EXPECT_TRUE(contains(pull.err, "SHA-256 " + model_sha() + " verified")) << pull.err;
  EXPECT_TRUE(contains(pull.err, "100% |")) << pull.err;  // the progress lines (not a terminal: sparse)
  EXPECT_EQ(read_all(cli.cache + "/ggml-tiny.bin"), model_bytes());

  auto again = cli.run("models pull tiny");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_FALSE(contains(again.err, "downloading")) << again.err;
  EXPECT_EQ(server.requests().size(), 1u);

  auto list = cli.run("models list");
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(contains(list.out, "cache: " + cli.cache + "\n")) << list.out;
  size_t lines = 0;
  for (char c : list.out) lines += c == '\n';
  EXPECT_EQ(lines, 2u + models::known_models().size()) << list.out;  // cache line, header, one per name
  char size[32];
  std::snprintf(size, sizeof size, "%.1f MiB", static_cast<double>(model_bytes().size()) / (1024.0 * 1024.0));
  const size_t tiny = list.out.find("\ntiny ");
  ASSERT_NE(tiny, std::string::npos) << list.out;
  const std::string tiny_line = list.out.substr(tiny + 1, list.out.find('\n', tiny + 1) - tiny - 1);
  EXPECT_TRUE(contains(tiny_line, " yes ")) << tiny_line;
  EXPECT_TRUE(contains(tiny_line, size)) << tiny_line;
  const size_t base = list.out.find("\nbase ");
  ASSERT_NE(base, std::string::npos);
  EXPECT_TRUE(contains(list.out.substr(base, list.out.find('\n', base + 1) - base), " no ")) << list.out;
  EXPECT_TRUE(contains(list.out, "large-v3-turbo-q8_0")) << list.out;

  auto missing = cli.run("models pull base");  // known, but the server has no such file
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.err, "amanuensis: error: " + server.base() + "/m/ggml-base.bin: HTTP 404"))
      << missing.err;
  EXPECT_FALSE(fs::exists(cli.cache + "/ggml-base.bin"));

  auto unknown = cli.run("models pull tiny nosuch");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(contains(unknown.err, "unknown model name \"nosuch\"")) << unknown.err;

  auto rm = cli.run("models rm tiny");
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_FALSE(fs::exists(cli.cache + "/ggml-tiny.bin"));
  auto rm_again = cli.run("models rm tiny");
  EXPECT_EQ(rm_again.exit_code, 1);
  EXPECT_TRUE(contains(rm_again.err, "tiny is not in the cache")) << rm_again.err;
  EXPECT_EQ(cli.run("models").exit_code, 1);  // needs list, pull or rm
}

TEST(ModelsCli, ModelNamePulledOnFirstUse) {
  LoopbackServer server(models_handler());
  CliFixture cli("cli_first_use", server.base() + "/m");
  const std::string out = cli.dir + "/jfk";
  const std::string args = "transcribe -m tiny.en " + test::shared("audio/jfk.wav") +
                           " --beam-size 1 --temperature-increment-on-fallback none -l en -f txt -o " + out;
  auto first = cli.run(args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_TRUE(contains(first.err, "amanuensis: tiny.en is not in the cache; downloading it from " + server.base() +
                                      "/m/ggml-tiny.en.bin"))
      << first.err;
  EXPECT_EQ(read_all(cli.cache + "/ggml-tiny.en.bin"), model_bytes());
  EXPECT_TRUE(fs::exists(out + ".txt"));

  auto second = cli.run(args);  // now from the cache, without a request
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_FALSE(contains(second.err, "downloading")) << second.err;
  EXPECT_EQ(server.requests().size(), 1u);

  // A file path still wins over a name, and a name nobody knows is a clear error.
  auto by_path = cli.run("logits -m " + cli.cache + "/ggml-tiny.en.bin --audio " + test::shared("audio/jfk.wav") +
                         " --tokens 50258 --out " + cli.dir + "/logits.f32");
  EXPECT_EQ(by_path.exit_code, 0) << by_path.err;
  auto unknown = cli.run("transcribe -m tiny-en " + test::shared("audio/jfk.wav"));
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(contains(unknown.err, "amanuensis: error: tiny-en: no such file, and not a model name")) << unknown.err;
  EXPECT_TRUE(contains(unknown.err, "models list")) << unknown.err;
  auto serve_unknown = cli.run("serve -m nosuch --port 0");
  EXPECT_EQ(serve_unknown.exit_code, 1);
  EXPECT_TRUE(contains(serve_unknown.err, "nosuch: no such file, and not a model name")) << serve_unknown.err;
}

TEST(ModelsCli, StalledDownloadFailsWithinTheConfiguredTimeoutThenResumes) {
  std::atomic<bool> stalling{true};
  LoopbackServer server([&](int fd, const SeenRequest& r, LoopbackServer& s) {
    if (!stalling) return serve_file(fd, r, model_bytes(), {linked_etag()});
    send_all(fd, status_head(200, "OK", {linked_etag()}, model_bytes().size()) + model_bytes().substr(0, 100));
    stall(fd, s);
  });
  CliFixture cli("cli_stall", server.base());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = cli.run("bench -m base", "AMANUENSIS_DOWNLOAD_TIMEOUT=1 ");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "the download stalled (under 1000 bytes/s for 1 s")) << r.err;
  EXPECT_LT(seconds, 10.0);
  EXPECT_FALSE(fs::exists(cli.cache + "/ggml-base.bin"));
  EXPECT_TRUE(fs::exists(cli.cache + "/ggml-base.bin.part"));
  auto bad_env = cli.run("models pull base", "AMANUENSIS_DOWNLOAD_TIMEOUT=never ");
  EXPECT_EQ(bad_env.exit_code, 1);
  EXPECT_TRUE(contains(bad_env.err, "AMANUENSIS_DOWNLOAD_TIMEOUT must be whole seconds")) << bad_env.err;

  stalling = false;  // the server is back: the next pull continues after the 100 bytes
  auto resumed = cli.run("models pull base");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(contains(resumed.err, "(resuming after 100 bytes)")) << resumed.err;
  EXPECT_EQ(server.requests().back().range, "bytes=100-");
  EXPECT_EQ(read_all(cli.cache + "/ggml-base.bin"), model_bytes());
}

TEST(ModelsCli, ServePullsItsModelByNameBeforeListening) {
  LoopbackServer server(models_handler());
  CliFixture cli("cli_serve", server.base() + "/m");
  const std::string out = cli.dir + "/serve.out", err = cli.dir + "/serve.err";
  auto started = test::run_command(cli.env + std::string(AMA_CLI_PATH) + " serve -m tiny --port 0 >" + out + " 2>" +
                                   err + " & echo $!");
  const int pid = std::atoi(started.out.c_str());
  ASSERT_GT(pid, 0) << started.out;
  std::string listening;
  for (int i = 0; i < 600 && listening.empty(); ++i) {  // up to 60 s
    const std::string o = read_all(out);
    const size_t at = o.find("http://127.0.0.1:");
    if (at != std::string::npos && o.find('\n', at) != std::string::npos)
      listening = o.substr(at, o.find('\n', at) - at);
    else std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string e = read_all(err);
  ASSERT_FALSE(listening.empty()) << e;
  EXPECT_TRUE(contains(e, "tiny is not in the cache; downloading it from " + server.base() + "/m/ggml-tiny.bin")) << e;
  // Resolved in serve_command before the server is built: the file is in the cache.
  EXPECT_EQ(read_all(cli.cache + "/ggml-tiny.bin"), model_bytes());
  EXPECT_EQ(server.requests().size(), 1u);
}

}  // namespace
}  // namespace ama
