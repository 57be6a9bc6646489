// `amanuensis serve` over real HTTP on loopback: each test starts the CLI
// as a child process on a free port (--port 0) and talks to it with
// httplib::Client or a raw socket. Also the pure parsers (multipart and the
// OpenAI parameters) directly, with a few hundred mutated inputs (CI's
// stand-in for scripts/fuzz.sh).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "server/api.h"
#include "server/multipart.h"
#include "test_util.h"

namespace {

using namespace ama;
using namespace ama::server;
using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

std::string model_path() { return test::shared("oracle/micro/model.bin"); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// `amanuensis serve ARGS --port 0` as a child process.
class Serve {
 public:
  explicit Serve(std::vector<std::string> args, std::vector<std::string> env = {}) {
    static int counter = 0;
    const std::string base = ::testing::TempDir() + "/serve_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    out_ = base + ".out";
    err_ = base + ".err";
    // Emptied here, before the child exists: pid_max is 32768 on these
    // machines, so a test process can get the pid of an earlier one whose
    // files are still in TempDir, and the loop below would otherwise read
    // that server's "listening" line (its dead port) before the child's
    // freopen truncates the file: the likeliest cause of a CI run that
    // saw 120 s of refused connections while its server, by its own log,
    // was ready.
    for (const std::string* f : {&out_, &err_}) std::ofstream(*f, std::ios::trunc);
    std::vector<std::string> argv = {AMA_CLI_PATH, "serve", "-m", model_path(), "--port", "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      freopen(out_.c_str(), "w", stdout);
      freopen(err_.c_str(), "w", stderr);
      for (const auto& e : env) putenv(strdup(e.c_str()));
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    const std::string listening = "amanuensis: listening on http://127.0.0.1:";
    for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(60);) {
      const std::string out = read_file(out_);
      if (const size_t at = out.find(listening); at != std::string::npos && out.find('\n', at) != std::string::npos) {
        port_ = std::atoi(out.c_str() + at + listening.size());
        break;
      }
      if (exited()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~Serve() {
    if (pid_ > 0 && status_ < 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::remove(out_.c_str());
    std::remove(err_.c_str());
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string logs() const {
    return "--- port " + std::to_string(port_) + ", last GET /health: " + health_ + "\n--- stdout ---\n" +
           read_file(out_) + "--- stderr ---\n" + read_file(err_);
  }
  std::string err() const { return read_file(err_); }
  httplib::Client client(int timeout_s = 300) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(timeout_s);
    c.set_write_timeout(timeout_s);
    c.set_connection_timeout(10);
    return c;
  }
  // Waits for GET /health to say ready.
  bool wait_ready() {
    for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(120);) {
      auto c = client(5);
      auto r = c.Get("/health");
      if (r && r->status == 200) return true;
      health_ = r ? "status " + std::to_string(r->status) : httplib::to_string(r.error());
      if (exited()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  bool exited() {
    if (status_ >= 0) return true;
    int st;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return true;
    }
    return false;
  }
  // Sends `sig`, waits for the exit: its exit code (128+signal if killed; -1 on timeout).
  int stop(int sig = SIGTERM, int timeout_s = 60) {
    if (!exited()) kill(pid_, sig);
    for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(timeout_s);) {
      if (exited()) return status_;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int status_ = -1;
  std::string out_, err_;
  std::string health_ = "none";
};

// A server ready to use, or the test fails with its logs.
#define START_SERVER(name, ...)                                           \
  Serve name(__VA_ARGS__);                                                \
  ASSERT_GT(name.port(), 0) << name.logs();                               \
  ASSERT_TRUE(name.wait_ready()) << name.logs()

const std::vector<std::string> kFast = {"--beam-size", "1", "--no-fallback"};

httplib::MultipartFormDataItems form(const std::string& file, std::vector<std::pair<std::string, std::string>> fields) {
  httplib::MultipartFormDataItems items;
  if (!file.empty()) items.push_back({"file", read_file(file), std::filesystem::path(file).filename().string(), ""});
  for (auto& [k, v] : fields) items.push_back({k, v, "", ""});
  return items;
}

httplib::Result transcribe(const Serve& s, const std::string& file,
                           std::vector<std::pair<std::string, std::string>> fields = {},
                           const std::string& endpoint = "/v1/audio/transcriptions", httplib::Headers headers = {}) {
  auto c = s.client();
  return c.Post(endpoint.c_str(), headers, form(file, std::move(fields)));
}

// The error object of an OpenAI error response (and that it has the shape).
Json error_of(const httplib::Result& r) {
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  Json j = Json::parse(r->body, nullptr, false);
  EXPECT_TRUE(j.is_object() && j.contains("error")) << r->body;
  if (!j.is_object() || !j.contains("error")) return Json::object();
  for (const char* k : {"message", "type", "param", "code"}) EXPECT_TRUE(j["error"].contains(k)) << k << ": " << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  return j["error"];
}

double metric(const Serve& s, const std::string& name) {
  auto c = s.client(10);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) {
    ADD_FAILURE() << "GET /metrics: " << (r ? std::to_string(r->status) : httplib::to_string(r.error()));
    return -1;
  }
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return 0;
}

bool wait_for(const std::function<bool()>& cond, int timeout_s = 60) {
  for (auto t0 = Clock::now(); Clock::now() - t0 < std::chrono::seconds(timeout_s);) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string without_timing(const std::string& verbose_json) {
  Json j = Json::parse(verbose_json, nullptr, false);
  if (!j.is_object()) return "not json: " + verbose_json;
  j.erase("amanuensis");
  return j.dump();
}

// --- The parsers, no sockets ----------------------------------------------

const char* kBody =
    "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
    "Content-Type: audio/wav\r\n\r\nRIFF\r\n--XyA\r\n-XyZ\r\n\r\n--XyZ\r\n"
    "Content-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
    "--XyZ\r\ncontent-disposition: form-data; name=\"timestamp_granularities[]\"\r\n\r\nword\r\n"
    "--XyZ\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nverbose_json\r\n--XyZ--\r\nepilogue";

TEST(ServerParse, MultipartWholeAndEveryPieceSize) {
  const std::string ct = "multipart/form-data; boundary=XyZ";
  for (size_t piece : {0, 1, 2, 3, 5, 7, 13, 64}) {
    SCOPED_TRACE(piece);
    ParsedForm f = parse_multipart(ct, kBody, piece);
    ASSERT_TRUE(f.ok) << f.error;
    ASSERT_EQ(f.parts.size(), 4u);
    EXPECT_EQ(f.parts[0].header.name, "file");
    EXPECT_EQ(f.parts[0].header.filename.value_or("?"), "a.wav");
    EXPECT_EQ(f.parts[0].header.content_type, "audio/wav");
    EXPECT_EQ(f.parts[0].content, "RIFF\r\n--XyA\r\n-XyZ\r\n");
    EXPECT_EQ(f.parts[1].content, "whisper-1");
    EXPECT_FALSE(f.parts[1].header.filename);
    EXPECT_EQ(f.parts[2].header.name, "timestamp_granularities[]");
  }
}

TEST(ServerParse, MultipartErrorsAndBoundaries) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=abc").value_or(""), "abc");
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data;boundary=\"a b;c\"").value_or(""), "a b;c");
  EXPECT_FALSE(multipart_boundary("application/json"));
  EXPECT_FALSE(multipart_boundary("multipart/form-data"));
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=\"unterminated"));
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')));
  const std::string ct = "multipart/form-data; boundary=b";
  EXPECT_FALSE(parse_multipart(ct, "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nvalue").ok);  // no end
  EXPECT_FALSE(parse_multipart(ct, "--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--").ok);  // no name
  EXPECT_FALSE(parse_multipart(ct, "--b\r\nContent-Disposition: attachment; name=x\r\n\r\nv\r\n--b--").ok);
  EXPECT_FALSE(parse_multipart(ct, "--b\r\nX: " + std::string(20000, 'h') + "\r\n\r\nv\r\n--b--").ok);
  EXPECT_FALSE(parse_multipart(ct, "--bjunk\r\n").ok);
  EXPECT_FALSE(parse_multipart(ct, "").ok);
  ParsedForm empty = parse_multipart(ct, "--b--");
  EXPECT_TRUE(empty.ok);
  EXPECT_TRUE(empty.parts.empty());
}

TEST(ServerParse, Parameters) {
  auto parse = [](FormFields f, bool file = true, Endpoint ep = Endpoint::transcriptions) {
    return parse_audio_request(ep, f, file);
  };
  ParseResult ok = parse({{"model", "whisper-1"}, {"language", "en"}, {"prompt", " Hi "}, {"response_format", "VTT"},
                          {"temperature", "0.3"}, {"stream", "true"}});
  ASSERT_TRUE(ok.request) << ok.error.message;
  EXPECT_EQ(ok.request->model, "whisper-1");
  EXPECT_EQ(ok.request->prompt, " Hi ");
  EXPECT_EQ(ok.request->response_format, "vtt");
  EXPECT_TRUE(ok.request->stream);
  EXPECT_EQ(temperature_schedule(0.3f).size(), 4u);  // 0.3 0.5 0.7 0.9
  EXPECT_EQ(temperature_schedule(0).size(), 6u);
  EXPECT_EQ(request_decoding(*ok.request, {}, false).temperatures, std::vector<float>{0.3f});

  ParseResult words = parse({{"response_format", "verbose_json"}, {"timestamp_granularities[]", "word"},
                             {"timestamp_granularities[]", "segment"}});
  ASSERT_TRUE(words.request);
  EXPECT_TRUE(words.request->word_timestamps && words.request->segment_timestamps);

  struct Bad {
    FormFields f;
    std::string param;
  };
  const std::vector<Bad> bad = {
      {{{"foo", "1"}}, "foo"},
      {{{"temperature", "hot"}}, "temperature"},
      {{{"temperature", "1.5"}}, "temperature"},
      {{{"temperature", "nan"}}, "temperature"},
      {{{"temperature", ""}}, "temperature"},
      {{{"response_format", "xml"}}, "response_format"},
      {{{"timestamp_granularities[]", "word"}}, "timestamp_granularities"},  // needs verbose_json
      {{{"response_format", "verbose_json"}, {"timestamp_granularities[]", "char"}}, "timestamp_granularities"},
      {{{"stream", "maybe"}}, "stream"},
      {{{"model", "a"}, {"model", "b"}}, "model"},
  };
  for (const Bad& b : bad) {
    ParseResult r = parse(b.f);
    EXPECT_FALSE(r.request) << b.param;
    EXPECT_EQ(r.error.status, 400);
    EXPECT_EQ(r.error.param, b.param) << r.error.message;
  }
  EXPECT_EQ(parse({}, false).error.param, "file");
  EXPECT_EQ(parse({{"language", "en"}}, true, Endpoint::translations).error.param, "language");  // not on translations

  EXPECT_EQ(bearer_token("Bearer abc").value_or(""), "abc");
  EXPECT_EQ(bearer_token("bearer   abc ").value_or(""), "abc");
  EXPECT_FALSE(bearer_token("Basic abc"));
  EXPECT_FALSE(bearer_token("Bearer "));
  EXPECT_TRUE(constant_time_equal("key", "key"));
  EXPECT_FALSE(constant_time_equal("key", "kex"));
  EXPECT_FALSE(constant_time_equal("ke", "key"));
  EXPECT_FALSE(constant_time_equal("", "key"));
  const Json e = Json::parse(error_json(bad_request("bad \xff value", "x")));
  EXPECT_EQ(e["error"]["param"], "x");
  EXPECT_TRUE(e["error"]["code"].is_null());
}

// Mutated multipart bodies: whole and streamed in pieces agree, nothing
// crashes, and whatever parses goes through the parameter checks.
TEST(ServerParse, MutatedInputs) {
  std::mt19937 rng(1234);
  const std::string ct = "multipart/form-data; boundary=XyZ";
  int parsed = 0;
  for (int i = 0; i < 600; ++i) {
    std::string body = kBody;
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 5) {
        case 0: body[at] = static_cast<char>(rng()); break;
        case 1: body.erase(at, 1 + rng() % 8); break;
        case 2: body.insert(at, std::string(1 + rng() % 4, "\r\n-X\""[rng() % 5])); break;
        case 3: body.insert(at, body.substr(rng() % body.size(), rng() % 40)); break;
        case 4: body.resize(at); break;
      }
    }
    const size_t piece = 1 + rng() % 17;
    ParsedForm whole = parse_multipart(ct, body), pieces = parse_multipart(ct, body, piece);
    ASSERT_EQ(whole.ok, pieces.ok) << i;
    if (!whole.ok) continue;
    ++parsed;
    ASSERT_EQ(whole.parts.size(), pieces.parts.size());
    FormFields fields;
    bool file = false;
    for (size_t p = 0; p < whole.parts.size(); ++p) {
      ASSERT_EQ(whole.parts[p].content, pieces.parts[p].content);
      if (whole.parts[p].header.name == "file") file = true;
      else fields.emplace_back(whole.parts[p].header.name, whole.parts[p].content);
    }
    ParseResult r = parse_audio_request(Endpoint::transcriptions, fields, file);
    if (!r.request) {
      EXPECT_FALSE(Json::parse(error_json(r.error), nullptr, false).is_discarded());
    }
  }
  EXPECT_GT(parsed, 20);  // the mutations do not only produce garbage
}

// --- Over HTTP ----------------------------------------------------------------

TEST(Server, HealthModelsMetricsAndWebPage) {
  START_SERVER(s, kFast);
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(Json::parse(h->body)["status"], "ready");
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  Json models = Json::parse(m->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "model");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(c.Get("/v1/models/model")->status, 200);
  EXPECT_EQ(c.Get("/v1/models/gpt-9")->status, 404);
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type").rfind("text/html", 0), 0u);
  EXPECT_NE(page->body.find("<html"), std::string::npos);
  auto r = transcribe(s, test::shared("audio/jfk.wav"), {{"language", "en"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  for (const char* name : {"amanuensis_queue_depth", "amanuensis_batch_occupancy", "amanuensis_realtime_factor_bucket",
                           "amanuensis_audio_seconds_total", "amanuensis_http_errors_total"})
    EXPECT_NE(metrics->body.find(name), std::string::npos) << name;
  EXPECT_NE(metrics->body.find("amanuensis_http_requests_total{endpoint=\"/v1/audio/transcriptions\",status=\"200\"} 1"),
            std::string::npos)
      << metrics->body;
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_audio_seconds_total"), 11.0);
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_realtime_factor_count"), 1.0);
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_queue_depth"), 0.0);
}

// Every response format, its headers, and the same transcript as the CLI.
TEST(Server, EachResponseFormat) {
  START_SERVER(s, kFast);
  const std::string jfk = test::shared("audio/jfk.wav");
  const std::string out = ::testing::TempDir() + "/serve_cli_" + std::to_string(getpid());
  auto cli = test::run_command(std::string(AMA_CLI_PATH) + " transcribe -q -m " + model_path() + " " + jfk +
                               " -l en --beam-size 1 --temperature-increment-on-fallback none -f srt,vtt,verbose_json -o " +
                               out);
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  std::map<std::string, std::string> bodies;
  for (const std::string f : {"json", "text", "srt", "vtt", "verbose_json"}) {
    SCOPED_TRACE(f);
    auto r = transcribe(s, jfk, {{"language", "en"}, {"response_format", f}, {"model", "whisper-1"}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    bodies[f] = r->body;
    EXPECT_EQ(r->get_header_value("X-Model"), "whisper-1");
    EXPECT_GT(std::stod(r->get_header_value("X-Processing-Time")), 0.0);
    EXPECT_NEAR(std::stod(r->get_header_value("X-Realtime-Factor")),
                std::stod(r->get_header_value("X-Processing-Time")) / 11.0, 0.01);
    EXPECT_NE(r->get_header_value("X-Stage-Times").find("encode="), std::string::npos);
    EXPECT_EQ(r->get_header_value("X-Audio-Duration"), "11.000");
  }
  const Json json = Json::parse(bodies["json"]);
  const Json verbose = Json::parse(bodies["verbose_json"]);
  EXPECT_EQ(json["text"], verbose["text"]);
  EXPECT_EQ(bodies["text"], verbose["text"].get<std::string>() + "\n");
  EXPECT_EQ(bodies["srt"], read_file(out + ".srt"));
  EXPECT_EQ(bodies["vtt"], read_file(out + ".vtt"));
  Json cli_verbose = Json::parse(read_file(out + ".verbose.json"));
  EXPECT_EQ(verbose["segments"], cli_verbose["segments"]);
  EXPECT_FALSE(verbose.contains("words"));
  EXPECT_EQ(verbose["amanuensis"]["model"], "whisper-1");
  EXPECT_GT(verbose["amanuensis"]["processing_time"].get<double>(), 0.0);
  EXPECT_TRUE(verbose["amanuensis"]["stage_times"].contains("decode"));

  auto words = transcribe(s, jfk, {{"language", "en"}, {"response_format", "verbose_json"},
                                   {"timestamp_granularities[]", "word"}});
  ASSERT_EQ(words->status, 200) << words->body;
  Json w = Json::parse(words->body);
  EXPECT_TRUE(w.contains("words"));
  EXPECT_FALSE(w.contains("segments"));  // OpenAI: only what was asked for
  auto tr = transcribe(s, jfk, {{"response_format", "verbose_json"}}, "/v1/audio/translations");
  ASSERT_EQ(tr->status, 200) << tr->body;
  EXPECT_EQ(Json::parse(tr->body)["task"], "translate");
}

TEST(Server, ErrorStatuses) {
  START_SERVER(s, std::vector<std::string>{"--beam-size", "1", "--no-fallback", "--max-upload-mb", "1"});
  const std::string jfk = test::shared("audio/jfk.wav");
  const std::string text = ::testing::TempDir() + "/not_audio_" + std::to_string(getpid()) + ".wav";
  std::ofstream(text) << "this is not audio";
  struct Case {
    std::string file;
    std::vector<std::pair<std::string, std::string>> fields;
    std::string endpoint;
    int status;
    std::string param;
  };
  const std::string tr = "/v1/audio/transcriptions";
  const std::vector<Case> cases = {
      {text, {}, tr, 400, "file"},
      {jfk, {{"foo", "bar"}}, tr, 400, "foo"},
      {jfk, {{"temperature", "warm"}}, tr, 400, "temperature"},
      {jfk, {{"temperature", "2"}}, tr, 400, "temperature"},
      {jfk, {{"response_format", "xml"}}, tr, 400, "response_format"},
      {jfk, {{"language", "klingon"}}, tr, 400, "language"},
      {jfk, {{"timestamp_granularities[]", "word"}}, tr, 400, "timestamp_granularities"},
      {"", {{"model", "whisper-1"}}, tr, 400, "file"},
      {jfk, {{"language", "en"}}, "/v1/audio/translations", 400, "language"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.endpoint + " " + (c.fields.empty() ? "" : c.fields[0].first + "=" + c.fields[0].second));
    auto r = transcribe(s, c.file, c.fields, c.endpoint);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, c.status) << r->body;
    EXPECT_EQ(error_of(r)["param"], c.param);
    EXPECT_FALSE(r->get_header_value("X-Processing-Time").empty());
  }
  // Bad audio: the message names the client's file, not the server's temporary one.
  const std::string bad_audio = error_of(transcribe(s, text))["message"];
  EXPECT_NE(bad_audio.find(std::filesystem::path(text).filename().string()), std::string::npos) << bad_audio;
  EXPECT_EQ(bad_audio.find("amanuensis-upload"), std::string::npos) << bad_audio;
  auto c = s.client();
  auto json_body = c.Post("/v1/audio/transcriptions", "{\"file\": 1}", "application/json");
  EXPECT_EQ(json_body->status, 400);
  error_of(json_body);
  auto malformed = c.Post("/v1/audio/transcriptions", "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx",
                          "multipart/form-data; boundary=b");
  EXPECT_EQ(malformed->status, 400);
  EXPECT_NE(error_of(malformed)["message"].get<std::string>().find("multipart"), std::string::npos);
  // 404 and 405, in OpenAI's shape.
  auto missing = c.Get("/v1/nothing");
  EXPECT_EQ(missing->status, 404);
  error_of(missing);
  EXPECT_EQ(c.Post("/v1/audio/speech", "x", "text/plain")->status, 404);
  auto get = c.Get("/v1/audio/transcriptions");
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(get->get_header_value("Allow"), "POST");
  error_of(get);
  EXPECT_EQ(c.Post("/health", "x", "text/plain")->status, 405);
  EXPECT_EQ(c.Delete("/v1/models")->status, 405);
  // 413: a file over --max-upload-mb (1 MiB), and a body far over it (refused unread).
  std::string big(1536 * 1024, 'x');
  auto over = c.Post("/v1/audio/transcriptions", httplib::MultipartFormDataItems{{"file", big, "big.wav", ""}});
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 413);
  error_of(over);
  auto huge = c.Post("/v1/audio/transcriptions",
                     httplib::MultipartFormDataItems{{"file", std::string(5 << 20, 'x'), "huge.wav", ""}});
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 413);
  // The server still works, and counted the errors.
  EXPECT_EQ(transcribe(s, jfk, {{"language", "en"}})->status, 200);
  EXPECT_NE(c.Get("/metrics")->body.find("amanuensis_http_errors_total{endpoint=\"/v1/audio/transcriptions\",status=\"413\"} 2"),
            std::string::npos);
}

TEST(Server, ApiKeyFromFlagAndEnvironment) {
  for (int from_env = 0; from_env < 2; ++from_env) {
    SCOPED_TRACE(from_env ? "AMANUENSIS_API_KEY" : "--api-key");
    std::vector<std::string> args = kFast, env;
    if (from_env) env.push_back("AMANUENSIS_API_KEY=s3cret");
    else args.insert(args.end(), {"--api-key", "s3cret"});
    START_SERVER(s, args, env);
    auto c = s.client();
    EXPECT_EQ(c.Get("/health")->status, 200);  // open: probes need no key
    auto none = c.Get("/v1/models");
    EXPECT_EQ(none->status, 401);
    error_of(none);
    EXPECT_EQ(c.Get("/v1/models", {{"Authorization", "Bearer wrong"}})->status, 401);
    EXPECT_EQ(c.Get("/v1/models", {{"Authorization", "Bearer s3cret"}})->status, 200);
    const std::string jfk = test::shared("audio/jfk.wav");
    auto denied = transcribe(s, jfk, {{"language", "en"}});
    EXPECT_EQ(denied->status, 401);
    EXPECT_EQ(error_of(denied)["code"], nullptr);
    auto wrong = transcribe(s, jfk, {}, "/v1/audio/transcriptions", {{"Authorization", "Bearer nope"}});
    EXPECT_EQ(error_of(wrong)["code"], "invalid_api_key");
    EXPECT_EQ(transcribe(s, jfk, {{"language", "en"}}, "/v1/audio/transcriptions", {{"Authorization", "Bearer s3cret"}})
                  ->status,
              200);
  }
}

std::vector<Json> sse_events(const std::string& body) {
  std::vector<Json> events;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("data: ", 0) == 0) events.push_back(Json::parse(line.substr(6)));
  return events;
}

TEST(Server, StreamSendsSegmentsThenDone) {
  START_SERVER(s, kFast);
  const std::string file = test::shared("audio/silero-test.wav");  // 60 s: several segments
  auto plain = transcribe(s, file, {{"language", "en"}, {"response_format", "verbose_json"}});
  ASSERT_EQ(plain->status, 200);
  const Json verbose = Json::parse(plain->body);
  auto r = transcribe(s, file, {{"language", "en"}, {"stream", "true"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  std::vector<Json> events = sse_events(r->body);
  ASSERT_GE(events.size(), 2u) << r->body;
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i]["type"], "transcript.text.delta");
    EXPECT_EQ(events[i]["id"], i);
    EXPECT_EQ(events[i]["start"], verbose["segments"][i]["start"]);
    text += events[i]["delta"].get<std::string>();
  }
  EXPECT_EQ(events.size() - 1, verbose["segments"].size());
  const Json& done = events.back();
  EXPECT_EQ(done["type"], "transcript.text.done");
  EXPECT_EQ(done["text"], verbose["text"]);
  while (!text.empty() && text.front() == ' ') text.erase(0, 1);
  EXPECT_EQ(text, done["text"].get<std::string>());
  EXPECT_TRUE(done["amanuensis"].contains("realtime_factor"));
}

// A request in flight: started on its own thread with a long file.
std::future<httplib::Result> long_request(const Serve& s, const std::string& file,
                                          std::vector<std::pair<std::string, std::string>> fields = {{"language", "en"}}) {
  return std::async(std::launch::async, [&s, file, fields] { return transcribe(s, file, fields); });
}

TEST(Server, FullQueueAnswers429AtOnce) {
  START_SERVER(s, std::vector<std::string>{"--beam-size", "1", "--no-fallback", "--max-queue", "1"});
  auto first = long_request(s, test::shared("audio/aepyx-8k.wav"));
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_queue_depth") == 1; }));
  const auto t0 = Clock::now();
  auto second = transcribe(s, test::shared("audio/jfk.wav"), {{"language", "en"}});
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 429);
  EXPECT_EQ(error_of(second)["code"], "rate_limit_exceeded");
  EXPECT_LT(waited, 2.0);
  auto r = first.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(transcribe(s, test::shared("audio/jfk.wav"), {{"language", "en"}})->status, 200);
}

// The listening socket of process `pid` on `port`, duplicated into this
// process by pidfd_getfd (allowed: the server is our child), or -1.
int dup_listening_socket(pid_t pid, int port) {
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return -1;
  int found = -1;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    const int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, std::atoi(e.path().filename().c_str()), 0));
    if (fd < 0) continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    sockaddr_in a{};
    socklen_t alen = sizeof a;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &alen) == 0 && ntohs(a.sin_port) == port) {
      found = fd;
      break;
    }
    close(fd);
  }
  close(pidfd);
  return found;
}

