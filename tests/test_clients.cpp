// Real clients against `amanuensis serve`: OpenAI's official Node SDK
// (tests/clients/openai_sdk.test.mjs) and the web page in headless Chromium
// (tests/clients/web_page.test.mjs). Each case starts the server on a free
// port with the micro test model, runs one node test file against it, and
// stops the server with SIGTERM. Node, npm and Chromium are required: a
// machine without them fails here with what to install (scripts/install-deps.sh).
// The node packages come from tests/clients/package-lock.json (`npm ci` on
// first use). Screenshots and downloads: <build dir>/client-artifacts/.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "test_util.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using ama::test::run_command;
using ama::test::shared;

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The source tree's tests/clients: $AMA_CLIENTS_DIR, else from the build
// directory's CMakeCache.txt (the binary sits in the build directory), else
// from this file's path.
fs::path clients_dir() {
  if (const char* d = std::getenv("AMA_CLIENTS_DIR"); d && *d) return d;
  const fs::path cache = fs::path(AMA_CLI_PATH).parent_path() / "CMakeCache.txt";
  std::istringstream lines(read_all(cache));
  for (std::string line; std::getline(lines, line);)
    for (const char* key : {"amanuensis_SOURCE_DIR:STATIC=", "CMAKE_HOME_DIRECTORY:INTERNAL="})
      if (line.rfind(key, 0) == 0) return fs::path(line.substr(std::string(key).size())) / "tests" / "clients";
  return fs::path(__FILE__).parent_path() / "clients";
}

// Node, npm and the packages of package-lock.json. Empty: ready; else what is wrong.
std::string ensure_node_modules(const fs::path& dir) {
  if (!fs::exists(dir / "package-lock.json")) return "no " + (dir / "package-lock.json").string();
  if (run_command("command -v node >/dev/null").exit_code != 0)
    return "node is not installed: the client tests need Node.js >= 18 and npm (scripts/install-deps.sh)";
  if (run_command("command -v npm >/dev/null").exit_code != 0)
    return "npm is not installed: the client tests need it for tests/clients (scripts/install-deps.sh)";
  // `npm ci` once, under a lock: ctest may run both cases at the same time.
  const std::string d = quoted(dir.string());
  const auto r = run_command("cd " + d + " && flock /tmp/amanuensis-npm-ci.lock sh -c '" +
                             "test -f node_modules/openai/package.json && test -f node_modules/puppeteer-core/package.json || " +
                             "npm ci --no-audit --no-fund' 2>&1");
  if (r.exit_code != 0) return "npm ci in " + dir.string() + " failed:\n" + r.out + r.err;
  return {};
}

