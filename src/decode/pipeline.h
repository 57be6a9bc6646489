// Batched long-form transcription, the default mode (what WhisperX and
// faster-whisper's batched pipeline do), on the stage API:
//
//   audio file --FFmpeg--> 16 kHz stream --Silero VAD--> speech segments
//   --merge to <= 30 s chunks--> log-mel per chunk --EncoderStage (batches)-->
//   DecoderStage: every chunk's sequence in one step per token
//
// Continuous batching: when a chunk's sequence ends, the next chunk takes
// its slot, so the batch stays full. Segments come back in time order with
// absolute times. A chunk's tokens and log-probabilities are bit-identical
// whatever it is batched with and at any thread count (every row of a
// decoder step is computed independently; tests/test_pipeline.cpp checks).
//
// Memory is flat in file length: the first pass streams the audio through
// the VAD and spools the 16 kHz samples to an unlinked temporary file; the
// second reads back one chunk at a time. In memory: the VAD's per-chunk
// probabilities (4 bytes per 32 ms) and at most batch_size chunks in flight.
#pragma once

#include <functional>
#include <string>

#include "audio/vad.h"
#include "core/result.h"
#include "decode/search.h"
#include "decode/transcriber.h"

namespace ama {

class Engine;

// The shared options (language, task, prompt, strategy, fallback, ...) and
// the batched mode's own.
struct PipelineOptions : TranscribeOptions {
  int batch_size = 0;              // windows decoded together; 0: default_batch_size()
  VadOptions vad;                  // max_speech_s is capped at 30 s (one window)
  // > 0: decode exactly this many tokens per 30 s of chunk audio, ignoring
  // end of text (bench --e2e: random weights never stop by themselves).
  int forced_tokens_per_30s = 0;
};

// Seconds spent in each stage (wall time, summed).
struct StageTimes {
  double decode_audio = 0, vad = 0, mel = 0, encode = 0, decode = 0;
};

struct PipelineResult {
  Transcript transcript;
  StageTimes times;
  int windows = 0;        // chunks decoded
  int decoded_tokens = 0; // sampled tokens over all chunks (kept decodings)
  int fallbacks = 0;      // windows decoded again at a higher temperature
  int forks = 0;          // hypothesis forks (beam search and best-of)
};

// A chunk of audio to decode: samples [start, end) at 16 kHz.
struct AudioChunk {
  size_t start = 0, end = 0;
};
// WhisperX's merge_chunks: consecutive speech segments are merged while the
// chunk stays within max_samples; a segment longer than that (the VAD splits
// at max_speech_s, so only by its padding) is cut at max_samples.
std::vector<AudioChunk> merge_speech_segments(const std::vector<SpeechSegment>& segments, size_t max_samples);

// The batch size used when options.batch_size is 0: 8 on this machine
// class (see pipeline.cpp for the measurement).
int default_batch_size();

Result<PipelineResult> transcribe_file_batched(const Engine& engine, const SileroVad& vad, const std::string& path,
                                               const PipelineOptions& options);

}  // namespace ama
