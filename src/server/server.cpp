// `amanuensis serve`: see server.h.
#include "server/server.h"

#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "audio/vad.h"
#include "decode/pipeline.h"
#include "decode/scheduler.h"
#include "engine/engine.h"
#include "server/api.h"
#include "server/metrics.h"
#include "server/multipart.h"
#include "server/responses.h"
#include "server/web_page.h"

namespace ama::server {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void log_line(const std::string& s) { std::fprintf(stderr, "amanuensis: %s\n", s.c_str()); }

// The socket of the connection a request came on: httplib 0.11 does not
// hand it to handlers, so it is found by its addresses (both ends match
// exactly one socket of this process). -1 if not found.
int find_connection_fd(const httplib::Request& req) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    const int fd = std::atoi(entry.path().filename().c_str());
    sockaddr_storage peer{}, local{};
    socklen_t pl = sizeof peer, ll = sizeof local;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    char host[NI_MAXHOST], port[NI_MAXSERV], lport[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<sockaddr*>(&peer), pl, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
      continue;
    if (getnameinfo(reinterpret_cast<sockaddr*>(&local), ll, nullptr, 0, lport, sizeof lport, NI_NUMERICSERV) != 0)
      continue;
    if (req.remote_addr == host && std::to_string(req.remote_port) == port &&
        std::to_string(req.local_port) == lport)
      return fd;
  }
  return -1;
}

// True once the client has closed its end (or the connection broke).
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  if (p.revents & POLLIN) {
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  return false;
}

// A temporary file for an upload, removed when done.
struct TempFile {
  std::string path;
  int fd = -1;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
  bool create() {
    const char* dir = std::getenv("TMPDIR");
    std::string t = std::string(dir && *dir ? dir : "/tmp") + "/amanuensis-upload-XXXXXX";
    fd = mkstemp(t.data());
    if (fd < 0) return false;
    path = t;
    return true;
  }
  bool write(const char* d, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd, d, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      d += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }
};

// A decoding job on its own thread; the request's thread watches it (for
// segments to stream, a client that went away, the deadline).
struct Job {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::optional<Result<PipelineResult>> result;
  std::deque<Segment> segments;
  std::atomic<bool> cancel{false};
  std::thread thread;
  ~Job() {
    cancel = true;
    if (thread.joinable()) thread.join();
  }
};

enum class WaitEnd { done, disconnect, timeout };

class Server {
 public:
  explicit Server(const ServerOptions& o) : opt_(o) {}
  int run();

 private:
  struct Slot {  // one admitted request
    Server* s;
    ~Slot() { --s->in_flight_; }
  };
  std::shared_ptr<Slot> admit() {
    int n = in_flight_.load();
    while (n < opt_.max_queue)
      if (in_flight_.compare_exchange_weak(n, n + 1)) return std::shared_ptr<Slot>(new Slot{this});
    return nullptr;
  }
  void install_routes();
  void load_model();
  bool authorized(const httplib::Request& req, httplib::Response& res);
  void send_error(httplib::Response& res, const ApiError& e);
  void handle_audio(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                    Endpoint ep);
  WaitEnd wait_job(Job& job, int fd, Clock::time_point deadline, const std::function<bool(const Segment&)>& emit);
  Clock::time_point deadline_from(Clock::time_point start) const {
    return opt_.request_timeout > 0
               ? start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.request_timeout))
               : Clock::time_point::max();
  }
  ApiError timeout_error() const {
    ApiError e;
    e.status = 504;
    e.type = "timeout_error";
    e.code = "request_timeout";
    char b[64];
    std::snprintf(b, sizeof b, "%g", opt_.request_timeout);
    e.message = std::string("The request ran longer than the server's limit (--request-timeout ") + b +
                " s) and was cancelled";
    return e;
  }
  std::string model_id() const {
    return std::filesystem::path(opt_.model_path).stem().string();
  }

  ServerOptions opt_;
  httplib::Server http_;
  Metrics metrics_;
  std::atomic<bool> ready_{false}, stopping_{false};
  std::atomic<int> in_flight_{0}, preparing_{0};
  std::unique_ptr<Engine> engine_;
  std::optional<SileroVad> vad_;
  std::unique_ptr<Scheduler> scheduler_;
  DecodingOptions defaults_;
  std::mutex prepare_mu_;
  std::condition_variable prepare_cv_;
  int prepare_free_ = 0;
};

