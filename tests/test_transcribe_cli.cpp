// `amanuensis transcribe` end to end: every output format, the decoding
// strategies and guards from the command line, word timestamps, languages,
// bad options, and the progress bar as a person sees it on a terminal.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "test_util.h"

namespace ama {
namespace {

std::string cli() { return AMA_CLI_PATH; }
std::string model() { return test::shared("oracle/micro/model.bin"); }
std::string jfk() { return test::shared("audio/jfk.wav"); }
std::string out_path(const std::string& name) {
  return ::testing::TempDir() + "/cli_" + name + "_" + std::to_string(getpid());
}
std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
// One greedy pass: fast, for tests of other things.
const char* kFast = " --beam-size 1 --temperature-increment-on-fallback none";

test::CommandResult transcribe(const std::string& args) {
  return test::run_command(cli() + " transcribe -m " + model() + " " + args);
}

TEST(TranscribeCli, AllFormatsWithWordsInBothModes) {
  for (const std::string mode : {"batched", "sequential"}) {
    SCOPED_TRACE(mode);
    const std::string out = out_path("all_" + mode);
    auto r = transcribe(jfk() + " --mode " + mode + " --word-timestamps -f all -o " + out + kFast);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* ext : {"txt", "srt", "vtt", "tsv", "json", "verbose.json"})
      EXPECT_FALSE(slurp(out + "." + ext).empty()) << ext;
    auto v = nlohmann::json::parse(slurp(out + ".verbose.json"));
    for (const char* k : {"task", "language", "duration", "text", "segments", "words"}) EXPECT_TRUE(v.contains(k)) << k;
    EXPECT_EQ(v["task"], "transcribe");
    EXPECT_NEAR(v["duration"].get<double>(), 11.0, 0.01);
    ASSERT_FALSE(v["segments"].empty());
    for (const auto& s : v["segments"]) {
      for (const char* k : {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                            "compression_ratio", "no_speech_prob", "words"})
        EXPECT_TRUE(s.contains(k)) << k;
      double last = s["start"].get<double>();
      for (const auto& w : s["words"]) {
        for (const char* k : {"word", "start", "end", "probability"}) EXPECT_TRUE(w.contains(k)) << k;
        EXPECT_GE(w["start"].get<double>(), last - 1e-9);
        EXPECT_LE(w["start"].get<double>(), w["end"].get<double>());
        EXPECT_LE(w["end"].get<double>(), s["end"].get<double>() + 1e-9);
        EXPECT_GE(w["probability"].get<double>(), 0.0);
        EXPECT_LE(w["probability"].get<double>(), 1.0);
        last = w["start"].get<double>();
      }
    }
    // Language detected: the top 5 probabilities in json and verbose_json.
    auto j = nlohmann::json::parse(slurp(out + ".json"));
    ASSERT_EQ(j["language_probs"].size(), 5u);
    EXPECT_EQ(v["language_probs"].size(), 5u);
    EXPECT_EQ(slurp(out + ".tsv").rfind("start\tend\ttext\n", 0), 0u);
    const std::string vtt = slurp(out + ".vtt");
    EXPECT_EQ(vtt.rfind("WEBVTT\n\n00:", 0), 0u);
    EXPECT_EQ(vtt.find("00:00:0"), std::string::npos) << "no hours under an hour";
  }
}

TEST(TranscribeCli, FallbackAndItsThresholds) {
  // The random-weight model is unsure everywhere: openai's rules retry every
  // window up to temperature 1.0, and the verbose_json says so.
  const std::string out = out_path("fallback");
  auto r = transcribe(jfk() + " -l en -f verbose_json -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto v = nlohmann::json::parse(slurp(out + ".verbose.json"));
  ASSERT_FALSE(v["segments"].empty());
  for (const auto& s : v["segments"]) EXPECT_GT(s["temperature"].get<double>(), 0.0);
  for (const std::string flags : {" --temperature-increment-on-fallback none",
                                  " --logprob-threshold none --compression-ratio-threshold none"}) {
    SCOPED_TRACE(flags);
    auto q = transcribe(jfk() + " -l en -f verbose_json -o " + out + flags);
    ASSERT_EQ(q.exit_code, 0) << q.err;
    auto w = nlohmann::json::parse(slurp(out + ".verbose.json"));
    for (const auto& s : w["segments"]) EXPECT_EQ(s["temperature"].get<double>(), 0.0);
  }
}

TEST(TranscribeCli, SeedRepeatsSamplingExactly) {
  const std::string a = out_path("seed_a"), b = out_path("seed_b");
  // Sampling only: start at temperature 0.6 with 3 samples.
  const std::string args = jfk() + " -l en --temperature 0.6 --best-of 3 -f verbose_json --seed 42 -o ";
  auto x = transcribe(args + a), y = transcribe(args + b);
  ASSERT_EQ(x.exit_code, 0) << x.err;
  ASSERT_EQ(y.exit_code, 0) << y.err;
  EXPECT_EQ(slurp(a + ".verbose.json"), slurp(b + ".verbose.json"));
}

TEST(TranscribeCli, StrategiesPromptsAndLanguages) {
  const std::string out = out_path("opts");
  for (const std::string args :
       {" --beam-size 5 --patience 2 --length-penalty 1.0", " --beam-size 1", " --initial-prompt 'Hello there.'",
        " --prefix 'And so'", " --suppress-tokens ''", " --max-initial-timestamp -1", " --language English",
        " --language EN --task translate", " --condition-on-previous-text false --mode sequential",
        " --word-timestamps --hallucination-silence-threshold 1", " --word-timestamps --mode sequential"
        " --hallucination-silence-threshold 1",
        " --word-timestamps --max-line-width 12 --max-line-count 2 --highlight-words"}) {
    SCOPED_TRACE(args);
    // One greedy pass unless the case is about the strategy.
    const std::string speed = args.find("--beam-size") == std::string::npos ? kFast : "";
    auto r = transcribe(jfk() + " -f verbose_json,srt -o " + out + args + speed);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto v = nlohmann::json::parse(slurp(out + ".verbose.json"));
    if (args.find("translate") != std::string::npos) {
      EXPECT_EQ(v["task"], "translate");
    }
    if (args.find("--language") != std::string::npos) {
      EXPECT_EQ(v["language"], "english");
    }
    if (args.find("highlight") != std::string::npos) {
      EXPECT_NE(slurp(out + ".srt").find("<u>"), std::string::npos);
    }
  }
}

TEST(TranscribeCli, AbsurdOptionsAreClearErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--beam-size 0", "beam size"},
      {"--best-of 1000", "best-of"},
      {"--patience 0", "patience"},
      {"--temperature 2", "--temperature"},
      {"--temperature-increment-on-fallback 0", "increment"},
      {"--length-penalty -1", "--length-penalty"},
      {"--logprob-threshold abc", "--logprob-threshold"},
      {"--no-speech-threshold 3", "no-speech"},
      {"--suppress-tokens x", "--suppress-tokens"},
      {"--max-initial-timestamp 100", "initial timestamp"},
      {"--language klingon", "klingon"},
      {"--condition-on-previous-text maybe", "--condition-on-previous-text"},
      {"--hallucination-silence-threshold 2", "--word-timestamps"},
      {"--max-line-width 20 -f srt -o /tmp/x", "--word-timestamps"},
      {"--max-line-width -3 --word-timestamps -f srt -o /tmp/x", "max_line_width"},
      {"-f srt,bogus -o /tmp/x", "bogus"},
  };
  for (const auto& [args, phrase] : cases) {
    SCOPED_TRACE(args);
    auto r = transcribe(jfk() + " " + args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find(phrase), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  }
}

// The progress bar, on a pseudo-terminal as a person sees it (script(1)
// gives the command a terminal and records what it draws), and never in a
// pipe or with --quiet.
TEST(TranscribeCli, ProgressBarOnATerminalOnly) {
  const std::string log = out_path("tty") + ".log";
  const std::string cmd = cli() + " transcribe -m " + model() + " " + test::shared("audio/silero-test.wav") + kFast;
  auto r = test::run_command("script -qfec \"" + cmd + "\" " + log);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const std::string screen = slurp(log);
  EXPECT_NE(screen.find('\r'), std::string::npos) << "redrawn in place";
  EXPECT_NE(screen.find("100%"), std::string::npos) << screen;
  EXPECT_NE(screen.find("x realtime"), std::string::npos) << screen;
  EXPECT_NE(screen.find("ETA"), std::string::npos) << screen;

  auto quiet = test::run_command("script -qfec \"" + cmd + " --quiet\" " + log);
  ASSERT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(slurp(log).find("realtime"), std::string::npos) << "--quiet";
  auto piped = test::run_command(cmd);  // stderr is a file here
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.err.find("realtime"), std::string::npos) << piped.err;
}

}  // namespace
}  // namespace ama
