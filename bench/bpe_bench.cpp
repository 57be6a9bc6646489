// Google Benchmark for Tokenizer::encode on long inputs (the byte-pair merge
// is O(n log n) per piece). Reads openai/whisper's gpt2.tiktoken from
// $AMA_SHARED_DIR/whisper-assets (default ../shared, as CMake's
// AMA_SHARED_DIR); the benchmarks are skipped when it is missing.
//
//   build/amanuensis_bench --benchmark_filter=bpe
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include "text/tokenizer.h"

namespace {

using namespace ama;

const Tokenizer* gpt2() {
  static const std::unique_ptr<Tokenizer> tok = []() -> std::unique_ptr<Tokenizer> {
    const char* dir = std::getenv("AMA_SHARED_DIR");
    auto result = Tokenizer::load_tiktoken(
        std::string(dir ? dir : "../shared") + "/whisper-assets/gpt2.tiktoken", 51864);
    if (!result.ok()) return nullptr;
    return std::make_unique<Tokenizer>(std::move(result).value());
  }();
  return tok.get();
}

void run(benchmark::State& state, const std::string& text) {
  const Tokenizer* tok = gpt2();
  if (!tok) {
    state.SkipWithError("gpt2.tiktoken not found (set AMA_SHARED_DIR)");
    return;
  }
  size_t tokens = 0;
  for (auto _ : state) {
    const std::vector<int> ids = tok->encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
}

// One piece of n repeated letters: the worst case of a quadratic merge.
void bpe_repeated_char(benchmark::State& state) {
  run(state, std::string(static_cast<size_t>(state.range(0)), 'a'));
}
BENCHMARK(bpe_repeated_char)->Arg(1 << 16)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

// One piece of n random lowercase letters (no spaces).
void bpe_random_letters(benchmark::State& state) {
  std::string text(static_cast<size_t>(state.range(0)), 'a');
  std::mt19937 rng(5);
  for (char& c : text) c = static_cast<char>('a' + rng() % 26);
  run(state, text);
}
BENCHMARK(bpe_random_letters)->Arg(100000)->Unit(benchmark::kMillisecond);

// n bytes of random words, spaces and punctuation: many short pieces.
void bpe_random_words(benchmark::State& state) {
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyz     .,'";
  std::string text(static_cast<size_t>(state.range(0)), 'a');
  std::mt19937 rng(5);
  for (char& c : text) c = kChars[rng() % (sizeof kChars - 1)];
  run(state, text);
}
BENCHMARK(bpe_random_words)->Arg(100000)->Unit(benchmark::kMillisecond);

}  // namespace
