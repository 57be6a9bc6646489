#include "decode/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unistd.h>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "core/clock.h"
#include "decode/scheduler.h"
#include "engine/engine.h"

namespace ama {

SampleSpool::~SampleSpool() {
  if (f_) std::fclose(f_);
}

Status SampleSpool::open() {
  f_ = std::tmpfile();
  if (!f_) return make_error("cannot create a temporary file for the decoded audio");
  return Status::Ok();
}

Status SampleSpool::write(const float* x, size_t n) {
  if (std::fwrite(x, sizeof(float), n, f_) != n) return make_error("writing the temporary audio file failed (disk full?)");
  n_ += n;
  return Status::Ok();
}

Status SampleSpool::flush() {
  return std::fflush(f_) == 0 ? Status::Ok() : make_error("writing the temporary audio file failed");
}

Status SampleSpool::read(size_t start, size_t n, float* out) const {
  if (start + n > n_) return make_error("reading past the end of the temporary audio file");
  char* dst = reinterpret_cast<char*>(out);
  size_t want = n * sizeof(float);
  off_t at = static_cast<off_t>(start * sizeof(float));
  while (want > 0) {
    const ssize_t got = ::pread(fileno(f_), dst, want, at);
    if (got <= 0) return make_error("reading the temporary audio file failed");
    dst += got;
    at += got;
    want -= static_cast<size_t>(got);
  }
  return Status::Ok();
}

// The segments of one decoded chunk, with absolute times. Like sequential
// mode, the tokens split at pairs of timestamps; unlike it, nothing is
// decoded again, so tokens after the last complete pair (an unfinished
// segment) become a final segment that ends with the chunk.
std::vector<Segment> chunk_segments(const Tokenizer& tok, const WindowOutcome& w, const AudioChunk& c, bool timestamps) {
  const WindowResult& r = w.result;
  const int frames = static_cast<int>((c.end - c.start) / kHopLength);
  const double offset = static_cast<double>(c.start) / kSampleRate;
  const double length = static_cast<double>(c.end - c.start) / kSampleRate;
  WindowSegments ws = split_window(tok, r.tokens, 0, std::max(frames, 1), timestamps);
  size_t consumed = 0;
  for (const Segment& s : ws.segments) consumed += s.tokens.size();
  if (consumed < r.tokens.size()) {
    Segment tail;
    std::vector<int> part(r.tokens.begin() + consumed, r.tokens.end());
    const int ts0 = tok.special().timestamp_begin;
    tail.start = part.front() >= ts0 ? (part.front() - ts0) * 0.02 : (ws.segments.empty() ? 0 : ws.segments.back().end);
    tail.end = length;
    std::vector<int> text;
    for (int t : part)
      if (t < tok.special().eot) text.push_back(t);
    tail.text = tok.decode(text);
    tail.tokens = std::move(part);
    ws.segments.push_back(std::move(tail));
  }
  std::vector<Segment> out;
  for (Segment& s : ws.segments) {
    if (trim_whitespace(s.text).empty()) continue;
    s.end = std::min(s.end, length);
    s.start = std::min(s.start, s.end);
    if (s.start == s.end && timestamps) continue;  // openai drops zero-length segments
    s.start += offset;
    s.end += offset;
    s.seek = static_cast<int>(c.start / kHopLength);
    s.temperature = w.temperature;
    s.avg_logprob = r.avg_logprob;
    s.compression_ratio = w.compression_ratio;
    s.no_speech_prob = r.no_speech_prob;
    s.repetition_cut = w.repetition_cut;
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<AudioChunk> merge_speech_segments(const std::vector<SpeechSegment>& segments, size_t max_samples) {
  std::vector<AudioChunk> out;
  if (segments.empty() || max_samples == 0) return out;
  AudioChunk cur{segments.front().start, segments.front().start};
  for (const SpeechSegment& s : segments) {
    if (s.end - cur.start > max_samples && cur.end > cur.start) {
      out.push_back(cur);
      cur = {s.start, s.start};
    }
    cur.end = s.end;
    // A single segment over the limit: cut it into windows.
    while (cur.end - cur.start > max_samples) {
      out.push_back({cur.start, cur.start + max_samples});
      cur.start += max_samples;
    }
  }
  if (cur.end > cur.start) out.push_back(cur);
  return out;
}

int default_batch_size() { return 8; }

Status check_options(const WhisperModel& model, const PipelineOptions& o) {
  const Tokenizer& tok = model.tokenizer;
  const int batch = o.batch_size == 0 ? default_batch_size() : o.batch_size;
  if (batch < 1 || batch > 256) return make_error("--batch-size " + std::to_string(o.batch_size) + " is out of range [1, 256]");
  AMA_TRY(validate(o.decoding));
  if (o.forced_tokens_per_30s < 0 || o.forced_tokens_per_30s > model.hp.n_text_ctx / 2)
    return make_error("tokens per window must be in [0, " + std::to_string(model.hp.n_text_ctx / 2) + "]");
  auto requested = requested_language_token(tok, o.language, o.task);
  if (!requested) return requested.error();
  auto rules = logit_rules_for(tok, o);
  if (!rules) return rules.error();
  if (o.hallucination_silence_threshold && !(*o.hallucination_silence_threshold > 0))
    return make_error("the hallucination silence threshold must be > 0 seconds");
  return Status::Ok();
}

Result<PreparedAudio> prepare_audio(const SileroVad& vad, const std::string& path, const VadOptions& options) {
  PreparedAudio out;
  auto src = AudioSource::open(path);
  if (!src) return src.error();
  auto spool = std::make_shared<SampleSpool>();
  AMA_TRY(spool->open());
  VadStream vs = vad.stream();
  std::vector<float> probs, block(1 << 16);
  for (;;) {
    double t0 = now_seconds();
    auto n = (*src)->read(block.data(), block.size());
    out.times.decode_audio += now_seconds() - t0;
    if (!n) return n.error();
    if (*n == 0) break;
    AMA_TRY(spool->write(block.data(), *n));
    t0 = now_seconds();
    vs.push(block.data(), *n, probs);
    out.times.vad += now_seconds() - t0;
  }
  {
    const double t0 = now_seconds();
    vs.finish(probs);
    out.times.vad += now_seconds() - t0;
  }
  AMA_TRY(spool->flush());
  if (spool->size() == 0) return make_error((*src)->name() + ": no audio samples");
  out.duration = static_cast<double>(spool->size()) / kSampleRate;
  VadOptions vo = options;
  vo.max_speech_s = std::min(vo.max_speech_s, static_cast<float>(kChunkSeconds));
  auto segs = speech_segments(probs, spool->size(), vo);
  if (!segs) return segs.error();
  out.chunks = merge_speech_segments(*segs, kNSamplesPerWindow);
  out.samples = std::move(spool);
  return out;
}

Result<PipelineResult> transcribe_file_batched(const Engine& engine, const SileroVad& vad, const std::string& path,
                                               const PipelineOptions& o) {
  AMA_TRY(check_options(engine.model(), o));
  auto audio = prepare_audio(vad, path, o.vad);
  if (!audio) return audio.error();
  auto scheduler = Scheduler::create(engine, {o.batch_size});
  if (!scheduler) return scheduler.error();
  JobEvents events;
  events.on_progress = o.on_progress;
  return (*scheduler)->run(std::move(*audio), o, events);
}

}  // namespace ama