void Server::send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_json(e), "application/json");
  if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
}

bool Server::authorized(const httplib::Request& req, httplib::Response& res) {
  if (opt_.api_key.empty()) return true;
  auto token = bearer_token(req.get_header_value("Authorization"));
  ApiError e;
  e.status = 401;
  if (!token) {
    e.message = "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
  } else if (!constant_time_equal(*token, opt_.api_key)) {
    e.message = "Incorrect API key provided.";
    e.code = "invalid_api_key";
  } else {
    return true;
  }
  send_error(res, e);
  return false;
}

WaitEnd Server::wait_job(Job& job, int fd, Clock::time_point deadline,
                         const std::function<bool(const Segment&)>& emit) {
  WaitEnd end = WaitEnd::done;
  for (;;) {
    std::deque<Segment> ready;
    bool done;
    {
      std::unique_lock<std::mutex> lock(job.mu);
      job.cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return job.done || !job.segments.empty(); });
      ready.swap(job.segments);
      done = job.done;
    }
    if (end == WaitEnd::done && emit)
      for (const Segment& s : ready)
        if (!emit(s)) {
          end = WaitEnd::disconnect;
          break;
        }
    if (done) return end;
    if (job.cancel) continue;  // cancelled: the job ends at its next step
    if (end == WaitEnd::done && client_gone(fd)) end = WaitEnd::disconnect;
    if (end == WaitEnd::done && Clock::now() > deadline) end = WaitEnd::timeout;
    if (end != WaitEnd::done) {
      job.cancel = true;
      metrics_.count_cancelled(end == WaitEnd::disconnect ? "disconnect" : "timeout");
      log_line(end == WaitEnd::disconnect ? "client disconnected: cancelling its job"
                                          : "request timed out: cancelling its job");
    }
  }
}

