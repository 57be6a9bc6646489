// Load and deployment tests: bench/loadgen.py against one `amanuensis serve`,
// the scale-out run (bench/scale_out.sh: two replicas behind haproxy with
// deploy/haproxy.cfg, SIGTERM to one of them mid-run: 0 lost, 0 errors, both
// served), and the deployment files (yamllint on deploy/k8s, haproxy -c on
// deploy/haproxy.cfg). A missing haproxy, yamllint or python3 is a failure
// that says what to install, never a skip.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

#ifndef AMA_CLI_PATH
#define AMA_CLI_PATH "amanuensis"
#endif

namespace fs = std::filesystem;
using ama::test::shared;

namespace {

// The source tree: from this file's path (absolute, or relative to the build
// directory when ccache rewrote it), else upwards from the working directory.
fs::path source_root() {
  std::error_code ec;
  fs::path here = fs::path(__FILE__).parent_path().parent_path();
  if (fs::exists(here / "bench" / "loadgen.py", ec)) return fs::absolute(here);
  for (fs::path p = fs::current_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / "bench" / "loadgen.py", ec)) return p;
    if (p == p.parent_path()) break;
  }
  return fs::path(AMA_SHARED_DIR).parent_path() / "main";
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct Shell {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string out;  // stdout and stderr
};

