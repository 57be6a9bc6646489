// Shared helpers for the tests: data paths, raw float32 files, and error
// reports that name the worst element.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>
#include <unistd.h>

#ifndef AMA_SHARED_DIR
#define AMA_SHARED_DIR "/work/shared"
#endif

namespace ama::test {

inline std::string shared(const std::string& rel) { return std::string(AMA_SHARED_DIR) + "/" + rel; }

// Built under AddressSanitizer (or ThreadSanitizer): the tests that run the
// scalar and emulated-AMX kernels at Whisper's real shapes take minutes
// there (at 1500 rows, 70-130 s per variant). They keep Whisper's K and N,
// which decide the panels, tails and splits, and take kRealRows rows: 161
// under the sanitizers, which only repeats the row-tile loop fewer times
// and still ends in a partial tile of every variant (6, 8, 16 and 32 rows).
// (GCC defines __SANITIZE_*__; clang answers __has_feature.)
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif
inline constexpr int kRealRows = kSanitized ? 161 : 1500;

// A folder unique to this test process (ctest runs several test processes
// at once), created at static initialisation and removed when the tests
// end. Define one per test file at namespace scope:
//   const test::ProcessTempDir kTmp("ama_hf");  ...  kTmp.file("x.bin")
class ProcessTempDir {
 public:
  explicit ProcessTempDir(const std::string& prefix)
      : path_(::testing::TempDir() + "/" + prefix + "_" + std::to_string(getpid())) {
    ::testing::AddGlobalTestEnvironment(new Cleanup(path_));
  }
  // Created on first use, not at static initialisation: a child process
  // that re-runs this binary (a death test) would otherwise leave an empty
  // folder behind.
  const std::string& path() const {
    std::call_once(created_, [this] { std::filesystem::create_directories(path_); });
    return path_;
  }
  std::string file(const std::string& name) const { return path() + "/" + name; }

 private:
  class Cleanup : public ::testing::Environment {
   public:
    explicit Cleanup(std::string path) : path_(std::move(path)) {}
    void TearDown() override {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }

   private:
    std::string path_;
  };
  std::string path_;
  mutable std::once_flag created_;
};

inline std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return {};
  const std::streamsize n = f.tellg();
  std::vector<float> v(static_cast<size_t>(n) / 4);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

// max_abs_diff's report. A comparison that looked at nothing is a failure,
// not a pass: when the sizes differ (a missing, truncated or empty output)
// or both sides are empty, max_abs is INFINITY, so every caller's
// EXPECT_LE(d.max_abs, tol) fails, and str() says why.
struct Diff {
  double max_abs = 0;
  size_t worst = 0;
  double ours = 0, ref = 0;
  size_t n_ours = 0, n_ref = 0;
  bool size_mismatch = false;
  bool empty = false;  // both sides empty: nothing was compared
  std::string str(const char* what = "") const {
    char buf[256];
    if (size_mismatch)
      std::snprintf(buf, sizeof buf, "%s sizes differ: ours %zu, reference %zu", what, n_ours, n_ref);
    else if (empty)
      std::snprintf(buf, sizeof buf, "%s both empty: nothing to compare", what);
    else
      std::snprintf(buf, sizeof buf, "%s max abs error %.3g at element %zu (ours %.9g, reference %.9g)", what, max_abs,
                    worst, ours, ref);
    return buf;
  }
};

template <typename A, typename B>
Diff max_abs_diff(const A& ours, const B& ref) {
  Diff d;
  d.n_ours = ours.size();
  d.n_ref = ref.size();
  if (d.n_ours != d.n_ref || d.n_ours == 0) {
    d.size_mismatch = d.n_ours != d.n_ref;
    d.empty = !d.size_mismatch;
    d.max_abs = INFINITY;
    return d;
  }
  for (size_t i = 0; i < ours.size(); ++i) {
    const double e = std::fabs(static_cast<double>(ours[i]) - static_cast<double>(ref[i]));
    if (e > d.max_abs || std::isnan(e)) {
      d.max_abs = std::isnan(e) ? INFINITY : e;
      d.worst = i;
      d.ours = ours[i];
      d.ref = ref[i];
    }
  }
  return d;
}

inline std::vector<int> row_argmax(const std::vector<float>& x, size_t cols) {
  std::vector<int> r;
  for (size_t row = 0; row * cols < x.size(); ++row) {
    size_t best = 0;
    for (size_t j = 1; j < cols; ++j)
      if (x[row * cols + j] > x[row * cols + best]) best = j;
    r.push_back(static_cast<int>(best));
  }
  return r;
}

// Runs a shell command; returns its exit status and stderr.
struct CommandResult {
  int exit_code = -1;
  std::string err;
  std::string out;
};

inline CommandResult run_command(const std::string& cmd) {
  static int counter = 0;
  const std::string errfile =
      ::testing::TempDir() + "/cmd_err_" + std::to_string(getpid()) + "_" + std::to_string(++counter) + ".txt";
  CommandResult r;
  FILE* p = popen((cmd + " 2>" + errfile).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(errfile);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  return r;
}

}  // namespace ama::test