void Server::handle_audio(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                          Endpoint ep) {
  const auto start = Clock::now();
  const auto deadline = deadline_from(start);
  RequestTiming timing;
  timing.model = model_id();
  // httplib parses multipart bodies itself when the Content-Type says so;
  // ours streams the file to disk with our limits, so hide the type from it.
  // (The Request is httplib's own non-const object, handed over as const.)
  const std::string content_type = req.get_header_value("Content-Type");
  auto& mutable_req = const_cast<httplib::Request&>(req);
  mutable_req.headers.erase("Content-Type");
  mutable_req.set_header("Content-Type", "application/octet-stream");
  // Early answers read (and drop) the body so that the connection stays usable.
  auto drain = [&] { reader([](const char*, size_t) { return true; }); };
  auto finish_error = [&](const ApiError& e) {
    send_error(res, e);
    timing.processing_s = seconds_since(start);
    for (auto& [k, v] : timing_headers(timing, false)) res.set_header(k, v);
    if (e.status >= 500 && e.status != 503 && e.status != 504) log_line("error " + std::to_string(e.status) + ": " + e.message);
  };
  if (!authorized(req, res)) return drain();
  if (!ready_ || stopping_) {
    drain();
    ApiError e;
    e.status = 503;
    e.type = "server_error";
    e.code = stopping_ ? "shutting_down" : "model_loading";
    e.message = stopping_ ? "The server is shutting down" : "The model is still loading; retry shortly";
    return finish_error(e);
  }
  auto boundary = multipart_boundary(content_type);
  if (!boundary) {
    drain();
    return finish_error(bad_request("The request must be multipart/form-data with a boundary (Content-Type: " +
                                    content_type.substr(0, 100) + ")"));
  }
  auto slot = admit();
  if (!slot) {
    drain();
    ApiError e;
    e.status = 429;
    e.type = "requests";
    e.code = "rate_limit_exceeded";
    e.message = "Too many requests in flight (the server's queue holds " + std::to_string(opt_.max_queue) +
                "); retry later";
    return finish_error(e);
  }

  const size_t max_file = static_cast<size_t>(opt_.max_upload_mb * 1024 * 1024);
  TempFile file;
  if (!file.create()) return finish_error(internal_error("cannot create a temporary file for the upload"));
  FormFields fields;
  std::string upload_name = "the upload";
  bool has_file = false, in_file = false, too_big = false, write_failed = false, timed_out = false;
  size_t file_bytes = 0, field_bytes = 0;
  std::optional<ApiError> form_error;
  MultipartParser::Handler h;
  h.on_part = [&](const PartHeader& p) {
    in_file = p.name == "file";
    if (in_file) {
      if (has_file) {
        form_error = bad_request("Duplicate parameter: file", "file");
        return false;
      }
      has_file = true;
      if (p.filename && !p.filename->empty()) upload_name = "'" + p.filename->substr(0, 200) + "'";
    } else {
      fields.emplace_back(p.name, "");
    }
    return true;
  };
  h.on_data = [&](const char* d, size_t n) {
    if (in_file) {
      file_bytes += n;
      if (file_bytes > max_file) too_big = true;
      if (!too_big && !write_failed && !file.write(d, n)) write_failed = true;
      return true;
    }
    field_bytes += n;
    if (field_bytes > (1u << 20)) {
      form_error = bad_request("The form fields are too large (more than 1 MB besides the file)");
      return false;
    }
    fields.back().second.append(d, n);
    return true;
  };
  MultipartParser parser(*boundary, h);
  bool parse_failed = false;
  const bool read_ok = reader([&](const char* d, size_t n) {
    if (Clock::now() > deadline) {
      timed_out = true;
      return false;
    }
    if (!parse_failed && !parser.feed(d, n)) parse_failed = true;  // keep reading: drop the rest
    return true;
  });
  timing.upload_s = seconds_since(start);
  if (timed_out) return finish_error(timeout_error());
  if (!read_ok) {
    // The body could not be read: too large for the server (httplib set
    // 413), or the client stopped sending (it is probably gone).
    if (res.status == 413) {
      ApiError e = bad_request("Maximum content size limit (" + std::to_string(max_file) + " bytes) exceeded");
      e.status = 413;
      return finish_error(e);
    }
    return finish_error(bad_request("Could not read the request body"));
  }
  if (!parse_failed && !parser.finish()) parse_failed = true;
  if (form_error) return finish_error(*form_error);
  if (parse_failed) return finish_error(bad_request("Malformed multipart/form-data body: " + parser.error()));
  if (too_big) {
    ApiError e = bad_request("Maximum content size limit (" + std::to_string(max_file) + " bytes) exceeded: the file has " +
                             std::to_string(file_bytes) + " bytes", "file", "file_too_large");
    e.status = 413;
    return finish_error(e);
  }
  if (write_failed) return finish_error(internal_error("could not store the upload"));

  ParseResult parsed = parse_audio_request(ep, fields, has_file);
  if (!parsed.request) return finish_error(parsed.error);
  const AudioRequest r = *parsed.request;
  if (!r.model.empty()) timing.model = r.model;
  PipelineOptions o;
  o.language = r.language.empty() ? "auto" : r.language;
  o.task = ep == Endpoint::translations ? Task::translate : Task::transcribe;
  o.word_timestamps = r.word_timestamps;
  o.initial_prompt = r.prompt;
  o.decoding = request_decoding(r, defaults_, opt_.temperature_fallback);
  if (auto lang = requested_language_token(engine_->model().tokenizer, o.language, o.task); !lang)
    return finish_error(bad_request(lang.message(), "language", "unsupported_language"));
  if (Status s = check_options(engine_->model(), o); !s) return finish_error(bad_request(s.message()));

  // Pass 1 on this thread, a few at a time. While waiting for a turn, a
  // client that leaves or the deadline ends the request.
  const int fd = find_connection_fd(req);
  const auto wait_start = Clock::now();
  {
    std::unique_lock<std::mutex> lock(prepare_mu_);
    while (!prepare_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return prepare_free_ > 0; })) {
      const bool gone = client_gone(fd), late = Clock::now() > deadline;
      if (!gone && !late) continue;
      lock.unlock();
      metrics_.count_cancelled(gone ? "disconnect" : "timeout");
      if (late) return finish_error(timeout_error());
      log_line("client disconnected while waiting to be prepared");
      res.status = 499;
      return;
    }
    --prepare_free_;
  }
  timing.wait_s = seconds_since(wait_start);
  ++preparing_;
  auto prepared = prepare_audio(*vad_, file.path, o.vad);
  --preparing_;
  {
    std::lock_guard<std::mutex> lock(prepare_mu_);
    ++prepare_free_;
  }
  prepare_cv_.notify_one();
  ::close(file.fd);
  file.fd = -1;
  if (!prepared) {
    // Name the client's file, not our temporary one.
    std::string why = prepared.message();
    for (size_t at; (at = why.find(file.path)) != std::string::npos;) why.replace(at, file.path.size(), upload_name);
    return finish_error(bad_request("Invalid audio file: " + why, "file", "invalid_audio"));
  }
  timing.audio_s = prepared->duration;
  if (Clock::now() > deadline) {
    metrics_.count_cancelled("timeout");
    return finish_error(timeout_error());
  }

  auto job = std::make_shared<Job>();
  JobEvents events;
  if (r.stream)
    events.on_segment = [j = job.get()](const Segment& s) {
      std::lock_guard<std::mutex> lock(j->mu);
      j->segments.push_back(s);
      j->cv.notify_all();
    };
  job->thread = std::thread([this, j = job.get(), audio = std::move(*prepared), o, events]() mutable {
    auto result = scheduler_->run(std::move(audio), o, events, &j->cancel);
    std::lock_guard<std::mutex> lock(j->mu);
    j->result.emplace(std::move(result));
    j->done = true;
    j->cv.notify_all();
  });

  auto finish_timing = [this, start](RequestTiming& t, const PipelineResult& pr) {
    t.processing_s = seconds_since(start);
    const double upload = t.upload_s, wait = t.wait_s;
    t.stages = pr.times;
    t.windows = pr.windows;
    t.decoded_tokens = pr.decoded_tokens;
    t.fallbacks = pr.fallbacks;
    t.upload_s = upload;
    t.wait_s = wait;
    metrics_.observe_transcription(t.audio_s, t.processing_s);
  };

  if (!r.stream) {
    const WaitEnd end = wait_job(*job, fd, deadline, nullptr);
    if (end == WaitEnd::timeout) return finish_error(timeout_error());
    if (end == WaitEnd::disconnect) {
      res.status = 499;  // nginx's "client closed request": nobody reads it
      return;
    }
    auto& result = *job->result;
    if (!result) return finish_error(internal_error("transcription failed: " + result.message()));
    finish_timing(timing, *result);
    auto body = format_response(r, result->transcript, timing);
    if (!body) return finish_error(internal_error(body.message()));
    res.status = 200;
    res.set_content(body->text, body->content_type.c_str());
    for (auto& [k, v] : timing_headers(timing, true)) res.set_header(k, v);
    return;
  }

  // stream=true: 200 now, then one event per segment as it is decoded.
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  for (auto& [k, v] : timing_headers(timing, false)) res.set_header(k, v);
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, slot, fd, deadline, timing, finish_timing, ep](size_t, httplib::DataSink& sink) mutable {
        int index = 0;
        auto emit = [&](const Segment& s) {
          const std::string e = sse_delta(s, index++);
          return sink.write(e.data(), e.size());
        };
        const WaitEnd end = wait_job(*job, fd, deadline, emit);
        if (end == WaitEnd::disconnect) return false;
        std::string last;
        if (end == WaitEnd::timeout) {
          last = sse_error(timeout_error());
        } else if (!*job->result) {
          last = sse_error(internal_error("transcription failed: " + job->result->message()));
          log_line("error 500: " + job->result->message());
        } else {
          finish_timing(timing, **job->result);
          last = sse_done((*job->result)->transcript, timing,
                          ep == Endpoint::translations ? Task::translate : Task::transcribe);
        }
        sink.write(last.data(), last.size());
        sink.done();
        return true;
      });
}

