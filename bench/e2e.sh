#!/usr/bin/env bash
# The end-to-end benchmark of the issue's contract: 10 minutes of speech
# (../shared/audio/silero-test.wav ten times) through the whole batched
# pipeline with a base-shaped random model, 110 tokens per 30 s of speech,
# 2 threads; then the model workload (`bench --json`). With
# WHISPER_BENCH=/path/to/whisper-bench, whisper.cpp's bench runs on the same
# model file in the same run, for comparison.
#   bench/e2e.sh [ARCH] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:-base}"
batch="${2:-0}"
mkdir -p models out
model="models/${arch}-random.bin"
[ -f "$model" ] || build/amanuensis make-test-model --arch "$arch" --seed 1 -o "$model"
audio=out/speech-10min.wav
[ -f "$audio" ] || ffmpeg -nostdin -loglevel error -y -stream_loop 9 -i ../shared/audio/silero-test.wav -c copy "$audio"
build/amanuensis info | head -3
echo "== amanuensis bench --e2e ($arch, batch ${batch}: 0 = default)"
build/amanuensis bench -m "$model" -t 2 --e2e "$audio" --tokens-per-window 110 --batch-size "$batch" --json
echo "== amanuensis bench ($arch)"
build/amanuensis bench -m "$model" -t 2 --json
if [ -n "${WHISPER_BENCH:-}" ]; then
  echo "== whisper.cpp whisper-bench ($arch)"
  "$WHISPER_BENCH" -w 0 -t 2 -m "$model" 2>&1 | grep -E "encode time|decode time|batchd time|prompt time|total time"
fi
