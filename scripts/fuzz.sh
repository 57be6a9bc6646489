#!/usr/bin/env bash
# Builds the libFuzzer target for the server's request parsing (multipart
# bodies and the OpenAI parameters; fuzz/fuzz_request.cpp) with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer, and runs it.
#
#   scripts/fuzz.sh [SECONDS]      # default 60
#
# The seeds are fuzz/corpus/ (read only); new inputs go to build-fuzz/corpus/,
# crashes to build-fuzz/crash-*. Extra libFuzzer flags: FUZZ_FLAGS="-jobs=2".
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
build=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMA_FUZZ=ON \
  -DAMA_BUILD_TESTS=OFF -DAMA_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target amanuensis_fuzz_request -j"${FUZZ_BUILD_JOBS:-1}"
mkdir -p "$build/corpus"
exec "$build/amanuensis_fuzz_request" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -artifact_prefix="$build/" -print_final_stats=1 ${FUZZ_FLAGS:-} "$build/corpus" fuzz/corpus
