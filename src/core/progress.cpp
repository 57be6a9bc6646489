#include "core/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace ama {

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

ProgressBar::ProgressBar(Options options) : options_(std::move(options)) {
  if (!options_.clock) options_.clock = steady_seconds;
  options_.bar_width = std::clamp(options_.bar_width, 0, 200);
  start_ = options_.clock();
}

ProgressBar::~ProgressBar() { finish(); }

ProgressBar ProgressBar::for_fd(int fd, bool quiet) {
  Options o;
  o.fd = fd;
  o.enabled = !quiet && isatty(fd) == 1;
  // A line wider than the terminal wraps, and '\r' then redraws only its
  // last part: a narrower bar on narrow terminals (the rest takes ~70).
  winsize ws{};
  if (o.enabled && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    o.bar_width = std::clamp(static_cast<int>(ws.ws_col) - 72, 0, o.bar_width);
  return ProgressBar(std::move(o));
}

ProgressBar ProgressBar::for_stderr(bool quiet) { return for_fd(STDERR_FILENO, quiet); }

void ProgressBar::restart() {
  std::lock_guard<std::mutex> lock(mutex_);
  start_ = options_.clock();
}

std::string ProgressBar::clock_text(double seconds) {
  const long long s = std::isfinite(seconds) && seconds > 0 ? static_cast<long long>(std::min(seconds, 1e9)) : 0;
  char buf[64];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

std::string ProgressBar::render(double done, double total, double elapsed, int bar_width, const std::string& label) {
  if (!std::isfinite(done) || done < 0) done = 0;
  if (!std::isfinite(total) || total < 0) total = 0;
  const bool known = total > 0;
  if (known) done = std::min(done, total);
  const double rtf = elapsed > 0 && done > 0 ? done / elapsed : 0;
  char speed[64];
  if (rtf > 0)
    std::snprintf(speed, sizeof speed, "%.1fx realtime", std::min(rtf, 1e6));
  else
    std::snprintf(speed, sizeof speed, "-.-x realtime");

  std::string line = label.empty() ? "" : label + ": ";
  if (!known) return line + clock_text(done) + " audio, " + speed;

  const double share = done / total;
  char percent[16];
  std::snprintf(percent, sizeof percent, "%3d%%", static_cast<int>(std::floor(share * 100.0)));
  const int filled = static_cast<int>(std::floor(share * bar_width));
  std::string bar = "|" + std::string(static_cast<size_t>(filled), '#') +
                    std::string(static_cast<size_t>(bar_width - filled), ' ') + "|";
  std::string eta = "--:--";
  if (done >= total) eta = clock_text(0);
  else if (rtf > 0) eta = clock_text((total - done) / rtf);
  return line + percent + " " + bar + " " + clock_text(done) + "/" + clock_text(total) + " audio, " + speed +
         ", ETA " + eta;
}

void ProgressBar::update(double done_seconds, double total_seconds) {
  if (!options_.enabled) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  if (!std::isfinite(total_seconds) || total_seconds < 0) total_seconds = 0;
  if (total_seconds != total_) done_ = 0;  // another total: another run
  total_ = total_seconds;
  if (std::isfinite(done_seconds)) done_ = std::max(done_, done_seconds);
  const double now = options_.clock();
  // The first state and the end are always drawn (the end once).
  const bool complete = total_ > 0 && done_ >= total_;
  pending_ = done_ != drawn_done_ || total_ != drawn_total_;
  if (!updated_ || (complete && !complete_drawn_) || now - last_draw_ >= options_.min_interval) {
    draw_locked(now);
    complete_drawn_ = complete;
  }
  updated_ = true;
}

void ProgressBar::finish() {
  if (!options_.enabled) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (pending_) draw_locked(options_.clock());
  if (drawn_) write_all("\n");
}

std::function<void(double, double)> ProgressBar::callback() {
  return [this](double done, double total) { update(done, total); };
}

void ProgressBar::draw_locked(double now) {
  std::string line = render(done_, total_, now - start_, options_.bar_width, options_.label);
  const size_t len = line.size();
  // Spaces over what is left of a longer previous line.
  if (len < last_len_) line.append(last_len_ - len, ' ');
  write_all("\r" + line);
  last_len_ = len;
  last_draw_ = now;
  drawn_done_ = done_;
  drawn_total_ = total_;
  drawn_ = true;
  pending_ = false;
}

void ProgressBar::write_all(const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(options_.fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed terminal: progress is not worth an error
    off += static_cast<size_t>(n);
  }
}

}  // namespace ama