// `amanuensis serve --api-key KEY` on a free port, stopped by SIGTERM.
class Server {
 public:
  Server(const std::string& model, const std::string& api_key, const fs::path& log_dir) {
    fs::create_directories(log_dir);
    out_ = log_dir / ("serve_" + std::to_string(getpid()) + ".out");
    err_ = log_dir / ("serve_" + std::to_string(getpid()) + ".err");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // --no-fallback: the random test model's text at temperature 0 is a
    // repetition loop, and with the fallback schedule every request would
    // decode it again at 0.2 ... 1.0, five samples each (5.6 s a request
    // instead of 0.8; the Node SDK's 17 tests took 94 s). These tests check
    // the API's shapes; the fallback through the server is the server
    // tests' (tests/test_server.cpp).
    std::vector<std::string> args = {AMA_CLI_PATH, "serve", "-m", model, "--port", "0", "--api-key", api_key,
                                     "--no-fallback"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, AMA_CLI_PATH, &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    if (pid_ <= 0) {
      problem_ = "could not start " + std::string(AMA_CLI_PATH);
      return;
    }
    // "amanuensis: listening on http://127.0.0.1:PORT" on standard output.
    const std::regex listening(R"(listening on (http://127\.0\.0\.1:(\d+)))");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      const std::string out = read_all(out_);
      if (std::regex_search(out, m, listening)) {
        url_ = m[1];
        return;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        problem_ = "the server exited before listening (status " + std::to_string(status) + ")";
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    problem_ = "the server did not print 'listening on http://127.0.0.1:PORT' within 120 s";
  }
  ~Server() { stop(); }

  // SIGTERM, then up to 30 s for a clean exit; SIGKILL after that. Returns
  // how it ended ("" for a clean exit: status 0 or SIGTERM).
  std::string stop() {
    if (pid_ <= 0) return stopped_;
    kill(pid_, SIGTERM);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (waitpid(pid_, &status, WNOHANG) != pid_) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        stopped_ = "the server did not exit within 30 s of SIGTERM";
        pid_ = -1;
        return stopped_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
      stopped_ = "the server exited with status " + std::to_string(WEXITSTATUS(status)) + " after SIGTERM";
    else if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM)
      stopped_ = "the server died of signal " + std::to_string(WTERMSIG(status)) + " after SIGTERM";
    return stopped_;
  }

  const std::string& url() const { return url_; }
  const std::string& problem() const { return problem_; }
  std::string logs() const {
    return "--- server stdout ---\n" + read_all(out_) + "--- server stderr ---\n" + read_all(err_);
  }

 private:
  pid_t pid_ = -1;
  fs::path out_, err_;
  std::string url_, problem_, stopped_;
};

// In the build directory (beside the binary), whatever the working directory.
fs::path artifact_dir() { return fs::path(AMA_CLI_PATH).parent_path() / "client-artifacts"; }

// Starts a server, runs `node --test FILE` in tests/clients against it, stops the server.
// The server requires `api_key` (the client must send it as a bearer token).
void run_node_test(const std::string& file, const std::string& api_key) {
  const fs::path dir = clients_dir();
  const std::string not_ready = ensure_node_modules(dir);
  ASSERT_TRUE(not_ready.empty()) << not_ready;
  const std::string model = shared("oracle/micro/model.bin");
  const std::string audio = shared("audio/jfk.wav");
  ASSERT_TRUE(fs::exists(model)) << "no test model at " << model;
  ASSERT_TRUE(fs::exists(audio)) << "no test audio at " << audio;

  Server server(model, api_key, artifact_dir());
  ASSERT_TRUE(server.problem().empty()) << server.problem() << "\n" << server.logs();
  const std::string cmd = "cd " + quoted(dir.string()) + " && AMA_SERVER_URL=" + quoted(server.url()) +
                          " AMA_API_KEY=" + quoted(api_key) + " AMA_AUDIO=" + quoted(audio) + " AMA_ARTIFACT_DIR=" + quoted(artifact_dir().string()) +
                          " timeout 600 node --test --test-reporter=spec " + quoted(file) + " 2>&1";
  const auto r = run_command(cmd);
  const std::string stopped = server.stop();
  EXPECT_EQ(r.exit_code, 0) << "node --test " << file << " failed (exit " << r.exit_code << ") against "
                            << server.url() << ":\n"
                            << r.out << r.err << "\n"
                            << server.logs();
  EXPECT_TRUE(stopped.empty()) << stopped << "\n" << server.logs();
  // Where the screenshots are, in the ctest log.
  if (r.exit_code == 0)
    for (const char* line : {"screenshot: ", "srt: "})
      if (const size_t at = r.out.find(line); at != std::string::npos)
        std::printf("%s\n", r.out.substr(at, r.out.find('\n', at) - at).c_str());
}

TEST(Clients, OpenAiNodeSdk) { run_node_test("openai_sdk.test.mjs", "test"); }

TEST(Clients, WebPageInHeadlessChromium) {
  const char* env = std::getenv("CHROMIUM");
  const std::string chromium = env && *env ? env : "/usr/bin/chromium";
  ASSERT_TRUE(fs::exists(chromium)) << "no Chromium at " << chromium
                                    << ": the web page test needs Debian's chromium (apt-get install chromium, "
                                       "scripts/install-deps.sh), or CHROMIUM=/path/to/chromium";
  run_node_test("web_page.test.mjs", "test-key-123");
}

}  // namespace