// cpp-httplib 0.11 gives up listening on an accept() error; the server
// must then exit with the reason, not sit ready on a port nobody serves.
// shutdown() of the listening socket, through a duplicate of it, makes the
// server's accept() fail with EINVAL.
TEST(Server, LosingTheListeningSocketIsAnErrorNotAHang) {
  START_SERVER(s, kFast);
  const int fd = dup_listening_socket(s.pid(), s.port());
  ASSERT_GE(fd, 0) << "no listening socket on port " << s.port() << " in process " << s.pid() << ": "
                   << std::strerror(errno);
  ASSERT_EQ(shutdown(fd, SHUT_RDWR), 0) << std::strerror(errno);
  close(fd);
  bool exited = false;
  for (auto t0 = Clock::now(); !exited && Clock::now() - t0 < std::chrono::seconds(30);) {
    exited = s.exited();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(exited) << s.logs();
  EXPECT_EQ(s.stop(), 1) << s.logs();
  EXPECT_NE(s.err().find("error: accepting connections failed"), std::string::npos) << s.logs();
}

TEST(Server, SigtermFinishesTheRequestInFlightThenExits0) {
  START_SERVER(s, kFast);
  auto inflight = long_request(s, test::shared("audio/aepyx-8k.wav"));
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_decoding_jobs") == 1; }));
  kill(s.pid(), SIGTERM);
  auto r = inflight.get();
  ASSERT_TRUE(r) << s.logs();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_FALSE(Json::parse(r->body)["text"].get<std::string>().empty());
  EXPECT_EQ(s.stop(SIGTERM, 60), 0) << s.logs();
  EXPECT_NE(s.err().find("SIGTERM"), std::string::npos);
  // Nobody listens any more.
  auto c = s.client(2);
  EXPECT_FALSE(c.Get("/health"));
}

// aepyx-8k.wav four times over (11 minutes): decoding it takes far longer
// than a cancelled job takes to stop, with or without the sanitizers.
std::string long_file() {
  const std::string out = ::testing::TempDir() + "/serve_long_" + std::to_string(getpid()) + ".wav";
  const std::string in = test::shared("audio/aepyx-8k.wav");
  auto r = test::run_command("ffmpeg -nostdin -v error -y -i " + in + " -i " + in + " -i " + in + " -i " + in +
                             " -filter_complex concat=n=4:v=0:a=1 " + out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

// Sends a whole transcription request for `file` on a raw socket, without
// reading the answer; returns the socket.
int send_raw_request(int port, const std::string& file, const std::string& extra_field = "") {
  const std::string audio = read_file(file);
  std::string body = "--bnd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + audio +
                     "\r\n--bnd\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n";
  if (!extra_field.empty())
    body += "--bnd\r\nContent-Disposition: form-data; name=\"" + extra_field + "\"\r\n\r\ntrue\r\n";
  body += "--bnd--\r\n";
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string head = "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                           "boundary=bnd\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  const std::string all = head + body;
  for (size_t off = 0; off < all.size();) {
    const ssize_t n = send(fd, all.data() + off, all.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ADD_FAILURE() << "send failed";
      break;
    }
    off += static_cast<size_t>(n);
  }
  return fd;
}

// A client that goes away cancels its job: the decoding stops long before
// the file would have been done, and /metrics and the log say so.
TEST(Server, ClientDisconnectCancelsItsJob) {
  START_SERVER(s, kFast);
  const std::string file = long_file();
  const int fd = send_raw_request(s.port(), file);
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_decoding_jobs") == 1; }));
  const double steps_before = metric(s, "amanuensis_decoder_steps_total");
  close(fd);
  const auto t0 = Clock::now();
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_cancelled_total{reason=\"disconnect\"}") == 1; }, 10))
      << s.logs();
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_queue_depth") == 0; }, 10)) << s.logs();
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_decoding_jobs"), 0.0);
  // Decoding the whole file takes ~20 s in Release (minutes under the sanitizers).
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0);
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_transcriptions_total"), 0.0);  // never completed
  EXPECT_GE(metric(s, "amanuensis_decoder_steps_total"), steps_before);
  EXPECT_NE(s.err().find("client disconnected"), std::string::npos) << s.logs();
  EXPECT_EQ(transcribe(s, test::shared("audio/jfk.wav"), {{"language", "en"}})->status, 200);

  // The same with stream=true, the client leaving after the first bytes of the answer.
  const int sfd = send_raw_request(s.port(), file, "stream");
  char buf[64];
  ASSERT_GT(recv(sfd, buf, sizeof buf, 0), 0);  // the 200's headers: the stream has begun
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_decoding_jobs") == 1; }));
  close(sfd);
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_cancelled_total{reason=\"disconnect\"}") == 2; }, 10))
      << s.logs();
  ASSERT_TRUE(wait_for([&] { return metric(s, "amanuensis_queue_depth") == 0; }, 10)) << s.logs();
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_transcriptions_total"), 1.0);
}