void Server::install_routes() {
  using httplib::Request;
  using httplib::Response;
  auto json = [](Response& res, const nlohmann::ordered_json& j, int status = 200) {
    res.status = status;
    res.set_content(j.dump(), "application/json");
  };
  http_.Get("/", [](const Request&, Response& res) {
    const std::string_view html = web_page_html();
    res.set_content(std::string(html), "text/html; charset=utf-8");
  });
  http_.Get("/health", [this, json](const Request&, Response& res) {
    if (ready_ && !stopping_) return json(res, {{"status", "ready"}});
    json(res, {{"status", stopping_ ? "stopping" : "loading"}}, 503);
  });
  http_.Get("/metrics", [this](const Request&, Response& res) {
    MetricsSnapshot s;
    s.ready = ready_;
    s.queue_depth = in_flight_;
    s.queue_capacity = opt_.max_queue;
    s.preparing = preparing_;
    if (ready_) {
      const Scheduler::Stats st = scheduler_->stats();
      s.decoding_jobs = st.jobs;
      s.batch_windows = st.windows;
      s.batch_sequences = st.sequences;
      s.max_batch = st.max_batch;
      s.queued_windows = st.queued_windows;
      s.decoder_steps = st.steps;
      s.busy_seconds = st.busy_seconds;
    }
    res.set_content(metrics_.render(s), "text/plain; version=0.0.4; charset=utf-8");
  });
  auto model_json = [this] {
    nlohmann::ordered_json m;
    m["id"] = model_id();
    m["object"] = "model";
    std::error_code ec;
    const auto t = std::filesystem::last_write_time(opt_.model_path, ec);
    m["created"] = ec ? 0
                      : static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(
                                                   std::chrono::file_clock::to_sys(t).time_since_epoch())
                                                   .count());
    m["owned_by"] = "amanuensis";
    return m;
  };
  http_.Get("/v1/models", [this, json, model_json](const Request& req, Response& res) {
    if (!authorized(req, res)) return;
    json(res, {{"object", "list"}, {"data", nlohmann::ordered_json::array({model_json()})}});
  });
  http_.Get("/v1/models/(.+)", [this, json, model_json](const Request& req, Response& res) {
    if (!authorized(req, res)) return;
    if (req.matches[1] == model_id()) return json(res, model_json());
    ApiError e = bad_request("The model '" + std::string(req.matches[1]) + "' does not exist", "model", "model_not_found");
    e.status = 404;
    send_error(res, e);
  });
  http_.Post("/v1/audio/transcriptions", [this](const Request& req, Response& res, const httplib::ContentReader& rd) {
    handle_audio(req, res, rd, Endpoint::transcriptions);
  });
  http_.Post("/v1/audio/translations", [this](const Request& req, Response& res, const httplib::ContentReader& rd) {
    handle_audio(req, res, rd, Endpoint::translations);
  });
  // Everything else: 405 on a known path, else 404 (bodies are dropped unread into memory).
  auto fallback = [this](const Request& req, Response& res) {
    static const std::vector<std::string> get_paths = {"/", "/health", "/metrics", "/v1/models"};
    static const std::vector<std::string> post_paths = {"/v1/audio/transcriptions", "/v1/audio/translations"};
    const bool is_get = std::find(get_paths.begin(), get_paths.end(), req.path) != get_paths.end() ||
                        req.path.rfind("/v1/models/", 0) == 0;
    const bool is_post = std::find(post_paths.begin(), post_paths.end(), req.path) != post_paths.end();
    ApiError e;
    if (is_get || is_post) {
      e.status = 405;
      e.message = "Method " + req.method + " is not allowed for " + req.path + " (use " + (is_get ? "GET" : "POST") + ")";
      res.set_header("Allow", is_get ? "GET, HEAD" : "POST");
    } else {
      e.status = 404;
      e.message = "Invalid URL (" + req.method + " " + req.path.substr(0, 200) + ")";
    }
    send_error(res, e);
  };
  auto fallback_reader = [fallback](const Request& req, Response& res, const httplib::ContentReader& rd) {
    auto& mutable_req = const_cast<Request&>(req);  // see handle_audio
    mutable_req.headers.erase("Content-Type");
    rd([](const char*, size_t) { return true; });
    fallback(req, res);
  };
  http_.Get(".*", fallback);
  http_.Post(".*", fallback_reader);
  http_.Put(".*", fallback_reader);
  http_.Patch(".*", fallback_reader);
  http_.Delete(".*", fallback_reader);
  http_.Delete(".*", fallback);
  http_.Options(".*", fallback);

  http_.set_error_handler([](const Request& req, Response& res) {
    if (!res.body.empty() || res.content_provider_) return;
    ApiError e;
    e.status = res.status;
    e.message = res.status == 413 ? "Maximum content size limit exceeded"
                : res.status == 404 ? "Invalid URL (" + req.method + " " + req.path.substr(0, 200) + ")"
                : res.status >= 500 ? "Internal server error"
                                    : "Bad request";
    if (res.status >= 500) e.type = "server_error";
    res.set_content(error_json(e), "application/json");
  });
  http_.set_exception_handler([](const Request& req, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
    log_line("error 500 on " + req.method + " " + req.path + ": " + what);
    res.status = 500;
    res.set_content(error_json(internal_error("Internal server error")), "application/json");
  });
  // Counted as the answer is about to be written (so a client that has its
  // answer sees it counted in /metrics); the status is final by then.
  http_.set_post_routing_handler([this](const Request& req, Response& res) {
    static const std::vector<std::string> known = {"/", "/health", "/metrics", "/v1/models",
                                                   "/v1/audio/transcriptions", "/v1/audio/translations"};
    std::string endpoint = std::find(known.begin(), known.end(), req.path) != known.end() ? req.path
                           : req.path.rfind("/v1/models/", 0) == 0                       ? "/v1/models/{id}"
                                                                                          : "other";
    metrics_.count_request(endpoint, res.status);
  });
}

