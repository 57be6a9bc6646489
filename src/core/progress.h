// A progress line on a terminal for long transcriptions: the share of the
// audio done (percent and bar), the speed as a realtime factor (seconds of
// audio done per wall-clock second) and an estimate of the time left,
// redrawn in place with '\r' at most every min_interval seconds and ended
// with a newline by finish() (or the destructor).
//
// For the CLI:
//   auto bar = ProgressBar::for_stderr(quiet);   // draws only on a terminal
//   options.on_progress = bar.callback();        // (done, total) seconds
//   ... transcribe ...
//   bar.finish();                                // before printing results
//
// update() may be called from any thread. With total unknown (0, e.g. audio
// from a pipe) the line shows the seconds done and the speed only.
#pragma once

#include <functional>
#include <mutex>
#include <string>

namespace ama {

class ProgressBar {
 public:
  using Clock = std::function<double()>;  // monotonic seconds

  struct Options {
    int fd = 2;                  // where to draw (stderr)
    bool enabled = true;         // false: every call does nothing
    double min_interval = 0.1;   // seconds between redraws
    int bar_width = 30;
    std::string label = "amanuensis";
    Clock clock;                 // default: std::chrono::steady_clock
  };

  explicit ProgressBar(Options options);
  ~ProgressBar();  // finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Enabled when `fd` is a terminal (isatty) and not quiet; the bar is
  // narrowed to fit the terminal's width.
  static ProgressBar for_fd(int fd, bool quiet);
  static ProgressBar for_stderr(bool quiet);

  bool enabled() const { return options_.enabled; }

  // Restart the wall clock (it starts when the bar is made).
  void restart();
  // done and total in seconds of audio; total <= 0: unknown. The share done
  // never goes back (callbacks from several threads may arrive out of order).
  void update(double done_seconds, double total_seconds);
  // Draws the last state if it was held back and ends the line; only once,
  // and only if something was drawn.
  void finish();
  // update() as a std::function for on_progress callbacks; the bar must
  // outlive it.
  std::function<void(double, double)> callback();

  // The line for a state, without '\r' or padding:
  //   "amanuensis:  42% |############                  | 0:12/0:30 audio, 5.3x realtime, ETA 0:03"
  //   "amanuensis: 0:12 audio, 5.3x realtime"   (total unknown)
  static std::string render(double done_seconds, double total_seconds, double elapsed_seconds, int bar_width = 30,
                            const std::string& label = "amanuensis");
  // 75 -> "1:15", 3725 -> "1:02:05" (whole seconds, rounded down).
  static std::string clock_text(double seconds);

 private:
  void draw_locked(double now);
  void write_all(const std::string& s);

  Options options_;
  std::mutex mutex_;
  double start_ = 0;
  double last_draw_ = 0;
  double done_ = 0, total_ = 0;
  double drawn_done_ = -1, drawn_total_ = -1;  // the state on the line
  bool updated_ = false;   // an update arrived
  bool drawn_ = false;     // something is on the line
  bool pending_ = false;   // the line shows an older state
  bool finished_ = false;
  bool complete_drawn_ = false;  // the 100% line is on the terminal
  size_t last_len_ = 0;
};

}  // namespace ama
