// The workload mirrors whisper.cpp's bench so that numbers compare side by
// side: the encoder on one 30 s window; 256 single-token decoder steps with
// the KV cache growing from 0; 64 steps of 5 sequences at once (the
// beam-search shape); and 16 prompts of 256 tokens. Every decoder step
// cross-attends to a full 1500-position encoder output.
#include "bench_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "backend/cpu/cpu_features.h"
#include "model/decoder.h"
#include "model/encoder.h"

namespace ama {

namespace {

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

Result<std::string> run_model_bench(std::shared_ptr<const WhisperModel> model, Backend& backend,
                                    const BenchOptions& o) {
  const HParams& hp = model->hp;
  if (o.encode_runs < 1 || o.encode_runs > 1000) return make_error("--runs must be in [1, 1000]");
  if (hp.n_text_ctx < 256) return make_error("the bench needs n_text_ctx >= 256");
  // A fixed pseudo-random mel window in Whisper's normalized range.
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.8f, 1.2f);
  std::vector<float> mel(static_cast<size_t>(hp.n_mels) * kNFramesPerWindow);
  for (auto& v : mel) v = dist(rng);

  Encoder encoder(*model, backend);
  Decoder decoder(*model, backend);
  std::vector<float> enc;
  encoder.run(mel.data(), kNFramesPerWindow, enc);  // warm-up: first-touch of buffers
  std::vector<double> enc_ms;
  for (int r = 0; r < o.encode_runs; ++r) {
    const double t0 = now_ms();
    encoder.run(mel.data(), kNFramesPerWindow, enc);
    enc_ms.push_back(now_ms() - t0);
  }
  // Cross K/V: the first call into fresh buffers (page faults on 18 MB for
  // base), then the median of reruns into the same buffers, which is what
  // the encoder stage does from its second window on (it recycles them).
  CrossKv cross;
  double tc = now_ms();
  decoder.compute_cross(enc.data(), cross);
  const double cross_first_ms = now_ms() - tc;
  std::vector<double> cross_runs;
  for (int r = 0; r < o.encode_runs; ++r) {
    tc = now_ms();
    decoder.compute_cross(enc.data(), cross);
    cross_runs.push_back(now_ms() - tc);
  }
  const double cross_ms = median(cross_runs);

  std::vector<float> logits;
  const int tokens[5] = {50257 % hp.n_vocab, 440, 1029, 406, 11};
  // 256 single-token steps, cache growing from 0.
  KvCache cache = decoder.new_cache();
  double t0 = now_ms();
  for (int i = 0; i < 256; ++i) decoder.forward(cache, cross, &tokens[i % 5], 1, false, logits);
  const double decode_ms = (now_ms() - t0) / 256;

  // 64 steps of 5 sequences.
  std::vector<KvCache> caches;
  for (int b = 0; b < 5; ++b) caches.push_back(decoder.new_cache());
  std::vector<KvCache*> ptrs;
  for (auto& c : caches) ptrs.push_back(&c);
  t0 = now_ms();
  for (int i = 0; i < 64; ++i) decoder.forward_batch(ptrs, cross, tokens, logits);
  const double batch5_ms = (now_ms() - t0) / (64 * 5);

  // 64 steps of 16 sequences over the same window (batched streams): the
  // weights are read once per step for 16 tokens, so this shows the GEMMs'
  // compute rate rather than memory bandwidth.
  int tokens16[16];
  for (int b = 0; b < 16; ++b) tokens16[b] = tokens[b % 5];
  std::vector<KvCache> caches16;
  for (int b = 0; b < 16; ++b) caches16.push_back(decoder.new_cache());
  std::vector<KvCache*> ptrs16;
  for (auto& c : caches16) ptrs16.push_back(&c);
  t0 = now_ms();
  for (int i = 0; i < 64; ++i) decoder.forward_batch(ptrs16, cross, tokens16, logits);
  const double batch16_ms = (now_ms() - t0) / (64 * 16);

  // 16 prompts of 256 tokens.
  std::vector<int> prompt(256);
  for (int i = 0; i < 256; ++i) prompt[i] = (i * 7919) % 50000;
  t0 = now_ms();
  for (int r = 0; r < 16; ++r) {
    cache.reset();
    decoder.forward(cache, cross, prompt.data(), 256, false, logits);
  }
  const double prompt_ms = (now_ms() - t0) / (16 * 256);

  // A beam fork: copying a sequence's KV cache at 128 positions (what
  // DecoderStage::fork does for each extra child of a beam).
  KvCache child = decoder.new_cache();
  cache.n_past = 128;
  t0 = now_ms();
  for (int r = 0; r < 64; ++r) decoder.copy_cache(cache, child);
  const double fork_ms = (now_ms() - t0) / 64;

  nlohmann::json j;
  j["model"] = model->path;
  j["arch"] = arch_name(hp);
  j["threads"] = backend.n_threads();
  j["compute"] = compute_type_name(backend.compute_type());
  j["isa"] = isa_name(selected_isa().isa);
  j["backend"] = backend.describe();
  j["encode_ms"] = median(enc_ms);
  j["encode_ms_runs"] = enc_ms;
  j["cross_kv_ms"] = cross_ms;
  j["cross_kv_first_ms"] = cross_first_ms;
  j["decode_ms_per_token"] = decode_ms;
  j["decode_batch5_ms_per_token"] = batch5_ms;
  j["decode_batch16_ms_per_token"] = batch16_ms;
  j["prompt_ms_per_token"] = prompt_ms;
  j["fork_128_ms"] = fork_ms;
  if (o.json) return j.dump() + "\n";
  char buf[1024];  // the backend description alone is ~300 characters
  std::snprintf(buf, sizeof buf,
                "model %s (%s), %s\nencode      %9.1f ms (median of %d)\ncross k/v   %9.1f ms (median; %.1f ms into fresh buffers)\n"
                "decode      %9.2f ms/token (batch 1, 256 steps)\ndecode x5   %9.2f ms/token (64 steps of 5)\n"
                "decode x16  %9.2f ms/token (64 steps of 16)\nprompt      %9.3f ms/token (16 x 256)\n"
                "fork        %9.3f ms (KV copy at 128 positions)\n",
                model->path.c_str(), arch_name(hp).c_str(), backend.describe().c_str(), median(enc_ms), o.encode_runs,
                cross_ms, cross_first_ms, decode_ms, batch5_ms, batch16_ms, prompt_ms, fork_ms);
  return std::string(buf);
}

}  // namespace ama