Shell run(const std::string& cmd) {
  Shell r;
  FILE* p = popen(("(" + cmd + ") 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// The absolute path of a tool: PATH, then /usr/sbin and /usr/bin (haproxy lives in /usr/sbin).
std::string find_tool(const std::string& name) {
  Shell r = run("command -v " + name);
  if (r.status == 0 && !r.out.empty()) return r.out.substr(0, r.out.find('\n'));
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/usr/local/bin/", "/usr/local/sbin/"})
    if (access((std::string(dir) + name).c_str(), X_OK) == 0) return std::string(dir) + name;
  return "";
}

#define REQUIRE_TOOL(var, name, package)                                                                     \
  const std::string var = find_tool(name);                                                                   \
  ASSERT_FALSE(var.empty()) << name << " is not installed: apt-get install " << package                      \
                            << " (scripts/install-deps.sh installs it). This test needs it and does not skip."

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

fs::path temp_dir(const std::string& tag) {
  std::string tmpl = (fs::temp_directory_path() / ("ama-" + tag + ".XXXXXX")).string();
  const char* d = mkdtemp(tmpl.data());
  return d ? fs::path(d) : fs::path();
}

// One `amanuensis serve` on a free port, stdout/stderr to a log file.
class Server {
 public:
  Server(const std::vector<std::string>& args, const fs::path& log) : log_(log) {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
      std::vector<char*> argv;
      std::string cli = AMA_CLI_PATH;
      argv.push_back(cli.data());
      std::vector<std::string> copy = args;
      for (auto& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(cli.c_str(), argv.data());
      _exit(127);
    }
  }
  ~Server() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  std::string log() const { return read_file(log_); }

  // Waits for "listening on http://HOST:PORT" in the log; "" on timeout or exit.
  std::string wait_url(double seconds) {
    static const std::regex rx("listening on (http://[0-9.]+:[0-9]+)");
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      std::smatch m;
      std::string l = log();
      if (std::regex_search(l, m, rx)) return m[1];
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        exited_ = true;
        return "";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "";
  }

  // SIGTERM and wait; the exit status, or -1 (signalled, or still running after `seconds`: then killed).
  int terminate(double seconds) {
    if (pid_ <= 0 || exited_) return -1;
    kill(pid_, SIGTERM);
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    int st = 0;
    while (std::chrono::steady_clock::now() < end) {
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

const std::string kMicroModel = shared("oracle/micro/model.bin");
const std::string kJfk = shared("audio/jfk.wav");

}  // namespace

// The load generator itself against one server: ~10 s at 2 clients. Real
// multipart uploads complete, nothing is lost, the report is sane and the
// server's RSS was sampled every second; then SIGTERM exits 0.
TEST(Load, LoadgenAgainstOneServer) {
  REQUIRE_TOOL(python3, "python3", "python3");
  ASSERT_TRUE(fs::exists(kMicroModel)) << kMicroModel;
  const fs::path root = source_root();
  const fs::path dir = temp_dir("loadgen");
  ASSERT_FALSE(dir.empty());
  Server srv({"serve", "-m", kMicroModel, "--host", "127.0.0.1", "--port", "0", "--beam-size", "1", "--best-of", "1", "-t", "1",
              "--max-queue", "16"},
             dir / "server.log");
  const std::string url = srv.wait_url(60);
  ASSERT_FALSE(url.empty()) << "the server did not print 'listening on http://...':\n" << srv.log();

  const fs::path json = dir / "load.json";
  Shell w = run(python3 + " " + quote((root / "bench/loadgen.py").string()) + " wait " + url + " --timeout 60");
  ASSERT_EQ(w.status, 0) << w.out << srv.log();
  Shell r = run(python3 + " " + quote((root / "bench/loadgen.py").string()) + " --url " + url + " --file " + quote(kJfk) +
              " --concurrency 2 --duration 10 --timeout 60 --temperature 1 --response-format verbose_json --server-pid " +
              std::to_string(srv.pid()) + " --json " + quote(json.string()));
  EXPECT_EQ(r.status, 0) << r.out;
  std::printf("%s", r.out.c_str());

  nlohmann::json rep;
  try {
    rep = nlohmann::json::parse(read_file(json));
  } catch (const std::exception& e) {
    FAIL() << "no JSON report: " << e.what() << "\n" << r.out;
  }
  EXPECT_GT(rep["ok"].get<int>(), 0);
  EXPECT_EQ(rep["lost"].get<int>(), 0) << rep["lost_by_kind"].dump();
  EXPECT_EQ(rep["errors"].get<int>(), 0) << rep["errors_by_status"].dump();
  EXPECT_EQ(rep["requests"].get<int>(), rep["ok"].get<int>());
  EXPECT_GT(rep["requests_per_s"].get<double>(), 0);
  EXPECT_NEAR(rep["audio_s_per_s"].get<double>(), rep["requests_per_s"].get<double>() * 11.0,
              rep["requests_per_s"].get<double>() * 0.2);
  const auto& lat = rep["latency_ms"];
  EXPECT_GT(lat["p50"].get<double>(), 0);
  EXPECT_LE(lat["p50"].get<double>(), lat["p95"].get<double>());
  EXPECT_LE(lat["p95"].get<double>(), lat["p99"].get<double>());
  EXPECT_LE(lat["p99"].get<double>(), lat["max"].get<double>());
  EXPECT_GE(rep["wall_s"].get<double>(), 10.0);
  ASSERT_TRUE(rep.contains("rss")) << "no RSS samples";
  EXPECT_GE(rep["rss"]["samples"].get<int>(), 8);
  EXPECT_GT(rep["rss"]["min_mb"].get<double>(), 1.0);
  EXPECT_GE(rep["rss"]["max_mb"].get<double>(), rep["rss"]["min_mb"].get<double>());
  // The server's own count of transcriptions matches what the clients got.
  if (rep.contains("server_metrics_delta") && rep["server_metrics_delta"].contains("transcriptions"))
    EXPECT_EQ(rep["server_metrics_delta"]["transcriptions"].get<double>(), rep["ok"].get<double>());
  else
    ADD_FAILURE() << "no amanuensis_transcriptions_total in /metrics";

  EXPECT_EQ(srv.terminate(30), 0) << "SIGTERM: expected exit 0\n" << srv.log();
  if (!HasFailure()) fs::remove_all(dir);
}

// Two replicas behind haproxy (deploy/haproxy.cfg), ~20 s at 4 clients,
// SIGTERM to one replica half-way: both served, the terminated one exited 0,
// and the clients saw no error and no lost response (haproxy retried the
// requests that met the closing replica on the other one).
TEST(Load, ScaleOutThroughHaproxy) {
  REQUIRE_TOOL(haproxy, "haproxy", "haproxy");
  REQUIRE_TOOL(python3, "python3", "python3");
  REQUIRE_TOOL(curl, "curl", "curl");
  ASSERT_TRUE(fs::exists(kMicroModel)) << kMicroModel;
  const fs::path root = source_root();
  const fs::path dir = temp_dir("scale-out");
  ASSERT_FALSE(dir.empty());
  const fs::path json = dir / "summary.json";
  Shell r = run("bash " + quote((root / "bench/scale_out.sh").string()) + " --bin " + quote(AMA_CLI_PATH) +
              " --haproxy " + quote(haproxy) + " --model " + quote(kMicroModel) + " --file " + quote(kJfk) +
              " --duration 20 --clients 4 --term-after 8 --work " + quote((dir / "work").string()) + " --json " +
              quote(json.string()));
  std::printf("%s", r.out.c_str());
  EXPECT_EQ(r.status, 0) << r.out;
  nlohmann::json s;
  try {
    s = nlohmann::json::parse(read_file(json));
  } catch (const std::exception& e) {
    FAIL() << "no summary: " << e.what() << "\n" << r.out;
  }
  EXPECT_EQ(s["lost"].get<int>(), 0) << s["lost_by_kind"].dump();
  EXPECT_EQ(s["errors"].get<int>(), 0) << s["errors_by_status"].dump();
  EXPECT_GT(s["ok"].get<int>(), 0);
  EXPECT_GT(s["replicas"]["replica1"]["2xx"].get<int>(), 0) << s["replicas"].dump();
  EXPECT_GT(s["replicas"]["replica2"]["2xx"].get<int>(), 0) << s["replicas"].dump();
  EXPECT_EQ(s["replica2_exit"].get<std::string>(), "0") << "the replica that got SIGTERM did not exit 0";
  if (!HasFailure()) fs::remove_all(dir);
}

// deploy/k8s/*.yaml pass yamllint (default rules, 120-column lines) and every
// document is a Kubernetes object; deploy/haproxy.cfg passes `haproxy -c`.
TEST(Load, DeployFilesLint) {
  REQUIRE_TOOL(yamllint, "yamllint", "yamllint");
  REQUIRE_TOOL(haproxy, "haproxy", "haproxy");
  const fs::path root = source_root();
  ASSERT_TRUE(fs::is_directory(root / "deploy/k8s")) << root;
  int manifests = 0;
  for (const auto& e : fs::directory_iterator(root / "deploy/k8s"))
    if (e.path().extension() == ".yaml") {
      ++manifests;
      const std::string text = read_file(e.path());
      EXPECT_NE(text.find("apiVersion:"), std::string::npos) << e.path();
      EXPECT_NE(text.find("kind:"), std::string::npos) << e.path();
    }
  EXPECT_GE(manifests, 3) << "expected the Deployment, Service and HorizontalPodAutoscaler";
  const std::string rules =
      "{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
      "comments: {min-spaces-from-content: 1}}}";
  Shell y = run(yamllint + " -f parsable -s -d " + quote(rules) + " " + quote((root / "deploy/k8s").string()));
  EXPECT_EQ(y.status, 0) << "yamllint:\n" << y.out;

  Shell h = run("AMA_LB_BIND=127.0.0.1:18080 AMA_STATS_BIND=127.0.0.1:18404 AMA_REPLICA_1=127.0.0.1:18081 "
              "AMA_REPLICA_2=127.0.0.1:18082 " +
              haproxy + " -c -f " + quote((root / "deploy/haproxy.cfg").string()));
  EXPECT_EQ(h.status, 0) << "haproxy -c:\n" << h.out;
  EXPECT_EQ(h.out.find("WARNING"), std::string::npos) << h.out;
}
