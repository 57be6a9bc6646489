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

#include <cstdio>
#include <functional>
#include <memory>
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

// Seconds spent in each stage (wall time, summed; for files batched
// together, each file's share of the shared steps).
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

// 16 kHz samples spooled to an unlinked temporary file: the page cache
// holds them, not the process; chunks are read back by offset (from any
// thread).
class SampleSpool {
 public:
  ~SampleSpool();
  Status open();
  Status write(const float* x, size_t n);
  Status flush();
  Status read(size_t start, size_t n, float* out) const;
  size_t size() const { return n_; }

 private:
  std::FILE* f_ = nullptr;
  size_t n_ = 0;
};

// Pass 1 of a file: decoded, run through the VAD, spooled, and cut into
// chunks of speech of at most 30 s.
struct PreparedAudio {
  std::shared_ptr<const SampleSpool> samples;
  std::vector<AudioChunk> chunks;
  double duration = 0;  // seconds of audio
  StageTimes times;     // decode_audio and vad
};
Result<PreparedAudio> prepare_audio(const SileroVad& vad, const std::string& path, const VadOptions& options);

// Checks the options against the model before any work is done.
Status check_options(const WhisperModel& model, const PipelineOptions& options);

// check_options, prepare_audio, then the chunks through a Scheduler of
// options.batch_size windows (decode/scheduler.h).
Result<PipelineResult> transcribe_file_batched(const Engine& engine, const SileroVad& vad, const std::string& path,
                                               const PipelineOptions& options);

// The segments of one decoded chunk, with absolute times (the scheduler's
// emission; exposed for tests).
std::vector<Segment> chunk_segments(const Tokenizer& tok, const WindowOutcome& w, const AudioChunk& c, bool timestamps);

}  // namespace ama
