#!/usr/bin/env bash
# (b) Build and run every test (Release). With --sanitize, a separate
# Debug build under AddressSanitizer and UndefinedBehaviorSanitizer runs the
# unit tests; the real-shape model tests are left to the Release run because
# they take minutes under the sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"
if [ "${1:-}" = "--sanitize" ]; then
  # -O2 keeps the sanitized run within minutes; the sanitizers work as well.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMA_SANITIZE=ON -DAMA_BUILD_BENCH=OFF
  cmake --build build-asan -j"$jobs"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # Also left to the Release run: the peak-RSS comparison of 10- and 60-minute
  # files (ASan's shadow memory and quarantine make RSS meaningless, and it
  # transcribes 70 minutes of audio).
  build-asan/amanuensis_tests --gtest_filter='-RealShapes*:LongForm*:PipelineCli.E2eBenchAndFlatMemory'
else
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j"$jobs"
  ctest --test-dir build --output-on-failure -j"$jobs"
fi
