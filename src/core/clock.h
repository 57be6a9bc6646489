// A monotonic clock in seconds, for the stage timings.
#pragma once

#include <chrono>

namespace ama {

inline double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace ama
