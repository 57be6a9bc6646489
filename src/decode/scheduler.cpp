#include "decode/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "audio/mel.h"
#include "core/clock.h"
#include "decode/fallback.h"
#include "decode/hallucination.h"
#include "decode/language_detect.h"
#include "decode/timing.h"
#include "engine/engine.h"

namespace ama {

// One file being decoded. Set up by run(); afterwards only the worker
// touches it, except `finished` and `error`, which are guarded by mu_.
struct Scheduler::Job {
  PreparedAudio audio;
  PipelineOptions opt;
  JobEvents events;
  const std::atomic<bool>* cancel = nullptr;

  LogitRules rules;
  WindowRequest req;
  std::vector<int> prefix;
  int language_token = -1;
  std::vector<int> sot_sequence;
  std::vector<AttentionHead> heads;

  size_t next = 0;     // the next chunk to admit
  size_t emitted = 0;  // chunks whose segments are out
  struct Done {
    WindowOutcome outcome;
    std::shared_ptr<const EncoderState> state;  // kept for word alignment
  };
  std::map<size_t, Done> done_chunks;
  double last_speech = 0;
  int windows_in_flight = 0;
  PipelineResult res;

  bool finished = false;  // guarded by mu_
  std::string error;      // guarded by mu_; non-empty: failed
};

Result<std::unique_ptr<Scheduler>> Scheduler::create(const Engine& engine, const SchedulerOptions& options) {
  const int batch = options.max_batch == 0 ? default_batch_size() : options.max_batch;
  if (batch < 1 || batch > 256) return make_error("the batch size " + std::to_string(batch) + " is out of range [1, 256]");
  return std::unique_ptr<Scheduler>(new Scheduler(engine, batch));
}

Scheduler::Scheduler(const Engine& engine, int max_batch) : engine_(engine), max_batch_(max_batch) {
  stats_.max_batch = max_batch;
  thread_ = std::thread([this] { worker(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

Scheduler::Stats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::fail_job(Job& job, const std::string& message) {
  // Called by the worker with mu_ not held.
  std::lock_guard<std::mutex> lock(mu_);
  if (job.finished) return;
  job.error = message;
  job.finished = true;
  wake_.notify_all();
}

Result<PipelineResult> Scheduler::run(PreparedAudio audio, const PipelineOptions& o, const JobEvents& events,
                                      const std::atomic<bool>* cancel) {
  const WhisperModel& model = engine_.model();
  const Tokenizer& tok = model.tokenizer;
  AMA_TRY(check_options(model, o));
  auto job = std::make_shared<Job>();
  job->opt = o;
  job->events = events;
  job->cancel = cancel;
  PipelineResult& res = job->res;
  res.times.decode_audio = audio.times.decode_audio;
  res.times.vad = audio.times.vad;
  res.transcript.duration = audio.duration;
  job->audio = std::move(audio);

  auto requested = requested_language_token(tok, o.language, o.task);
  if (!requested) return requested.error();
  job->language_token = *requested;
  Transcript& out = res.transcript;
  if (!tok.multilingual()) out.language = "en";
  else if (job->language_token >= 0) out.language = tok.language_code(job->language_token);
  auto rules = logit_rules_for(tok, o);
  if (!rules) return rules.error();
  job->rules = std::move(*rules);
  job->req.task = o.task;
  job->req.timestamps = o.timestamps;
  job->req.sample_len = model.hp.n_text_ctx / 2;
  if (!trim_whitespace(o.initial_prompt).empty())
    job->req.prompt = tok.encode(" " + trim_whitespace(o.initial_prompt));
  if (!trim_whitespace(o.prefix).empty()) job->prefix = tok.encode(" " + trim_whitespace(o.prefix));
  job->heads = alignment_heads(model);

  if (job->audio.chunks.empty()) {
    if (out.language.empty()) out.language = "en";  // nothing to detect it from
    if (events.on_progress) events.on_progress(out.duration, out.duration);
    return std::move(job->res);
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (stop_) return make_error("the scheduler is shutting down");
  jobs_.push_back(job);
  wake_.notify_all();
  wake_.wait(lock, [&] { return job->finished; });
  jobs_.erase(std::find(jobs_.begin(), jobs_.end(), job));
  stats_.jobs = static_cast<int>(jobs_.size());
  if (!job->error.empty()) return make_error(job->error);
  res.windows = static_cast<int>(job->audio.chunks.size());
  return std::move(job->res);
}

void Scheduler::worker() {
  const WhisperModel& model = engine_.model();
  const Tokenizer& tok = model.tokenizer;
  const HParams& hp = model.hp;
  auto encoder = engine_.new_encoder_stage();
  auto decoder = engine_.new_decoder_stage();
  LogMel mel(model.mel_filters, hp.n_mels);
  const size_t window = static_cast<size_t>(hp.n_mels) * kNFramesPerWindow;
  std::vector<float> mels, audio, logits;
  std::vector<DecoderStage::Input> inputs;

  struct Slot {
    std::shared_ptr<Job> job;
    size_t chunk;
    std::unique_ptr<WindowDecode> window;
    std::shared_ptr<const EncoderState> state;
    size_t n_inputs = 0;
  };
  std::vector<Slot> active;

  // Frees a job's windows (their sequences) and fails it.
  auto drop_job = [&](const std::shared_ptr<Job>& job, const std::string& message) {
    active.erase(std::remove_if(active.begin(), active.end(), [&](const Slot& s) { return s.job == job; }),
                 active.end());
    fail_job(*job, message);
  };

  // The segments of a job's chunks that are complete and next in time.
  auto emit_ready = [&](Job& job) -> Status {
    Transcript& out = job.res.transcript;
    for (auto it = job.done_chunks.find(job.emitted); it != job.done_chunks.end();
         it = job.done_chunks.find(job.emitted)) {
      const WindowOutcome& w = it->second.outcome;
      const AudioChunk& c = job.audio.chunks[job.emitted];
      std::vector<Segment> segs;
      if (!w.no_speech) segs = chunk_segments(tok, w, c, job.opt.timestamps);
      if (job.opt.word_timestamps && !segs.empty()) {
        const double t0 = now_seconds();
        const double before = job.last_speech;
        const int frames = static_cast<int>((c.end - c.start) / kHopLength);
        AMA_TRY(add_word_timestamps(*decoder, it->second.state, tok, job.sot_sequence, out.language, job.heads, frames,
                                    segs, job.last_speech));
        if (job.opt.hallucination_silence_threshold) {
          // No seeking here: a likely hallucination in silence is dropped
          // with what follows it in the chunk.
          const double offset = static_cast<double>(c.start) / kSampleRate;
          HallucinationWindow hw{*job.opt.hallucination_silence_threshold, offset, offset + kChunkSeconds,
                                 static_cast<double>(c.end - c.start) / kSampleRate, before};
          if (auto cut = find_hallucination(segs, hw)) segs.resize(*cut);
          job.last_speech = last_word_end(segs).value_or(before);
        }
        job.res.times.decode += now_seconds() - t0;
      }
      for (Segment& s : segs) {
        if (job.events.on_segment) job.events.on_segment(s);
        out.segments.push_back(std::move(s));
      }
      job.res.decoded_tokens += static_cast<int>(w.result.tokens.size());
      job.res.fallbacks += w.attempts - 1;
      job.res.forks += w.forks;
      job.done_chunks.erase(it);
      ++job.emitted;
      if (job.events.on_progress)
        job.events.on_progress(std::min(out.duration, static_cast<double>(c.end) / kSampleRate), out.duration);
    }
    return Status::Ok();
  };

  // Log-mel of a chunk, WhisperX style: zero-padded to 30 s and normalized
  // by its own maximum.
  auto chunk_mel = [&](const Job& job, size_t chunk, float* m) -> Status {
    const AudioChunk& c = job.audio.chunks[chunk];
    audio.resize(c.end - c.start);
    AMA_TRY(job.audio.samples->read(c.start, audio.size(), audio.data()));
    // Two fixed halves of frames, the second on a helper thread: 27 ms a
    // window on one core of the Zen 4 with the first (recursive) f64 FFT, so
    // a 10-minute file's 21 windows spent ~0.3 s instead of ~0.6 s here;
    // with the Stockham FFT 6.6-10.8 ms on one Zen 5 core, and this stage
    // 0.13-0.16 s for those 21 windows (`bench --e2e`). Frames are computed
    // in pairs from an even start, so the split never changes a value.
    constexpr int kHalf = kNFramesPerWindow / 2;
    std::thread second([&] { mel.raw_frames(audio.data(), audio.size(), kHalf, kNFramesPerWindow, m + kHalf, kNFramesPerWindow); });
    mel.raw_frames(audio.data(), audio.size(), 0, kHalf, m, kNFramesPerWindow);
    second.join();
    const float gmax = *std::max_element(m, m + window);
    LogMel::normalize(m, hp.n_mels, kNFramesPerWindow, kNFramesPerWindow, gmax);
    return Status::Ok();
  };

  for (;;) {
    // 1. Which jobs are alive; admit their chunks round-robin (one chunk
    // per job in turn, so a long file does not hold back a short one).
    std::vector<std::pair<std::shared_ptr<Job>, size_t>> admitted;
    std::vector<std::shared_ptr<Job>> cancelled;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto pending = [&] {
        for (const auto& j : jobs_)
          if (!j->finished && j->next < j->audio.chunks.size()) return true;
        return false;
      };
      auto any_cancelled = [&] {
        for (const auto& j : jobs_)
          if (!j->finished && j->cancel && j->cancel->load()) return true;
        return false;
      };
      wake_.wait(lock, [&] { return stop_ || !active.empty() || pending() || any_cancelled(); });
      if (stop_) {
        for (const auto& j : jobs_)
          if (!j->finished) {
            j->error = "the scheduler was stopped";
            j->finished = true;
          }
        wake_.notify_all();
        return;
      }
      for (const auto& j : jobs_)
        if (!j->finished && j->cancel && j->cancel->load()) cancelled.push_back(j);
      int free_slots = max_batch_ - static_cast<int>(active.size());
      for (bool any = true; any && free_slots > 0;) {
        any = false;
        for (const auto& j : jobs_) {
          if (free_slots == 0) break;
          if (j->finished || (j->cancel && j->cancel->load()) || j->next >= j->audio.chunks.size()) continue;
          admitted.emplace_back(j, j->next++);
          ++j->windows_in_flight;
          --free_slots;
          any = true;
        }
      }
      int queued = 0;
      for (const auto& j : jobs_)
        if (!j->finished) queued += static_cast<int>(j->audio.chunks.size() - j->next);
      stats_.queued_windows = queued;
      stats_.jobs = static_cast<int>(jobs_.size());
      stats_.windows = static_cast<int>(active.size() + admitted.size());
      if (stats_.windows == 0) stats_.sequences = 0;
    }
    for (const auto& j : cancelled) drop_job(j, "cancelled");

    // 2. Encode the admitted chunks together; detect languages; start windows.
    if (!admitted.empty()) {
      const double t0 = now_seconds();
      mels.assign(window * admitted.size(), 0.0f);
      std::vector<std::shared_ptr<Job>> bad;
      std::vector<std::string> bad_message;
      for (size_t i = 0; i < admitted.size(); ++i)
        if (Status st = chunk_mel(*admitted[i].first, admitted[i].second, mels.data() + window * i); !st) {
          bad.push_back(admitted[i].first);
          bad_message.push_back(st.message());
        }
      const double t1 = now_seconds();
      auto states = encoder->encode(mels.data(), static_cast<int>(admitted.size()), window, kNFramesPerWindow);
      const double t2 = now_seconds();
      if (!states) {
        for (auto& [j, c] : admitted) drop_job(j, "encoding failed: " + states.message());
        continue;
      }
      for (auto& [j, c] : admitted) {
        j->res.times.mel += (t1 - t0) / admitted.size();
        j->res.times.encode += (t2 - t1) / admitted.size();
      }
      for (size_t i = 0; i < bad.size(); ++i) drop_job(bad[i], bad_message[i]);
      for (size_t i = 0; i < admitted.size(); ++i) {
        const std::shared_ptr<Job>& job = admitted[i].first;
        const size_t chunk = admitted[i].second;
        if (std::find(bad.begin(), bad.end(), job) != bad.end()) continue;
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (job->finished) continue;
        }
        if (chunk == 0 && job->language_token < 0 && tok.multilingual()) {
          // The language of the first 30 s of speech.
          const double t3 = now_seconds();
          auto langs = detect_language(*decoder, (*states)[i], tok);
          if (!langs) {
            drop_job(job, langs.message());
            continue;
          }
          Transcript& out = job->res.transcript;
          out.language = langs->front().code;
          job->language_token = tok.language_token(out.language);
          out.language_probs = top_languages(std::move(*langs), 5);
          job->res.times.decode += now_seconds() - t3;
        }
        if (job->sot_sequence.empty()) {
          job->req.language_token = job->language_token;
          job->sot_sequence = sot_sequence(tok, job->language_token, job->opt.task);
        }
        WindowRequest r = job->req;
        if (job->opt.forced_tokens_per_30s > 0) {
          const AudioChunk& c = job->audio.chunks[chunk];
          const double secs = static_cast<double>(c.end - c.start) / kSampleRate;
          r.forced_tokens =
              std::max(1, static_cast<int>(std::lround(job->opt.forced_tokens_per_30s * secs / kChunkSeconds)));
        }
        if (chunk == 0) r.prefix = job->prefix;
        // A seed per chunk: samples do not depend on the batching.
        auto w = WindowDecode::start(*decoder, (*states)[i], tok, job->rules, r, job->opt.decoding,
                                     job->opt.decoding.seed + chunk);
        if (!w) {
          drop_job(job, w.message());
          continue;
        }
        active.push_back(Slot{job, chunk, std::move(*w), job->opt.word_timestamps ? (*states)[i] : nullptr});
      }
      std::lock_guard<std::mutex> lock(mu_);
      stats_.busy_seconds += now_seconds() - t0;
    }
    if (active.empty()) continue;

    // 3. One decoder step for every window in flight.
    const double t0 = now_seconds();
    inputs.clear();
    for (Slot& s : active) {
      const size_t before = inputs.size();
      s.window->inputs(inputs);
      s.n_inputs = inputs.size() - before;
    }
    if (Status st = decoder->step(inputs, logits); !st) {
      std::vector<std::shared_ptr<Job>> jobs;
      for (const Slot& s : active) jobs.push_back(s.job);
      for (const auto& j : jobs) drop_job(j, "decoding failed: " + st.message());
      continue;
    }
    size_t row = 0;
    std::vector<std::pair<std::shared_ptr<Job>, std::string>> failed;
    for (Slot& s : active) {
      if (Status st = s.window->on_logits(logits.data() + row * hp.n_vocab); !st)
        failed.emplace_back(s.job, st.message());
      row += s.n_inputs;
    }
    const double step_s = now_seconds() - t0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.windows = static_cast<int>(active.size());
      stats_.sequences = static_cast<int>(inputs.size());
      ++stats_.steps;
      stats_.busy_seconds += step_s;
    }
    // Each window's share of the step's time goes to its file.
    for (Slot& s : active) s.job->res.times.decode += step_s * s.n_inputs / std::max<size_t>(1, inputs.size());
    for (auto& [j, m] : failed) drop_job(j, m);

    // 4. Finished windows: their results go to their files, in time order.
    std::vector<std::shared_ptr<Job>> touched;
    for (size_t i = 0; i < active.size();) {
      if (active[i].window->done()) {
        Job& job = *active[i].job;
        job.done_chunks.emplace(active[i].chunk, Job::Done{active[i].window->outcome(), std::move(active[i].state)});
        --job.windows_in_flight;
        touched.push_back(active[i].job);
        active.erase(active.begin() + i);
      } else {
        ++i;
      }
    }
    for (const auto& job : touched) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (job->finished) continue;
      }
      if (Status st = emit_ready(*job); !st) {
        drop_job(job, st.message());
        continue;
      }
      if (job->emitted == job->audio.chunks.size()) {
        // The rest after the last chunk is silence: the whole file is done.
        if (job->events.on_progress) job->events.on_progress(job->res.transcript.duration, job->res.transcript.duration);
        std::lock_guard<std::mutex> lock(mu_);
        job->finished = true;
        wake_.notify_all();
      }
    }
  }
}

}  // namespace ama
