#!/usr/bin/env bash
# (a) Fresh machine to a transcript: install dependencies, build Release,
# generate a random-weight test model (real weights cannot be downloaded
# here), and transcribe ../shared/audio/jfk.wav.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
mkdir -p models out
[ -f models/base-random.bin ] || build/amanuensis make-test-model --arch base --seed 1 -o models/base-random.bin
build/amanuensis transcribe -m models/base-random.bin ../shared/audio/jfk.wav --format txt,srt,vtt,json -o out/jfk
echo "wrote out/jfk.{txt,srt,vtt,json} (random weights: the text is nonsense, the pipeline is real)"
