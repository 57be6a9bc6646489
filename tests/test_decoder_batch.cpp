// The decoder's batched step and concurrent streams, on a small random
// model (64 state, 2 heads, 2 text layers, the real vocabulary):
//  - Decoder::forward_batch, one token for each of several sequences at
//    different positions, against Decoder::forward on each sequence alone;
//  - several Transcribers sharing one WhisperModel, run at the same time
//    from several threads (on one shared backend, and on a backend each),
//    against the same transcriptions run one after another.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "audio/audio_source.h"
#include "audio/resample.h"
#include "backend/cpu/cpu_backend.h"
#include "decode/transcriber.h"
#include "model/decoder.h"
#include "model/hparams.h"
#include "model/test_model.h"
#include "model/whisper_model.h"
#include "test_util.h"

namespace ama {
namespace {

// A random model file in the test temp dir, deleted with this object.
struct TempModel {
  std::string path;
  explicit TempModel(std::string p) : path(std::move(p)) {}
  ~TempModel() { std::remove(path.c_str()); }
  TempModel(const TempModel&) = delete;
  TempModel& operator=(const TempModel&) = delete;
};

// tiny's shape cut down to 64 state, 2 heads, 1 audio layer and 2 text
// layers (two, so that a cache's per-layer offsets are exercised); the real
// 51865-token vocabulary and mel filters from the shared test vocabulary.
Status make_small_model(const std::string& path, uint64_t seed) {
  auto hp = standard_hparams("tiny");
  if (!hp) return hp.error();
  TestModelOptions o;
  o.hp = *hp;
  o.hp.n_audio_state = o.hp.n_text_state = 64;
  o.hp.n_audio_head = o.hp.n_text_head = 2;
  o.hp.n_audio_layer = 1;
  o.hp.n_text_layer = 2;
  o.seed = seed;
  o.vocab_source = test::shared("models/whisper-vocab/for-tests-ggml-base.bin");
  o.output = path;
  return write_test_model(o);
}

std::unique_ptr<Backend> cpu_backend(ComputeType ct, int threads) {
  CpuBackendOptions o;
  o.compute = ct;
  o.n_threads = threads;
  auto b = make_cpu_backend(o);
  EXPECT_TRUE(b.ok()) << b.message();
  return b.ok() ? std::move(b.value()) : nullptr;
}

// The first element where two float arrays differ in bits (NaN-safe), or -1.
long first_difference(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, sizeof(float)) != 0) return static_cast<long>(i);
  return -1;
}

class DecoderBatch : public ::testing::TestWithParam<ComputeType> {};