TEST(Server, RequestTimeoutCancelsWith504) {
  START_SERVER(s, std::vector<std::string>{"--beam-size", "1", "--no-fallback", "--request-timeout", "1"});
  // 11 minutes: aepyx-8k.wav alone (170 s) was once answered within the
  // second on a Zen 4, run after the other server tests.
  auto r = transcribe(s, long_file(), {{"language", "en"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 504) << r->body;
  EXPECT_EQ(error_of(r)["code"], "request_timeout");
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_cancelled_total{reason=\"timeout\"}"), 1.0);
  EXPECT_TRUE(wait_for([&] { return metric(s, "amanuensis_queue_depth") == 0; }, 10));
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_decoding_jobs"), 0.0);
  EXPECT_EQ(s.client().Get("/v1/models")->status, 200);
}

// Test inputs: the shared audio plus slices and re-encodings made with ffmpeg.
std::vector<std::string> make_inputs(int n, bool long_file) {
  std::vector<std::string> files = {test::shared("audio/jfk.wav"), test::shared("audio/silero-test.mp3"),
                                    test::shared("audio/silero-test.opus")};
  if (long_file) files.push_back(test::shared("audio/silero-test.wav"));
  const std::string dir = ::testing::TempDir() + "/serve_inputs_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const char* exts[] = {"wav", "flac", "mp3", "ogg"};
  for (int i = 0; static_cast<int>(files.size()) < n; ++i) {
    const bool from_jfk = i % 3 == 0;
    const std::string src = test::shared(from_jfk ? "audio/jfk.wav" : "audio/silero-test.wav");
    const std::string out = dir + "/slice" + std::to_string(i) + "." + exts[i % 4];
    const double start = from_jfk ? 0.5 * (i % 6) : 2.7 * i, len = from_jfk ? 6 + i % 4 : 8 + (i % 5) * 3;
    auto r = test::run_command("ffmpeg -nostdin -v error -y -ss " + std::to_string(start) + " -t " +
                               std::to_string(len) + " -i " + src + " -ar 16000 -ac 1 " + out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    files.push_back(out);
  }
  return files;
}

// Many clients at once: every one answered, and each transcript is byte for
// byte the one the same file gets alone (the scheduler batches windows of all
// requests together).
void concurrency_case(const std::vector<std::string>& args, int n, bool long_file,
                      const std::vector<std::pair<std::string, std::string>>& fields) {
  START_SERVER(s, args);
  const std::vector<std::string> files = make_inputs(n, long_file);
  std::vector<std::string> alone;
  for (const auto& f : files) {
    auto r = transcribe(s, f, fields);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << f << ": " << r->body;
    alone.push_back(without_timing(r->body));
  }
  std::vector<std::future<httplib::Result>> futures;
  for (const auto& f : files)
    futures.push_back(std::async(std::launch::async, [&s, f, fields] { return transcribe(s, f, fields); }));
  bool batched = false;
  auto all_done = [&] {
    for (auto& f : futures)
      if (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return false;
    return true;
  };
  while (!batched && !all_done()) {
    batched = metric(s, "amanuensis_batch_windows") > 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (size_t i = 0; i < files.size(); ++i) {
    auto r = futures[i].get();
    ASSERT_TRUE(r) << files[i] << ": " << httplib::to_string(r.error());
    ASSERT_EQ(r->status, 200) << files[i] << ": " << r->body;
    EXPECT_EQ(without_timing(r->body), alone[i]) << files[i];
  }
  EXPECT_TRUE(batched) << "never saw more than one window in a decoder step";
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_transcriptions_total"), 2.0 * n);
  EXPECT_DOUBLE_EQ(metric(s, "amanuensis_queue_depth"), 0.0);
}

TEST(Server, TwentyParallelClientsGetTheirOwnTranscripts) {
  concurrency_case({"--beam-size", "1", "--no-fallback", "--max-queue", "32"}, 20, true,
                   {{"language", "en"}, {"response_format", "verbose_json"}});
}

TEST(Server, ParallelClientsWithDefaultDecoding) {
  // Beam search 5 and the temperature fallback (sampling with best_of 5, seeded per window).
  concurrency_case({}, 4, false, {{"response_format", "verbose_json"}});
}

}  // namespace

namespace {

// The server listens before the model is loaded: /health says loading (503)
// and so do the audio endpoints, until it is ready.
TEST(ServerCli, LoadingState) {
  Serve s(kFast, {"AMANUENSIS_SERVE_LOAD_DELAY_MS=2000"});
  ASSERT_GT(s.port(), 0) << s.logs();
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503);
  EXPECT_EQ(Json::parse(h->body)["status"], "loading");
  auto r = transcribe(s, test::shared("audio/jfk.wav"), {{"language", "en"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(error_of(r)["code"], "model_loading");
  EXPECT_EQ(c.Get("/metrics")->status, 200);
  ASSERT_TRUE(s.wait_ready()) << s.logs();
  EXPECT_EQ(transcribe(s, test::shared("audio/jfk.wav"), {{"language", "en"}})->status, 200);
}

TEST(ServerCli, RefusesAMissingModelAndWarnsOnAnOpenAddressWithoutKey) {
  auto missing = test::run_command(std::string(AMA_CLI_PATH) + " serve -m /nonexistent/model.bin --port 0");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("/nonexistent/model.bin"), std::string::npos) << missing.err;
  auto open = test::run_command("timeout -s TERM 3 " + std::string(AMA_CLI_PATH) + " serve -m " + model_path() +
                                " --host 0.0.0.0 --port 0");
  EXPECT_NE(open.out.find("listening on http://0.0.0.0:"), std::string::npos) << open.out;
  EXPECT_NE(open.err.find("warning: listening on 0.0.0.0 without an API key"), std::string::npos) << open.err;
  EXPECT_NE(open.err.find("stopped"), std::string::npos) << open.err;  // SIGTERM: a clean exit
  auto keyed = test::run_command("AMANUENSIS_API_KEY=k timeout -s TERM 3 " + std::string(AMA_CLI_PATH) + " serve -m " +
                                 model_path() + " --host 0.0.0.0 --port 0");
  EXPECT_EQ(keyed.err.find("warning"), std::string::npos) << keyed.err;
  auto bad = test::run_command(std::string(AMA_CLI_PATH) + " serve -m " + model_path() + " --max-queue 0");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--max-queue"), std::string::npos) << bad.err;
}

}  // namespace
