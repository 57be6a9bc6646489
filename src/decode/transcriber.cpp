#include "decode/transcriber.h"

#include <algorithm>
#include <cmath>

#include "decode/hallucination.h"
#include "decode/language_detect.h"
#include "decode/timing.h"
#include "text/languages.h"
#include "engine/cpu_stages.h"
#include "engine/engine.h"

namespace ama {

namespace {

constexpr int kInputStride = 2;             // mel frames per audio position
constexpr double kTimePrecision = 0.02;     // seconds per timestamp token
constexpr double kFramesPerSecond = 100;    // mel frames per second

}  // namespace

Result<LogitRules> logit_rules_for(const Tokenizer& tok, const TranscribeOptions& o) {
  LogitRuleOptions ro;
  ro.timestamps = o.timestamps;
  ro.suppress_tokens = o.suppress_tokens;
  ro.max_initial_timestamp = o.max_initial_timestamp;
  return make_logit_rules(tok, ro);
}

std::string trim_whitespace(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n\r"), e = s.find_last_not_of(" \t\n\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

Result<int> requested_language_token(const Tokenizer& tok, const std::string& user_language, Task task) {
  // Codes and English names, in any case, as openai's --language.
  auto code = language_code_from_user(user_language);
  if (!code) return code.error();
  const std::string& language = *code;
  const bool automatic = language == "auto";
  if (tok.multilingual()) {
    if (automatic) return -1;
    const int t = tok.language_token(language);
    if (t < 0) return make_error("language '" + user_language + "' is not in this model");
    return t;
  }
  if (!automatic && language != "en")
    return make_error("this model is English-only; language '" + language + "' is not available");
  if (task == Task::translate) return make_error("this model is English-only and cannot translate");
  return -1;
}

WindowSegments split_window(const Tokenizer& tok, const std::vector<int>& toks, int seek, int segment_size,
                            bool timestamps) {
  const SpecialTokens& s = tok.special();
  WindowSegments out;
  const double time_offset = static_cast<double>(seek) * kHopLength / kSampleRate;
  auto add = [&](double start, double end, std::vector<int> part) {
    Segment sg;
    sg.start = start;
    sg.end = end;
    sg.seek = seek;
    std::vector<int> text_tokens;
    for (int t : part)
      if (t < s.eot) text_tokens.push_back(t);
    sg.text = tok.decode(text_tokens);
    sg.tokens = std::move(part);
    out.segments.push_back(std::move(sg));
  };
  const size_t n = toks.size();
  auto is_ts = [&](size_t i) { return toks[i] >= s.timestamp_begin; };
  const bool single_timestamp_ending = n >= 2 && !is_ts(n - 2) && is_ts(n - 1);
  std::vector<size_t> slices;  // positions after each pair of consecutive timestamps
  for (size_t i = 1; i < n; ++i)
    if (is_ts(i - 1) && is_ts(i)) slices.push_back(i);

  if (timestamps && !slices.empty()) {
    if (single_timestamp_ending) slices.push_back(n);
    size_t last = 0;
    for (size_t cur : slices) {
      std::vector<int> part(toks.begin() + last, toks.begin() + cur);
      const double start = time_offset + (part.front() - s.timestamp_begin) * kTimePrecision;
      const double end = time_offset + (part.back() - s.timestamp_begin) * kTimePrecision;
      add(start, end, std::move(part));
      last = cur;
    }
    // Seek to the last complete segment's end, so that an unfinished one is
    // decoded again in the next window. A window that would not advance is
    // skipped whole, so the loop always ends.
    if (single_timestamp_ending)
      out.next_seek = seek + segment_size;
    else
      out.next_seek = seek + std::max(1, toks[last - 1] - s.timestamp_begin) * kInputStride;
  } else {
    double duration = static_cast<double>(segment_size) * kHopLength / kSampleRate;
    int last_ts = -1;
    for (int t : toks)
      if (t >= s.timestamp_begin) last_ts = t;
    if (last_ts > s.timestamp_begin) duration = (last_ts - s.timestamp_begin) * kTimePrecision;
    add(time_offset, time_offset + duration, toks);
    out.next_seek = seek + segment_size;
  }
  return out;
}

std::string Transcript::text() const {
  std::string t;
  for (const Segment& s : segments) t += s.text;
  return t;
}

Transcriber::Transcriber(const Engine& engine)
    : model_(engine.model_ptr()),
      encoder_(engine.new_encoder_stage(true)),
      decoder_(engine.new_decoder_stage()),
      mel_(model_->mel_filters, model_->hp.n_mels) {}

Transcriber::Transcriber(std::shared_ptr<const WhisperModel> model, Backend& backend)
    : model_(std::move(model)),
      encoder_(std::make_unique<CpuEncoderStage>(model_, backend, true)),
      decoder_(std::make_unique<CpuDecoderStage>(model_, backend)),
      mel_(model_->mel_filters, model_->hp.n_mels) {}

Transcriber::Transcriber(std::shared_ptr<const WhisperModel> model, std::unique_ptr<EncoderStage> encoder,
                         std::unique_ptr<DecoderStage> decoder)
    : model_(std::move(model)),
      encoder_(std::move(encoder)),
      decoder_(std::move(decoder)),
      mel_(model_->mel_filters, model_->hp.n_mels) {}

Status Transcriber::encode_window(const float* mel, int ld) {
  auto st = encoder_->encode(mel, 1, 0, ld);
  if (!st) return st.error();
  state_ = std::move(st->front());
  return Status::Ok();
}

Result<std::vector<float>> Transcriber::encoder_output() const {
  if (!state_) return make_error("no window has been encoded");
  return encoder_->encoder_output(*state_);
}

Result<DecoderStage::SeqId> Transcriber::fresh_sequence() {
  if (!state_) return make_error("no window has been encoded");
  decoder_->free(seq_);
  auto id = decoder_->add_sequence(state_);
  if (!id) return id;
  seq_ = *id;
  return id;
}

Result<std::vector<LanguageProbability>> Transcriber::detect_language() {
  if (!state_) return make_error("no window has been encoded");
  return ama::detect_language(*decoder_, state_, model_->tokenizer);
}

Result<std::vector<float>> Transcriber::logits_for(const std::vector<int>& tokens) {
  const HParams& hp = model_->hp;
  if (tokens.empty()) return make_error("no tokens given");
  if (static_cast<int>(tokens.size()) > hp.n_text_ctx)
    return make_error(std::to_string(tokens.size()) + " tokens exceed the model's context of " +
                      std::to_string(hp.n_text_ctx));
  for (int t : tokens)
    if (t < 0 || t >= hp.n_vocab)
      return make_error("token " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(hp.n_vocab) +
                        ")");
  auto seq = fresh_sequence();
  if (!seq) return seq.error();
  std::vector<float> logits;
  AMA_TRY(decoder_->step({{*seq, tokens, true}}, logits));
  return logits;
}

Result<WindowOutcome> Transcriber::decode_window(const WindowRequest& request, const LogitRules& rules,
                                                 const DecodingOptions& options, uint64_t seed) {
  if (!state_) return make_error("no window has been encoded");
  decoder_->free(seq_);
  seq_ = -1;
  auto w = WindowDecode::start(*decoder_, state_, model_->tokenizer, rules, request, options, seed);
  if (!w) return w.error();
  std::vector<DecoderStage::Input> inputs;
  std::vector<float> logits;
  while (!(*w)->done()) {
    inputs.clear();
    (*w)->inputs(inputs);
    AMA_TRY(decoder_->step(inputs, logits));
    AMA_TRY((*w)->on_logits(logits.data()));
  }
  return (*w)->outcome();
}

Result<Transcript> Transcriber::transcribe(const std::vector<float>& audio, const TranscribeOptions& o) {
  const Tokenizer& tok = model_->tokenizer;
  const int n_mels = model_->hp.n_mels;
  if (audio.empty()) return make_error("the audio is empty");
  AMA_TRY(validate(o.decoding));
  Transcript out;
  out.duration = static_cast<double>(audio.size()) / kSampleRate;

  auto requested = requested_language_token(tok, o.language, o.task);
  if (!requested) return requested.error();
  int language_token = *requested;
  if (!tok.multilingual()) out.language = "en";
  auto rules = logit_rules_for(tok, o);
  if (!rules) return rules.error();

  // Pass 1: the global max of the log-mel over the whole padded signal.
  const float gmax = mel_.global_max(audio.data(), audio.size());
  const int content_frames = static_cast<int>(audio.size() / kHopLength);
  std::vector<float> window(static_cast<size_t>(n_mels) * kNFramesPerWindow);

  std::vector<int> all_tokens;
  size_t prompt_reset_since = 0;
  if (!o.initial_prompt.empty()) all_tokens = tok.encode(" " + trim_whitespace(o.initial_prompt));
  std::vector<int> prefix;
  if (!trim_whitespace(o.prefix).empty()) prefix = tok.encode(" " + trim_whitespace(o.prefix));

  // Language detection, as openai: on the first 30 s of the padded
  // spectrogram, whose frames past a short clip are the mel of the appended
  // silence (the decoding windows below are zero-padded instead).
  bool first_window_encoded = false;
  if (tok.multilingual() && language_token < 0) {
    const int frames = std::min(kNFramesPerWindow, LogMel::total_frames(audio.size()));
    std::fill(window.begin(), window.end(), 0.0f);
    mel_.raw_frames(audio.data(), audio.size(), 0, frames, window.data(), kNFramesPerWindow);
    LogMel::normalize(window.data(), n_mels, frames, kNFramesPerWindow, gmax);
    AMA_TRY(encode_window(window.data(), kNFramesPerWindow));
    auto langs = detect_language();
    if (!langs) return langs.error();
    out.language = langs->front().code;
    out.language_probs = top_languages(std::move(*langs), 5);
    language_token = tok.language_token(out.language);
    first_window_encoded = content_frames >= kNFramesPerWindow;  // then it is also the first decoding window
  } else if (tok.multilingual()) {
    out.language = tok.language_code(language_token);
  }

  // Word alignment: the window's start tokens and the model's heads.
  const std::vector<int> start_tokens = sot_sequence(tok, language_token, o.task);
  const std::vector<AttentionHead> heads = alignment_heads(*model_);
  double last_speech_timestamp = 0;

  int seek = 0;
  uint64_t window_index = 0;
  while (seek < content_frames) {
    const int segment_size = std::min(kNFramesPerWindow, content_frames - seek);
    if (!(seek == 0 && first_window_encoded)) {
      // openai pads the window with zeros (in normalized units) past the content.
      std::fill(window.begin(), window.end(), 0.0f);
      mel_.raw_frames(audio.data(), audio.size(), seek, seek + segment_size, window.data(), kNFramesPerWindow);
      LogMel::normalize(window.data(), n_mels, segment_size, kNFramesPerWindow, gmax);
      AMA_TRY(encode_window(window.data(), kNFramesPerWindow));
    }

    WindowRequest req;
    req.prompt.assign(all_tokens.begin() + prompt_reset_since, all_tokens.end());
    if (window_index == 0) req.prefix = prefix;
    req.language_token = language_token;
    req.task = o.task;
    req.timestamps = o.timestamps;
    req.sample_len = model_->hp.n_text_ctx / 2;  // 224 for the standard models
    auto res = decode_window(req, *rules, o.decoding, o.decoding.seed + window_index++);
    if (!res) return res.error();
    const WindowOutcome& w = *res;
    const double window_end = static_cast<double>(seek + segment_size) * kHopLength / kSampleRate;

    if (w.no_speech) {
      seek += segment_size;
      if (o.on_progress) o.on_progress(std::min(window_end, out.duration), out.duration);
      continue;
    }

    const int previous_seek = seek;
    WindowSegments ws = split_window(tok, w.result.tokens, seek, segment_size, o.timestamps);
    seek = ws.next_seek;
    if (o.word_timestamps) {
      const std::vector<int>& t = w.result.tokens;
      const size_t n = t.size();
      const bool single_timestamp_ending = n >= 2 && !tok.is_timestamp(t[n - 2]) && tok.is_timestamp(t[n - 1]);
      const double time_offset = static_cast<double>(previous_seek) * kHopLength / kSampleRate;
      const double window_end_time = static_cast<double>(previous_seek + kNFramesPerWindow) * kHopLength / kSampleRate;
      const double last_speech_before = last_speech_timestamp;
      AMA_TRY(add_word_timestamps(*decoder_, state_, tok, start_tokens, out.language, heads, segment_size,
                                  ws.segments, last_speech_timestamp));
      const std::optional<double> word_end = last_word_end(ws.segments);
      if (!single_timestamp_ending && word_end && *word_end > time_offset)
        seek = static_cast<int>(std::lround(*word_end * kFramesPerSecond));
      if (o.hallucination_silence_threshold) {
        const double threshold = *o.hallucination_silence_threshold;
        if (!single_timestamp_ending && word_end && *word_end > time_offset)
          seek = window_end_time - *word_end > threshold ? static_cast<int>(std::lround(*word_end * kFramesPerSecond))
                                                         : previous_seek + segment_size;
        // A likely hallucination first: skip the silence before it.
        const Segment* first = next_words_segment(ws.segments);
        if (first && is_segment_anomaly(first) && first->start - time_offset > threshold) {
          seek = previous_seek + static_cast<int>(std::lround((first->start - time_offset) * kFramesPerSecond));
          last_speech_timestamp = last_speech_before;
          if (o.on_progress) o.on_progress(std::min(static_cast<double>(seek) / kFramesPerSecond, out.duration),
                                           out.duration);
          continue;
        }
        HallucinationWindow hw{threshold, time_offset, window_end_time,
                               static_cast<double>(segment_size) * kHopLength / kSampleRate, last_speech_before};
        double restart = 0;
        if (auto cut = find_hallucination(ws.segments, hw, &restart)) {
          seek = static_cast<int>(std::lround(restart * kFramesPerSecond));
          if (out.duration - ws.segments[*cut].end < threshold) seek = content_frames;
          ws.segments.resize(*cut);
        }
      }
      if (auto end = last_word_end(ws.segments)) last_speech_timestamp = *end;
      else last_speech_timestamp = last_speech_before;
    }
    for (Segment& sg : ws.segments) {
      if (sg.start == sg.end || trim_whitespace(sg.text).empty()) continue;  // openai blanks these
      sg.temperature = w.temperature;
      sg.avg_logprob = w.result.avg_logprob;
      sg.compression_ratio = w.compression_ratio;
      sg.no_speech_prob = w.result.no_speech_prob;
      sg.repetition_cut = w.repetition_cut;
      // A loop that survived every temperature is never fed back as a prompt.
      if (!w.repetition_cut) all_tokens.insert(all_tokens.end(), sg.tokens.begin(), sg.tokens.end());
      sg.end = std::min(sg.end, out.duration);
      sg.start = std::min(sg.start, sg.end);
      out.segments.push_back(std::move(sg));
    }
    // openai resets the prompt after a window that needed a high
    // temperature: its text is unreliable as context.
    if (!o.condition_on_previous_text || w.temperature > 0.5 || w.repetition_cut)
      prompt_reset_since = all_tokens.size();
    if (o.on_progress) o.on_progress(std::min(static_cast<double>(seek) * kHopLength / kSampleRate, out.duration),
                                     out.duration);
  }
  return out;
}

}  // namespace ama
