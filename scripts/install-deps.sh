#!/usr/bin/env bash
# Installs the Debian packages Amanuensis builds with. Idempotent: installs
# only what is missing.
set -euo pipefail
# FFmpeg's libraries read audio (src/audio/audio_source.cpp); the ffmpeg CLI makes test inputs.
packages=(g++ cmake make pkg-config libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev
          libavformat-dev libavcodec-dev libavutil-dev libswresample-dev ffmpeg
          zlib1g-dev   # zlib: the compression ratio of decoded text, and numpy .npz test data
          # amanuensis serve: cpp-httplib; its tests: Node (OpenAI's SDK, puppeteer-core from npm),
          # headless Chromium, haproxy (scale-out), yamllint (docs/deploy k8s manifests),
          # clang and libclang-rt-dev (libFuzzer targets: -fsanitize=fuzzer needs compiler-rt,
          # which clang only recommends), wrk (load generator cross-check), bsdutils (script: pty tests)
          libcpp-httplib-dev nodejs chromium haproxy yamllint clang libclang-rt-dev wrk bsdutils
          # models by name (amanuensis models pull, -m NAME): libcurl downloads, OpenSSL's SHA-256
          libcurl4-openssl-dev libssl-dev
          # oneDNN, the baseline of bench/onednn.sh (its CMake package needs the OpenCL headers)
          libdnnl-dev ocl-icd-opencl-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# npm comes with nodejs on these machines (NodeSource's package bundles it,
# and conflicts with Debian's separate npm package); Debian's own nodejs needs npm.
if ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends npm
fi