// forward_batch must give each sequence exactly the logits (and cache rows)
// that forward gives it alone, bit for bit, at every compute type: every
// op of the step is row-independent. The GEMM tiles compute each output as
// one multiply-add chain over k in order whatever the number of rows
// (kernels.h), and a batch under 16 rows uses the same kernel table as one
// row (AMX would switch tables at 16, so the batch stays below that); bf16
// and int8 activations are rounded and quantized per row; layer norm is per
// row; self-attention runs per sequence and cross-attention per query row
// (fewer than 32 queries never take the flash path); the work split does
// not depend on timing. So the bound is zero, not a tolerance.
TEST_P(DecoderBatch, ForwardBatchEqualsForwardPerSequence) {
  const ComputeType ct = GetParam();
  TempModel tm(::testing::TempDir() + "/decoder_batch_" + compute_type_name(ct) + ".bin");
  auto st = make_small_model(tm.path, 41);
  ASSERT_TRUE(st.ok()) << st.message();
  auto be = cpu_backend(ct, 2);
  ASSERT_TRUE(be);
  auto model = load_model(tm.path, *be);
  ASSERT_TRUE(model.ok()) << model.message();
  const HParams& hp = (*model)->hp;
  const int V = hp.n_vocab;

  Decoder dec(**model, *be);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> encoder_out(static_cast<size_t>(hp.n_audio_ctx) * hp.n_audio_state);
  for (float& x : encoder_out) x = nd(rng);
  CrossKv cross;
  dec.compute_cross(encoder_out.data(), cross);

  // Five sequences at different positions, one of them two short of the
  // context so that its second batched token takes the last position.
  const std::vector<int> prompt_lengths = {1, 2, 5, 13, hp.n_text_ctx - 2};
  const size_t S = prompt_lengths.size();
  std::uniform_int_distribution<int> token(0, 50256);  // text tokens
  std::vector<KvCache> batched, alone;
  std::vector<float> logits;
  for (size_t s = 0; s < S; ++s) {
    std::vector<int> prompt(prompt_lengths[s]);
    for (int& t : prompt) t = token(rng);
    batched.push_back(dec.new_cache());
    ASSERT_TRUE(dec.forward(batched.back(), cross, prompt.data(), prompt_lengths[s], false, logits));
    alone.push_back(batched.back());  // the same state, advanced one sequence at a time below
  }

  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    std::vector<int> next(S);
    for (int& t : next) t = token(rng);
    std::vector<KvCache*> caches;
    for (KvCache& c : batched) caches.push_back(&c);
    std::vector<float> batch_logits;
    ASSERT_TRUE(dec.forward_batch(caches, cross, next.data(), batch_logits));
    ASSERT_EQ(batch_logits.size(), S * V);
    for (size_t s = 0; s < S; ++s) {
      SCOPED_TRACE("sequence " + std::to_string(s) + " at position " + std::to_string(alone[s].n_past));
      std::vector<float> one;
      ASSERT_TRUE(dec.forward(alone[s], cross, &next[s], 1, false, one));
      ASSERT_EQ(one.size(), static_cast<size_t>(V));
      const long at = first_difference(batch_logits.data() + s * V, one.data(), V);
      EXPECT_EQ(at, -1) << "logit " << at << ": batched " << batch_logits[s * V + (at < 0 ? 0 : at)] << ", alone "
                        << one[at < 0 ? 0 : at];
      EXPECT_EQ(batched[s].n_past, alone[s].n_past);
      // The new K/V rows went to the same place with the same values.
      EXPECT_TRUE(batched[s].k == alone[s].k && batched[s].v == alone[s].v) << "f32 caches differ";
      EXPECT_TRUE(batched[s].k16 == alone[s].k16 && batched[s].v16 == alone[s].v16) << "bf16 caches differ";
    }
  }
  // One more step would overflow the longest sequence: the batch refuses it
  // whole and leaves every cache as it was.
  std::vector<KvCache*> caches;
  for (KvCache& c : batched) caches.push_back(&c);
  std::vector<int> next(S, 220);
  std::vector<float> batch_logits;
  EXPECT_FALSE(dec.forward_batch(caches, cross, next.data(), batch_logits));
  for (size_t s = 0; s < S; ++s) EXPECT_EQ(batched[s].n_past, alone[s].n_past) << "sequence " << s;
}

INSTANTIATE_TEST_SUITE_P(Compute, DecoderBatch,
                         ::testing::Values(ComputeType::f32, ComputeType::bf16, ComputeType::int8),
                         [](const auto& info) { return std::string(compute_type_name(info.param)); });

// Segments must match exactly: the arithmetic of a stream depends neither on
// the thread count nor on what other streams do.
TranscribeOptions greedy_options() {
  TranscribeOptions o;
  o.decoding = DecodingOptions::greedy();
  return o;
}

void expect_same_transcript(const Transcript& got, const Transcript& want, const std::string& label) {
  EXPECT_EQ(got.language, want.language) << label;
  ASSERT_EQ(got.segments.size(), want.segments.size()) << label << ": got '" << got.text() << "', want '"
                                                        << want.text() << "'";
  for (size_t i = 0; i < want.segments.size(); ++i) {
    const Segment &g = got.segments[i], &w = want.segments[i];
    EXPECT_EQ(g.tokens, w.tokens) << label << ", segment " << i;
    EXPECT_EQ(g.text, w.text) << label << ", segment " << i;
    EXPECT_EQ(g.start, w.start) << label << ", segment " << i;
    EXPECT_EQ(g.end, w.end) << label << ", segment " << i;
    EXPECT_EQ(g.avg_logprob, w.avg_logprob) << label << ", segment " << i;
    EXPECT_EQ(g.no_speech_prob, w.no_speech_prob) << label << ", segment " << i;
  }
}

