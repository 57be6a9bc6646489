// The progress line: its text, its redraw rate (with an injected clock),
// silence when stderr is not a terminal, updates from several threads, and
// a real terminal: this test binary re-run as a helper under script(1),
// which gives it a pseudo-terminal, and the output captured.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "core/progress.h"

namespace ama {
namespace {

// Helper mode: with this variable set the test binary draws a bar on its
// stderr for 20 s of "audio" over ~0.6 s and exits before any test runs.
constexpr const char* kHelperEnv = "AMA_PROGRESS_TEST_HELPER";

struct HelperHook {
  HelperHook() {
    const char* v = std::getenv(kHelperEnv);
    if (v == nullptr || std::string(v) != "1") return;
    {
      ProgressBar bar = ProgressBar::for_stderr(false);
      for (int i = 1; i <= 30; ++i) {
        usleep(20000);
        bar.update(20.0 * i / 30, 20.0);
      }
      bar.finish();
    }
    std::printf("helper-ran\n");
    std::fflush(stdout);
    _exit(0);
  }
} helper_hook;

std::string self_exe() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  pclose(p);
  return out;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = 0; (p = s.find(what, p)) != std::string::npos; p += what.size()) ++n;
  return n;
}

// A file to draw into, read back whole.
struct Capture {
  FILE* f = std::tmpfile();
  ~Capture() { std::fclose(f); }
  int fd() const { return fileno(f); }
  std::string text() const {
    std::string out;
    lseek(fd(), 0, SEEK_SET);
    char buf[4096];
    for (ssize_t n; (n = read(fd(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    return out;
  }
};

ProgressBar::Options test_options(int fd, double* now) {
  ProgressBar::Options o;
  o.fd = fd;
  o.label = "t";
  o.bar_width = 10;
  o.clock = [now] { return *now; };
  return o;
}

TEST(ProgressBar, RendersShareBarSpeedAndEta) {
  EXPECT_EQ(ProgressBar::render(0, 30, 0),
            "amanuensis:   0% |                              | 0:00/0:30 audio, -.-x realtime, ETA --:--");
  EXPECT_EQ(ProgressBar::render(15, 30, 3),
            "amanuensis:  50% |###############               | 0:15/0:30 audio, 5.0x realtime, ETA 0:03");
  EXPECT_EQ(ProgressBar::render(30, 30, 6),
            "amanuensis: 100% |##############################| 0:30/0:30 audio, 5.0x realtime, ETA 0:00");
  EXPECT_EQ(ProgressBar::render(45, 30, 6, 4, "x"), "x: 100% |####| 0:30/0:30 audio, 5.0x realtime, ETA 0:00");
  EXPECT_EQ(ProgressBar::render(29.99, 30, 10, 4, "x"), "x:  99% |### | 0:29/0:30 audio, 3.0x realtime, ETA 0:00");
  EXPECT_EQ(ProgressBar::render(600, 7200, 60, 4, "x"), "x:   8% |    | 10:00/2:00:00 audio, 10.0x realtime, ETA 11:00");
  EXPECT_EQ(ProgressBar::render(0.5, 3600, 1, 4, ""), "  0% |    | 0:00/1:00:00 audio, 0.5x realtime, ETA 1:59:59");
}

TEST(ProgressBar, RendersSecondsAndSpeedWhenTotalIsUnknown) {
  EXPECT_EQ(ProgressBar::render(7384, 0, 4), "amanuensis: 2:03:04 audio, 1846.0x realtime");
  EXPECT_EQ(ProgressBar::render(0, 0, 4, 10, "x"), "x: 0:00 audio, -.-x realtime");
  EXPECT_EQ(ProgressBar::render(NAN, -1, 4, 10, "x"), "x: 0:00 audio, -.-x realtime");
}

TEST(ProgressBar, ClockText) {
  EXPECT_EQ(ProgressBar::clock_text(0), "0:00");
  EXPECT_EQ(ProgressBar::clock_text(59.99), "0:59");
  EXPECT_EQ(ProgressBar::clock_text(75), "1:15");
  EXPECT_EQ(ProgressBar::clock_text(3725), "1:02:05");
  EXPECT_EQ(ProgressBar::clock_text(-5), "0:00");
  EXPECT_EQ(ProgressBar::clock_text(INFINITY), "0:00");
}

TEST(ProgressBar, RedrawsInPlaceAtMostEveryTenthOfASecond) {
  Capture cap;
  double now = 0;
  {
    ProgressBar bar(test_options(cap.fd(), &now));
    EXPECT_TRUE(bar.enabled());
    now = 1.0;
    bar.update(10, 100);  // the first state: drawn
    now = 1.05;
    bar.update(12, 100);  // 0.05 s later: held back
    now = 2.0;
    bar.update(30, 100);  // drawn
    now = 2.01;
    bar.update(31, 100);  // held back, drawn by finish()
    now = 2.5;
    bar.finish();
    bar.finish();
    bar.update(50, 100);  // after the end: nothing
  }
  EXPECT_EQ(cap.text(),
            "\rt:  10% |#         | 0:10/1:40 audio, 10.0x realtime, ETA 0:09"
            "\rt:  30% |###       | 0:30/1:40 audio, 15.0x realtime, ETA 0:04"
            "\rt:  31% |###       | 0:31/1:40 audio, 12.4x realtime, ETA 0:05\n");
}

TEST(ProgressBar, TheEndIsDrawnAtOnceAndOnce) {
  Capture cap;
  double now = 0;
  ProgressBar bar(test_options(cap.fd(), &now));
  now = 1;
  bar.update(50, 100);
  now = 1.01;
  bar.update(100, 100);
  now = 1.02;
  bar.update(100, 100);
  bar.update(90, 100);  // late callback from another thread: no going back
  bar.finish();
  EXPECT_EQ(cap.text(),
            "\rt:  50% |#####     | 0:50/1:40 audio, 50.0x realtime, ETA 0:01"
            "\rt: 100% |##########| 1:40/1:40 audio, 99.0x realtime, ETA 0:00\n");
}

TEST(ProgressBar, AShorterLineIsPaddedOverTheLongerOne) {
  Capture cap;
  double now = 0;
  ProgressBar::Options o = test_options(cap.fd(), &now);
  o.min_interval = 0;
  ProgressBar bar(o);
  now = 1;
  bar.update(10, 100);
  now = 2;
  bar.update(20, 0);  // total unknown from here
  bar.finish();
  const std::string first = "t:  10% |#         | 0:10/1:40 audio, 10.0x realtime, ETA 0:09";
  const std::string second = "t: 0:20 audio, 10.0x realtime";
  EXPECT_EQ(cap.text(), "\r" + first + "\r" + second + std::string(first.size() - second.size(), ' ') + "\n");
}

TEST(ProgressBar, NothingWithoutUpdatesOrWhenDisabled) {
  Capture cap;
  double now = 1;
  { ProgressBar bar(test_options(cap.fd(), &now)); }  // no update: no newline either
  ProgressBar::Options o = test_options(cap.fd(), &now);
  o.enabled = false;
  {
    ProgressBar bar(o);
    bar.update(5, 10);
    bar.finish();
  }
  EXPECT_EQ(cap.text(), "");
}

TEST(ProgressBar, DisabledOnAPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  {
    ProgressBar bar = ProgressBar::for_fd(fds[1], false);
    EXPECT_FALSE(bar.enabled());
    bar.update(5, 10);
    bar.update(10, 10);
    bar.finish();
  }
  close(fds[1]);
  char buf[64];
  EXPECT_EQ(read(fds[0], buf, sizeof buf), 0);
  close(fds[0]);
}

TEST(ProgressBar, EnabledOnATerminalUnlessQuiet) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  const int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(slave, 0);
  EXPECT_FALSE(ProgressBar::for_fd(slave, true).enabled());
  winsize ws{};
  ws.ws_row = 24;
  ws.ws_col = 80;  // the bar narrows to fit
  ASSERT_EQ(ioctl(slave, TIOCSWINSZ, &ws), 0);
  {
    ProgressBar bar = ProgressBar::for_fd(slave, false);
    EXPECT_TRUE(bar.enabled());
    bar.update(10, 10);
  }
  std::string out;
  pollfd p{master, POLLIN, 0};
  char buf[512];
  while (poll(&p, 1, 500) > 0) {
    const ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.find('\n') != std::string::npos) break;
  }
  EXPECT_EQ(out.rfind("\ramanuensis: 100% |########| 0:10/0:10 audio, ", 0), 0u) << out;
  EXPECT_LT(out.size(), 80u) << out;
  EXPECT_NE(out.find("ETA 0:00\r\n"), std::string::npos) << out;  // the terminal turns \n into \r\n
  close(slave);
  close(master);
}

TEST(ProgressBar, UpdatesFromManyThreadsNeverInterleave) {
  Capture cap;
  ProgressBar::Options o;
  o.fd = cap.fd();
  o.label = "t";
  o.bar_width = 10;
  o.min_interval = 0;  // every update draws
  constexpr int kThreads = 4, kUpdates = 500;
  {
    ProgressBar bar(o);
    auto cb = bar.callback();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&cb, t] {
        for (int i = 0; i < kUpdates; ++i) cb(100.0 * (i * kThreads + t) / (kThreads * kUpdates), 100.0);
      });
    for (auto& th : threads) th.join();
  }
  const std::string text = cap.text();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const std::regex line(R"(t: +(\d+)% \|[# ]{10}\| \d+:\d\d/1:40 audio, (\d+\.\d|-\.-)x realtime, ETA [-:\d]+ *\n?)");
  std::vector<std::string> pieces;
  for (size_t b = 1, e; b <= text.size(); b = e + 1) {
    e = text.find('\r', b);
    if (e == std::string::npos) e = text.size();
    pieces.push_back(text.substr(b, e - b));
  }
  EXPECT_EQ(text[0], '\r');
  EXPECT_EQ(pieces.size(), static_cast<size_t>(kThreads * kUpdates));
  int last_percent = -1;
  for (const std::string& p : pieces) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(p, m, line)) << "'" << p << "'";
    const int percent = std::stoi(m[1]);
    EXPECT_GE(percent, last_percent);
    last_percent = percent;
  }
}