void Server::load_model() {
  // For tests of the loading state: hold the model back this long.
  if (const char* delay = std::getenv("AMANUENSIS_SERVE_LOAD_DELAY_MS"))
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
  auto engine = Engine::load(opt_.model_path, {opt_.threads, opt_.compute});
  if (!engine) {
    log_line("error: " + engine.message());
    std::fflush(nullptr);
    _exit(1);
  }
  auto vad = SileroVad::load(opt_.vad_model);
  if (!vad) {
    log_line("error: " + vad.message());
    std::fflush(nullptr);
    _exit(1);
  }
  engine_ = std::move(*engine);
  vad_.emplace(std::move(*vad));
  auto sched = Scheduler::create(*engine_, {opt_.max_batch});
  if (!sched) {
    log_line("error: " + sched.message());
    std::fflush(nullptr);
    _exit(1);
  }
  scheduler_ = std::move(*sched);
  ready_ = true;
  log_line("model " + opt_.model_path + " loaded; ready");
}

int Server::run() {
  defaults_.beam_size = opt_.beam_size;
  defaults_.best_of = opt_.best_of;
  if (Status s = validate(defaults_); !s) {
    log_line("error: " + s.message());
    return 1;
  }
  prepare_free_ = std::max(1, opt_.max_prepare);
  // SIGTERM and SIGINT are taken by sigwait below: block them in every thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  install_routes();
  const size_t pool = static_cast<size_t>(opt_.max_queue) * 2 + 16;
  http_.new_task_queue = [pool] { return new httplib::ThreadPool(pool); };
  http_.set_keep_alive_timeout(2);
  http_.set_read_timeout(30);
  http_.set_write_timeout(30);
  // Bodies beyond the file limit plus room for the form fields are refused unread (413).
  http_.set_payload_max_length(static_cast<size_t>(opt_.max_upload_mb * 1024 * 1024) + (2u << 20));

  int port = opt_.port;
  if (port == 0) {
    port = http_.bind_to_any_port(opt_.host);
    if (port < 0) port = 0;
  } else if (!http_.bind_to_port(opt_.host, port)) {
    port = 0;
  }
  if (port <= 0) {
    log_line("error: cannot listen on " + opt_.host + ":" + std::to_string(opt_.port));
    return 1;
  }
  const bool v6 = opt_.host.find(':') != std::string::npos;
  std::printf("amanuensis: listening on http://%s%s%s:%d\n", v6 ? "[" : "", opt_.host.c_str(), v6 ? "]" : "", port);
  std::fflush(stdout);

  // cpp-httplib 0.11 leaves its accept loop, closing the socket, on any
  // accept() error but EMFILE. A server that stays up without listening
  // would hang every client and health check, so it shuts down instead
  // (the requests in flight finish) and exits 1.
  std::atomic<bool> listen_failed{false};
  std::thread listener([this, &listen_failed] {
    if (http_.listen_after_bind() || stopping_) return;
    listen_failed = true;
    log_line(std::string("error: accepting connections failed: ") + std::strerror(errno));
    kill(getpid(), SIGTERM);
  });
  std::thread loader([this] { load_model(); });
  std::atomic<bool> sampling{true};
  std::thread sampler([this, &sampling] {  // batch occupancy while decoding
    while (sampling) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!ready_) continue;
      const Scheduler::Stats st = scheduler_->stats();
      if (st.windows > 0 && st.max_batch > 0) metrics_.observe_occupancy(static_cast<double>(st.windows) / st.max_batch);
    }
  });

  int sig = 0;
  sigwait(&signals, &sig);
  if (!listen_failed)
    log_line(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
             ": finishing the requests in flight, then exiting");
  stopping_ = true;
  http_.stop();         // stops accepting; connections in flight finish
  listener.join();      // returns once every connection's thread is done
  loader.join();
  sampling = false;
  sampler.join();
  log_line("stopped");
  return listen_failed ? 1 : 0;
}

}  // namespace

int run_server(const ServerOptions& options) {
  Server s(options);
  return s.run();
}

}  // namespace ama::server