// Several streams over one WhisperModel at the same time, each on its own
// thread with its own Transcriber (its own KV caches and scratch): first
// all on one backend (README: streams that share a backend take turns on its
// thread pool; the backend's per-call scratch is per calling thread), then
// each on a backend of its own. The inputs differ per stream (audio,
// language, timestamps), so a stream that read another's state would show.
TEST(ConcurrentStreams, SharedModelTranscriptsEqualSequentialOnes) {
  TempModel tm(::testing::TempDir() + "/decoder_batch_streams.bin");
  auto st = make_small_model(tm.path, 42);
  ASSERT_TRUE(st.ok()) << st.message();
  const ComputeType ct = default_compute_type();
  auto shared_backend = cpu_backend(ct, 2);
  ASSERT_TRUE(shared_backend);
  auto model = load_model(tm.path, *shared_backend);
  ASSERT_TRUE(model.ok()) << model.message();

  auto jfk = load_audio(test::shared("audio/jfk.wav"));
  ASSERT_TRUE(jfk.ok()) << jfk.message();
  struct Stream {
    std::vector<float> audio;
    TranscribeOptions options = greedy_options();
  };
  std::vector<Stream> streams(3);
  streams[0].audio = *jfk;
  streams[0].options.language = "en";
  streams[1].audio.assign(jfk->begin() + jfk->size() / 3, jfk->end());  // a different stretch of speech
  streams[1].options.language = "en";
  streams[1].options.timestamps = false;
  streams[2].audio.assign(jfk->rbegin(), jfk->rend());  // reversed: other sounds, and language detection
  const size_t N = streams.size();

  std::vector<Transcript> sequential(N);
  for (size_t i = 0; i < N; ++i) {
    Transcriber t(*model, *shared_backend);
    auto r = t.transcribe(streams[i].audio, streams[i].options);
    ASSERT_TRUE(r.ok()) << "stream " << i << ": " << r.message();
    sequential[i] = std::move(*r);
    // The comparison below means something only if there is text to compare.
    size_t tokens = 0;
    for (const Segment& s : sequential[i].segments) tokens += s.tokens.size();
    ASSERT_GT(tokens, 0u) << "stream " << i << " transcribed to nothing; the concurrency check would be empty";
    std::printf("[streams] stream %zu: language %s, %zu segments, %zu tokens\n", i, sequential[i].language.c_str(),
                sequential[i].segments.size(), tokens);
  }
  EXPECT_NE(sequential[0].text(), sequential[1].text());  // the streams really are different work

  for (bool own_backends : {false, true}) {
    SCOPED_TRACE(own_backends ? "a backend per stream" : "one shared backend");
    std::vector<std::unique_ptr<Backend>> backends;
    for (size_t i = 0; i < N && own_backends; ++i) {
      backends.push_back(cpu_backend(ct, 2));
      ASSERT_TRUE(backends.back());
    }
    std::vector<Result<Transcript>> results(N, make_error("not run"));
    std::atomic<size_t> ready{0};
    std::vector<std::thread> threads;
    for (size_t i = 0; i < N; ++i)
      threads.emplace_back([&, i] {
        Transcriber t(*model, own_backends ? *backends[i] : *shared_backend);
        // Start together, so that the streams overlap from their first call.
        ready.fetch_add(1);
        while (ready.load() < N) std::this_thread::yield();
        results[i] = t.transcribe(streams[i].audio, streams[i].options);
      });
    for (auto& th : threads) th.join();
    for (size_t i = 0; i < N; ++i) {
      ASSERT_TRUE(results[i].ok()) << "stream " << i << ": " << results[i].message();
      expect_same_transcript(*results[i], sequential[i], "stream " + std::to_string(i));
    }
  }
}

}  // namespace
}  // namespace ama