TEST(ProgressBar, RealTerminalUnderScript) {
  const std::string exe = self_exe();
  ASSERT_FALSE(exe.empty());
  ASSERT_EQ(std::system("command -v script >/dev/null 2>&1"), 0) << "script(1) from util-linux is needed";
  const std::string out =
      run(std::string(kHelperEnv) + "=1 script -qfec '" + exe + "' /dev/null </dev/null 2>/dev/null");
  ASSERT_NE(out.find("helper-ran"), std::string::npos) << out;
  const size_t draws = count(out, "\ramanuensis:");
  EXPECT_GE(draws, 3u) << out;   // redrawn in place, ~0.6 s at 10 per second
  EXPECT_LE(draws, 20u) << out;  // far fewer than the 30 updates
  EXPECT_EQ(count(out, "\n"), 2u) << out;  // one line for the bar, one for helper-ran
  EXPECT_NE(out.find("\ramanuensis: 100% |##############################| 0:20/0:20 audio, "), std::string::npos)
      << out;
  EXPECT_NE(out.find("x realtime, ETA 0:00\r\n"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(  \d\d% \|#+ +\| 0:\d\d/0:20 audio, \d+\.\dx realtime, ETA 0:\d\d)")))
      << out;
}

TEST(ProgressBar, SilentWhenStderrIsAPipe) {
  const std::string exe = self_exe();
  ASSERT_FALSE(exe.empty());
  EXPECT_EQ(run(std::string(kHelperEnv) + "=1 '" + exe + "' 2>&1 </dev/null"), "helper-ran\n");
}

}  // namespace
}  // namespace ama
