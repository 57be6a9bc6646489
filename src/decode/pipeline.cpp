#include "decode/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <thread>
#include <unistd.h>

#include "audio/audio_source.h"
#include "audio/mel.h"
#include "decode/hallucination.h"
#include "decode/language_detect.h"
#include "decode/timing.h"
#include "engine/engine.h"

namespace ama {

namespace {

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// The 16 kHz samples of pass 1, in an unlinked temporary file: the page
// cache holds them, not the process, and chunks are read back by offset.
class Spool {
 public:
  ~Spool() {
    if (f_) std::fclose(f_);
  }
  Status open() {
    f_ = std::tmpfile();
    if (!f_) return make_error("cannot create a temporary file for the decoded audio");
    return Status::Ok();
  }
  Status write(const float* x, size_t n) {
    if (std::fwrite(x, sizeof(float), n, f_) != n) return make_error("writing the temporary audio file failed (disk full?)");
    n_ += n;
    return Status::Ok();
  }
  Status flush() { return std::fflush(f_) == 0 ? Status::Ok() : make_error("writing the temporary audio file failed"); }
  Status read(size_t start, size_t n, float* out) const {
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
  size_t size() const { return n_; }

 private:
  std::FILE* f_ = nullptr;
  size_t n_ = 0;
};

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

}  // namespace

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

Result<PipelineResult> transcribe_file_batched(const Engine& engine, const SileroVad& vad, const std::string& path,
                                               const PipelineOptions& o) {
  const WhisperModel& model = engine.model();
  const Tokenizer& tok = model.tokenizer;
  const HParams& hp = model.hp;
  const int batch = o.batch_size == 0 ? default_batch_size() : o.batch_size;
  if (batch < 1 || batch > 256) return make_error("--batch-size " + std::to_string(o.batch_size) + " is out of range [1, 256]");
  AMA_TRY(validate(o.decoding));
  if (o.forced_tokens_per_30s < 0 || o.forced_tokens_per_30s > hp.n_text_ctx / 2)
    return make_error("tokens per window must be in [0, " + std::to_string(hp.n_text_ctx / 2) + "]");

  PipelineResult res;
  Transcript& out = res.transcript;
  auto requested = requested_language_token(tok, o.language, o.task);
  if (!requested) return requested.error();
  int language_token = *requested;
  if (!tok.multilingual()) out.language = "en";
  else if (language_token >= 0) out.language = tok.language_code(language_token);
  LogitRuleOptions ro;
  ro.timestamps = o.timestamps;
  ro.suppress_tokens = o.suppress_tokens;
  ro.max_initial_timestamp = o.max_initial_timestamp;
  auto rules_or = make_logit_rules(tok, ro);
  if (!rules_or) return rules_or.error();
  const LogitRules& rules = *rules_or;

  // Pass 1: decode the audio, run the VAD, spool the samples.
  auto src = AudioSource::open(path);
  if (!src) return src.error();
  Spool spool;
  AMA_TRY(spool.open());
  VadStream vs = vad.stream();
  std::vector<float> probs, block(1 << 16);
  for (;;) {
    double t0 = now_s();
    auto n = (*src)->read(block.data(), block.size());
    res.times.decode_audio += now_s() - t0;
    if (!n) return n.error();
    if (*n == 0) break;
    AMA_TRY(spool.write(block.data(), *n));
    t0 = now_s();
    vs.push(block.data(), *n, probs);
    res.times.vad += now_s() - t0;
  }
  {
    const double t0 = now_s();
    vs.finish(probs);
    res.times.vad += now_s() - t0;
  }
  AMA_TRY(spool.flush());
  if (spool.size() == 0) return make_error((*src)->name() + ": no audio samples");
  out.duration = static_cast<double>(spool.size()) / kSampleRate;

  VadOptions vo = o.vad;
  vo.max_speech_s = std::min(vo.max_speech_s, static_cast<float>(kChunkSeconds));
  auto segs = speech_segments(probs, spool.size(), vo);
  if (!segs) return segs.error();
  const std::vector<AudioChunk> chunks = merge_speech_segments(*segs, kNSamplesPerWindow);
  if (chunks.empty()) {
    if (out.language.empty()) out.language = "en";  // nothing to detect it from
    if (o.on_progress) o.on_progress(out.duration, out.duration);
    return res;
  }

  // Pass 2: chunks through the stages, continuously batched.
  auto encoder = engine.new_encoder_stage();
  auto decoder = engine.new_decoder_stage();
  LogMel mel(model.mel_filters, hp.n_mels);
  const size_t window = static_cast<size_t>(hp.n_mels) * kNFramesPerWindow;
  std::vector<float> mels, audio;
  WindowRequest req;
  req.task = o.task;
  req.timestamps = o.timestamps;
  req.sample_len = hp.n_text_ctx / 2;
  if (!o.initial_prompt.empty()) req.prompt = tok.encode(" " + trim_whitespace(o.initial_prompt));
  std::vector<int> prefix;
  if (!trim_whitespace(o.prefix).empty()) prefix = tok.encode(" " + trim_whitespace(o.prefix));

  // Log-mel of chunks [first, first + k) into mels, WhisperX style: each
  // chunk zero-padded to 30 s and normalized by its own maximum.
  auto chunk_mels = [&](size_t first, int k) -> Status {
    const double t0 = now_s();
    mels.assign(window * k, 0.0f);
    for (int i = 0; i < k; ++i) {
      const AudioChunk& c = chunks[first + i];
      audio.resize(c.end - c.start);
      const double ta = now_s();
      AMA_TRY(spool.read(c.start, audio.size(), audio.data()));
      res.times.decode_audio += now_s() - ta;
      float* m = mels.data() + window * i;
      // Two fixed halves of frames, the second on a helper thread: 27 ms a
      // window on one core of the Zen 4 (f64 FFT), so a 10-minute file's 21
      // windows spend ~0.3 s instead of ~0.6 s here. Frames are computed in
      // pairs from an even start, so the split never changes a value.
      constexpr int kHalf = kNFramesPerWindow / 2;
      std::thread second([&] { mel.raw_frames(audio.data(), audio.size(), kHalf, kNFramesPerWindow, m + kHalf, kNFramesPerWindow); });
      mel.raw_frames(audio.data(), audio.size(), 0, kHalf, m, kNFramesPerWindow);
      second.join();
      const float gmax = *std::max_element(m, m + window);
      LogMel::normalize(m, hp.n_mels, kNFramesPerWindow, kNFramesPerWindow, gmax);
    }
    res.times.mel += now_s() - t0;
    return Status::Ok();
  };
  auto encode = [&](size_t first, int k) -> Result<std::vector<std::shared_ptr<const EncoderState>>> {
    AMA_TRY(chunk_mels(first, k));
    const double t0 = now_s();
    auto st = encoder->encode(mels.data(), k, window, kNFramesPerWindow);
    res.times.encode += now_s() - t0;
    return st;
  };

  std::shared_ptr<const EncoderState> first_state;
  std::vector<float> logits;
  if (language_token < 0 && tok.multilingual()) {
    // The language of the first 30 s of speech.
    auto st = encode(0, 1);
    if (!st) return st.error();
    first_state = st->front();
    const double t0 = now_s();
    auto langs = detect_language(*decoder, first_state, tok);
    if (!langs) return langs.error();
    res.times.decode += now_s() - t0;
    out.language = langs->front().code;
    language_token = tok.language_token(out.language);
    out.language_probs = top_languages(std::move(*langs), 5);
  }
  req.language_token = language_token;

  struct Slot {
    size_t chunk;
    std::unique_ptr<WindowDecode> window;
    std::shared_ptr<const EncoderState> state;  // kept for word alignment
    size_t n_inputs = 0;
  };
  std::vector<Slot> active;
  struct Done {
    WindowOutcome outcome;
    std::shared_ptr<const EncoderState> state;
  };
  std::map<size_t, Done> finished;
  std::vector<int> sot_sequence{tok.special().sot};
  if (tok.multilingual()) {
    sot_sequence.push_back(language_token);
    sot_sequence.push_back(o.task == Task::translate ? tok.special().translate : tok.special().transcribe);
  }
  const std::vector<AttentionHead> heads = alignment_heads(hp);
  double last_speech = 0;
  size_t next = 0, emitted = 0;
  std::vector<DecoderStage::Input> inputs;

  auto refill = [&]() -> Status {
    const int k = static_cast<int>(std::min<size_t>(batch - active.size(), chunks.size() - next));
    if (k <= 0) return Status::Ok();
    std::vector<std::shared_ptr<const EncoderState>> states;
    if (next == 0 && first_state) states.push_back(first_state);
    if (static_cast<int>(states.size()) < k) {
      auto st = encode(next + states.size(), k - static_cast<int>(states.size()));
      if (!st) return st.error();
      states.insert(states.end(), st->begin(), st->end());
    }
    first_state.reset();
    for (int i = 0; i < k; ++i, ++next) {
      WindowRequest r = req;
      if (o.forced_tokens_per_30s > 0) {
        const double secs = static_cast<double>(chunks[next].end - chunks[next].start) / kSampleRate;
        r.forced_tokens = std::max(1, static_cast<int>(std::lround(o.forced_tokens_per_30s * secs / kChunkSeconds)));
      }
      if (next == 0) r.prefix = prefix;
      // A seed per chunk: samples do not depend on the batching.
      auto w = WindowDecode::start(*decoder, states[i], tok, rules, r, o.decoding, o.decoding.seed + next);
      if (!w) return w.error();
      active.push_back(Slot{next, std::move(*w), o.word_timestamps ? states[i] : nullptr});
    }
    return Status::Ok();
  };

  auto emit_ready = [&]() -> Status {
    for (auto it = finished.find(emitted); it != finished.end(); it = finished.find(emitted)) {
      const WindowOutcome& w = it->second.outcome;
      const AudioChunk& c = chunks[emitted];
      std::vector<Segment> segs;
      if (!w.no_speech) segs = chunk_segments(tok, w, c, o.timestamps);
      if (o.word_timestamps && !segs.empty()) {
        const double t0 = now_s();
        const double before = last_speech;
        const int frames = static_cast<int>((c.end - c.start) / kHopLength);
        AMA_TRY(add_word_timestamps(*decoder, it->second.state, tok, sot_sequence, out.language, heads, frames, segs,
                                    last_speech));
        if (o.hallucination_silence_threshold) {
          // No seeking here: a likely hallucination in silence is dropped
          // with what follows it in the chunk.
          const double offset = static_cast<double>(c.start) / kSampleRate;
          HallucinationWindow hw{*o.hallucination_silence_threshold, offset, offset + kChunkSeconds,
                                 static_cast<double>(c.end - c.start) / kSampleRate, before};
          if (auto cut = find_hallucination(segs, hw)) segs.resize(*cut);
          last_speech = last_word_end(segs).value_or(before);
        }
        res.times.decode += now_s() - t0;
      }
      for (Segment& s : segs) out.segments.push_back(std::move(s));
      res.decoded_tokens += static_cast<int>(w.result.tokens.size());
      res.fallbacks += w.attempts - 1;
      res.forks += w.forks;
      finished.erase(it);
      ++emitted;
      if (o.on_progress)
        o.on_progress(std::min(out.duration, static_cast<double>(c.end) / kSampleRate), out.duration);
    }
    return Status::Ok();
  };

  while (next < chunks.size() || !active.empty()) {
    AMA_TRY(refill());
    const double t0 = now_s();
    inputs.clear();
    for (Slot& s : active) {
      const size_t before = inputs.size();
      s.window->inputs(inputs);
      s.n_inputs = inputs.size() - before;
    }
    AMA_TRY(decoder->step(inputs, logits));
    size_t row = 0;
    for (Slot& s : active) {
      AMA_TRY(s.window->on_logits(logits.data() + row * hp.n_vocab));
      row += s.n_inputs;
    }
    for (size_t i = 0; i < active.size();) {
      if (active[i].window->done()) {
        finished.emplace(active[i].chunk, Done{active[i].window->outcome(), std::move(active[i].state)});
        active.erase(active.begin() + i);
      } else {
        ++i;
      }
    }
    res.times.decode += now_s() - t0;
    AMA_TRY(emit_ready());
  }
  res.windows = static_cast<int>(chunks.size());
  return res;
}

}  // namespace ama
