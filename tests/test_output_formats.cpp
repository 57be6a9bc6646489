// The transcript writers against openai/whisper's writers (utils.py): the
// expected srt/vtt strings for word-level line breaking and highlighting
// follow SubtitlesWriter.iterate_result on the same word lists.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "decode/output_formats.h"

namespace ama {
namespace {

Word W(const char* w, double s, double e, double p = 0.9) { return Word{w, s, e, p}; }

Segment seg(double start, double end, const char* text, std::vector<Word> words = {}) {
  Segment s;
  s.start = start;
  s.end = end;
  s.text = text;
  s.words = std::move(words);
  return s;
}

// Two segments, no words.
Transcript plain() {
  Transcript t;
  t.language = "en";
  t.duration = 10;
  t.segments = {seg(0.0, 2.4, " Hello world, this is a test."), seg(6.0, 7.9, " Another line here.")};
  return t;
}

// The same with word timestamps; a pause of 4.2 s between the segments.
Transcript with_words() {
  Transcript t = plain();
  t.segments[0].end = 4.0;
  t.segments[1].end = 9.5;
  t.segments[0].words = {W(" Hello", 0.0, 0.5), W(" world,", 0.5, 1.0), W(" this", 1.2, 1.5),
                         W(" is", 1.5, 1.7),    W(" a", 1.7, 1.8),       W(" test.", 1.8, 2.4)};
  t.segments[1].words = {W(" Another", 6.0, 6.6), W(" line", 6.6, 7.0), W(" here.", 7.2, 7.9)};
  return t;
}

std::string fmt(const Transcript& t, const std::string& f, const WriterOptions& o = {}, Task task = Task::transcribe) {
  auto r = format_transcript(t, f, o, task);
  EXPECT_TRUE(r.ok()) << f << ": " << r.message();
  return r.ok() ? *r : "";
}

WriterOptions opts(int width, int count, bool highlight = false, int words = 0) {
  WriterOptions o;
  o.max_line_width = width;
  o.max_line_count = count;
  o.highlight_words = highlight;
  o.max_words_per_line = words;
  return o;
}

TEST(OutputFormats, Txt) {
  EXPECT_EQ(fmt(plain(), "txt"), "Hello world, this is a test.\nAnother line here.\n");
  EXPECT_EQ(fmt(Transcript{}, "txt"), "");
}

TEST(OutputFormats, SrtSegments) {
  EXPECT_EQ(fmt(plain(), "srt"),
            "1\n00:00:00,000 --> 00:00:02,400\nHello world, this is a test.\n\n"
            "2\n00:00:06,000 --> 00:00:07,900\nAnother line here.\n\n");
}

TEST(OutputFormats, VttSegmentsUnderAnHour) {
  EXPECT_EQ(fmt(plain(), "vtt"),
            "WEBVTT\n\n00:00.000 --> 00:02.400\nHello world, this is a test.\n\n"
            "00:06.000 --> 00:07.900\nAnother line here.\n\n");
}

TEST(OutputFormats, VttOverAnHour) {
  Transcript t;
  t.segments = {seg(3599.999, 3725.5, " Late.")};
  EXPECT_EQ(fmt(t, "vtt"), "WEBVTT\n\n59:59.999 --> 01:02:05.500\nLate.\n\n");
  EXPECT_EQ(fmt(t, "srt"), "1\n00:59:59,999 --> 01:02:05,500\nLate.\n\n");
}

TEST(OutputFormats, Timestamps) {
  EXPECT_EQ(format_timestamp(0, ','), "00:00:00,000");
  EXPECT_EQ(format_timestamp(1.2000000000000002, '.'), "00:00:01.200");
  EXPECT_EQ(format_timestamp(61.25, '.', false), "01:01.250");
  EXPECT_EQ(format_timestamp(36000, '.', false), "10:00:00.000");
  EXPECT_EQ(format_timestamp(-1, ',', false), "00:00,000");
  EXPECT_EQ(format_timestamp(0.0005, '.', false), "00:00.000");  // half to even, as Python's round
  EXPECT_EQ(format_timestamp(0.0015, '.', false), "00:00.002");
}

TEST(OutputFormats, ArrowsNeverInCueText) {
  Transcript t;
  t.segments = {seg(0, 1, " a --> b ---> c")};
  EXPECT_EQ(fmt(t, "vtt"), "WEBVTT\n\n00:00.000 --> 00:01.000\na -> b -> c\n\n");
  t.segments[0].words = {W(" a", 0, 0.2), W(" -->", 0.2, 0.5), W(" b", 0.5, 1)};
  EXPECT_EQ(fmt(t, "srt"), "1\n00:00:00,000 --> 00:00:01,000\na -> b\n\n");
}

TEST(OutputFormats, WordsWithoutOptionsGiveOneCuePerSegment) {
  EXPECT_EQ(fmt(with_words(), "vtt"),
            "WEBVTT\n\n00:00.000 --> 00:02.400\nHello world, this is a test.\n\n"
            "00:06.000 --> 00:07.900\nAnother line here.\n\n");
}

TEST(OutputFormats, MaxLineWidthBreaksLinesWithinSegments) {
  EXPECT_EQ(fmt(with_words(), "vtt", opts(12, 0)),
            "WEBVTT\n\n00:00.000 --> 00:02.400\nHello world,\nthis is a\ntest.\n\n"
            "00:06.000 --> 00:07.900\nAnother line\nhere.\n\n");
}

TEST(OutputFormats, MaxLineCountBreaksSubtitles) {
  EXPECT_EQ(fmt(with_words(), "vtt", opts(12, 2)),
            "WEBVTT\n\n00:00.000 --> 00:01.800\nHello world,\nthis is a\n\n"
            "00:01.800 --> 00:02.400\ntest.\n\n"
            "00:06.000 --> 00:07.900\nAnother line\nhere.\n\n");
  EXPECT_EQ(fmt(with_words(), "srt", opts(12, 2)),
            "1\n00:00:00,000 --> 00:00:01,800\nHello world,\nthis is a\n\n"
            "2\n00:00:01,800 --> 00:00:02,400\ntest.\n\n"
            "3\n00:00:06,000 --> 00:00:07,900\nAnother line\nhere.\n\n");
}

TEST(OutputFormats, OneLinePerSubtitleAndLongPause) {
  // Segments are not kept (width and count both set): "this is a test."
  // fills a subtitle across words, and the 4.2 s pause starts a new one.
  EXPECT_EQ(fmt(with_words(), "vtt", opts(16, 1)),
            "WEBVTT\n\n00:00.000 --> 00:01.000\nHello world,\n\n"
            "00:01.200 --> 00:02.400\nthis is a test.\n\n"
            "00:06.000 --> 00:07.000\nAnother line\n\n"
            "00:07.200 --> 00:07.900\nhere.\n\n");
}

TEST(OutputFormats, APauseOfMoreThanThreeSecondsStartsASubtitle) {
  Transcript t = with_words();
  EXPECT_EQ(fmt(t, "vtt", opts(100, 2)),
            "WEBVTT\n\n00:00.000 --> 00:02.400\nHello world, this is a test.\n\n"
            "00:06.000 --> 00:07.900\nAnother line here.\n\n");
  t.segments[1].words[0].start = 4.7;  // 2.9 s after the last word's start
  EXPECT_EQ(fmt(t, "vtt", opts(100, 2)),
            "WEBVTT\n\n00:00.000 --> 00:07.900\nHello world, this is a test. Another line here.\n\n");
}

TEST(OutputFormats, SegmentsMergeWhenNotPreserved) {
  Transcript t;
  t.segments = {seg(0, 1, " one two", {W(" one", 0, 0.5), W(" two", 0.5, 1)}),
                seg(1, 2, " three four", {W(" three", 1, 1.5), W(" four", 1.5, 2)})};
  EXPECT_EQ(fmt(t, "srt", opts(100, 3)), "1\n00:00:00,000 --> 00:00:02,000\none two three four\n\n");
  // max_words_per_line has no effect then (as in openai) ...
  EXPECT_EQ(fmt(t, "srt", opts(100, 3, false, 1)), "1\n00:00:00,000 --> 00:00:02,000\none two three four\n\n");
  // ... but alone it makes a subtitle of every word.
  EXPECT_EQ(fmt(t, "srt", opts(0, 0, false, 1)),
            "1\n00:00:00,000 --> 00:00:00,500\none\n\n2\n00:00:00,500 --> 00:00:01,000\ntwo\n\n"
            "3\n00:00:01,000 --> 00:00:01,500\nthree\n\n4\n00:00:01,500 --> 00:00:02,000\nfour\n\n");
}

TEST(OutputFormats, MaxWordsPerLine) {
  EXPECT_EQ(fmt(with_words(), "vtt", opts(0, 0, false, 2)),
            "WEBVTT\n\n00:00.000 --> 00:01.000\nHello world,\n\n00:01.200 --> 00:01.700\nthis is\n\n"
            "00:01.700 --> 00:02.400\na test.\n\n00:06.000 --> 00:07.000\nAnother line\n\n"
            "00:07.200 --> 00:07.900\nhere.\n\n");
}

TEST(OutputFormats, LineWidthCountsCharactersNotBytes) {
  Transcript t;
  t.segments = {seg(0, 3, " Ça été déjà vu.",
                    {W(" Ça", 0.0, 0.4), W(" été", 0.4, 0.9), W(" déjà", 0.9, 1.5), W(" vu.", 1.5, 2.0)})};
  EXPECT_EQ(fmt(t, "vtt", opts(11, 0)), "WEBVTT\n\n00:00.000 --> 00:02.000\nÇa été déjà\nvu.\n\n");
  EXPECT_EQ(fmt(t, "vtt", opts(10, 0)), "WEBVTT\n\n00:00.000 --> 00:02.000\nÇa été\ndéjà vu.\n\n");
}

TEST(OutputFormats, HighlightWords) {
  EXPECT_EQ(fmt(with_words(), "vtt", opts(0, 0, true)),
            "WEBVTT\n\n"
            "00:00.000 --> 00:00.500\n<u>Hello</u> world, this is a test.\n\n"
            "00:00.500 --> 00:01.000\nHello <u>world,</u> this is a test.\n\n"
            "00:01.000 --> 00:01.200\nHello world, this is a test.\n\n"
            "00:01.200 --> 00:01.500\nHello world, <u>this</u> is a test.\n\n"
            "00:01.500 --> 00:01.700\nHello world, this <u>is</u> a test.\n\n"
            "00:01.700 --> 00:01.800\nHello world, this is <u>a</u> test.\n\n"
            "00:01.800 --> 00:02.400\nHello world, this is a <u>test.</u>\n\n"
            "00:06.000 --> 00:06.600\n<u>Another</u> line here.\n\n"
            "00:06.600 --> 00:07.000\nAnother <u>line</u> here.\n\n"
            "00:07.000 --> 00:07.200\nAnother line here.\n\n"
            "00:07.200 --> 00:07.900\nAnother line <u>here.</u>\n\n");
}

TEST(OutputFormats, HighlightWordsAcrossLineBreaks) {
  EXPECT_EQ(fmt(with_words(), "vtt", opts(12, 2, true)),
            "WEBVTT\n\n"
            "00:00.000 --> 00:00.500\n<u>Hello</u> world,\nthis is a\n\n"
            "00:00.500 --> 00:01.000\nHello <u>world,</u>\nthis is a\n\n"
            "00:01.000 --> 00:01.200\nHello world,\nthis is a\n\n"
            "00:01.200 --> 00:01.500\nHello world,\n<u>this</u> is a\n\n"
            "00:01.500 --> 00:01.700\nHello world,\nthis <u>is</u> a\n\n"
            "00:01.700 --> 00:01.800\nHello world,\nthis is <u>a</u>\n\n"
            "00:01.800 --> 00:02.400\n<u>test.</u>\n\n"
            "00:06.000 --> 00:06.600\n<u>Another</u> line\nhere.\n\n"
            "00:06.600 --> 00:07.000\nAnother <u>line</u>\nhere.\n\n"
            "00:07.000 --> 00:07.200\nAnother line\nhere.\n\n"
            "00:07.200 --> 00:07.900\nAnother line\n<u>here.</u>\n\n");
}

TEST(OutputFormats, WordOptionsWithoutWordsGivePlainSegments) {
  EXPECT_EQ(fmt(plain(), "srt", opts(5, 1, true, 1)), fmt(plain(), "srt"));
  EXPECT_TRUE(opts(5, 0).uses_words());
  EXPECT_TRUE(opts(0, 0, true).uses_words());
  EXPECT_FALSE(WriterOptions{}.uses_words());
}

TEST(OutputFormats, InvalidOptionsAreErrors) {
  for (const WriterOptions& o : {opts(-1, 0), opts(0, -2), opts(0, 0, false, -3), opts(1 << 30, 0)}) {
    EXPECT_FALSE(o.validate().ok());
    auto r = format_transcript(with_words(), "srt", o);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.message().find("max_"), std::string::npos) << r.message();
  }
  EXPECT_TRUE(opts(42, 2, true, 5).validate().ok());
}

TEST(OutputFormats, Tsv) {
  Transcript t = plain();
  t.segments.push_back(seg(8.0004, 9.9996, " tab\there\nand\r\nbreaks "));
  EXPECT_EQ(fmt(t, "tsv"),
            "start\tend\ttext\n0\t2400\tHello world, this is a test.\n6000\t7900\tAnother line here.\n"
            "8000\t10000\ttab here and  breaks\n");
}

TEST(OutputFormats, InvalidUtf8NeverThrows) {
  Transcript t;
  t.language = "en";
  t.segments = {seg(0, 1, " ok \xff\xc3 bad \xe2\x82", {W(" \xf0\x9f", 0, 1)})};
  EXPECT_EQ(fmt(t, "txt"), "ok \xEF\xBF\xBD\xEF\xBF\xBD bad \xEF\xBF\xBD\xEF\xBF\xBD\n");
  for (const std::string& f : output_format_names()) {
    auto r = format_transcript(t, f);
    ASSERT_TRUE(r.ok()) << f;
    if (f.find("json") != std::string::npos) {
      auto j = nlohmann::json::parse(*r);
      EXPECT_NE(j["segments"][0]["text"].get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);
    }
  }
  EXPECT_EQ(sanitize_utf8("a\xc3\xa9z\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80"),
            "a\xc3\xa9z\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
            "\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xf0\x9f\x98\x80 \xe4\xb8\xad"), "\xf0\x9f\x98\x80 \xe4\xb8\xad");
}

Transcript rich() {
  Transcript t = with_words();
  t.language = "en";
  t.duration = 10.000000000000002;
  t.language_probs = {{"en", 0.9}, {"de", 0.05}, {"fr", 0.02}};
  t.segments[0].tokens = {50364, 2425, 50484};
  t.segments[0].start = 1.2000000000000002;
  t.segments[0].temperature = 0.2;
  t.segments[0].avg_logprob = -0.25;
  t.segments[0].compression_ratio = 1.5;
  t.segments[0].no_speech_prob = 0.01;
  t.segments[1].seek = 3000;
  t.segments[1].repetition_cut = true;
  return t;
}

TEST(OutputFormats, Json) {
  const std::string s = fmt(rich(), "json");
  EXPECT_NE(s.find("\"start\": 1.2,"), std::string::npos) << s;
  auto j = nlohmann::json::parse(s);
  EXPECT_EQ(j["text"], " Hello world, this is a test. Another line here.");
  EXPECT_EQ(j["language"], "en");
  EXPECT_EQ(j["duration"], 10.0);
  ASSERT_EQ(j["segments"].size(), 2u);
  const auto& s0 = j["segments"][0];
  EXPECT_EQ(s0["id"], 0);
  EXPECT_EQ(s0["seek"], 0);
  EXPECT_EQ(s0["start"], 1.2);
  EXPECT_EQ(s0["end"], 4.0);
  EXPECT_EQ(s0["tokens"], nlohmann::json({50364, 2425, 50484}));
  EXPECT_EQ(s0["temperature"], 0.2);
  EXPECT_EQ(s0["avg_logprob"], -0.25);
  EXPECT_EQ(s0["compression_ratio"], 1.5);
  EXPECT_EQ(s0["no_speech_prob"], 0.01);
  EXPECT_FALSE(s0.contains("repetition_cut"));
  EXPECT_EQ(s0["words"].size(), 6u);
  EXPECT_EQ(s0["words"][1]["word"], " world,");
  EXPECT_EQ(j["segments"][1]["id"], 1);
  EXPECT_EQ(j["segments"][1]["seek"], 3000);
  EXPECT_EQ(j["segments"][1]["repetition_cut"], true);
  ASSERT_TRUE(j.contains("language_probs"));
  EXPECT_EQ(j["language_probs"]["en"], 0.9);
  EXPECT_EQ(j["language_probs"]["fr"], 0.02);
  // Highest first in the file.
  EXPECT_LT(s.find("\"en\": 0.9"), s.find("\"de\": 0.05"));
  EXPECT_FALSE(nlohmann::json::parse(fmt(plain(), "json")).contains("language_probs"));
  EXPECT_FALSE(nlohmann::json::parse(fmt(plain(), "json"))["segments"][0].contains("words"));
}

TEST(OutputFormats, VerboseJsonHasOpenAIsShape) {
  auto j = nlohmann::json::parse(fmt(rich(), "verbose_json"));
  EXPECT_EQ(j["task"], "transcribe");
  EXPECT_EQ(j["language"], "english");
  EXPECT_EQ(j["duration"], 10.0);
  EXPECT_EQ(j["text"], "Hello world, this is a test. Another line here.");
  ASSERT_EQ(j["segments"].size(), 2u);
  for (const char* k : {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                        "compression_ratio", "no_speech_prob", "words"})
    EXPECT_TRUE(j["segments"][0].contains(k)) << k;
  EXPECT_EQ(j["segments"][0]["text"], " Hello world, this is a test.");
  EXPECT_EQ(j["segments"][0]["start"], 1.2);
  EXPECT_FALSE(j["segments"][0].contains("repetition_cut"));
  EXPECT_EQ(j["segments"][1]["repetition_cut"], true);
  ASSERT_EQ(j["words"].size(), 9u);
  EXPECT_EQ(j["words"][0], nlohmann::json({{"word", " Hello"}, {"start", 0.0}, {"end", 0.5}, {"probability", 0.9}}));
  EXPECT_EQ(j["words"][8]["word"], " here.");
  EXPECT_EQ(j["words"][8]["end"], 7.9);
  EXPECT_EQ(j["language_probs"]["de"], 0.05);

  auto tr = nlohmann::json::parse(fmt(plain(), "verbose_json", {}, Task::translate));
  EXPECT_EQ(tr["task"], "translate");
  EXPECT_FALSE(tr.contains("words"));
  EXPECT_FALSE(tr.contains("language_probs"));
  EXPECT_FALSE(tr["segments"][0].contains("words"));
  Transcript odd = plain();
  odd.language = "xx";
  EXPECT_EQ(nlohmann::json::parse(fmt(odd, "verbose_json"))["language"], "xx");
}

TEST(OutputFormats, UnknownFormatIsAnError) {
  auto r = format_transcript(plain(), "docx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("'docx'"), std::string::npos) << r.message();
  auto p = parse_output_formats("srt,docx");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.message().find("'docx'"), std::string::npos) << p.message();
  EXPECT_FALSE(parse_output_formats("").ok());
  EXPECT_FALSE(parse_output_formats(" , ").ok());
}

TEST(OutputFormats, FormatListsAndAll) {
  using V = std::vector<std::string>;
  EXPECT_EQ(output_format_names(), (V{"txt", "srt", "vtt", "tsv", "json", "verbose_json"}));
  EXPECT_EQ(*parse_output_formats("all"), output_format_names());
  EXPECT_EQ(*parse_output_formats("srt,vtt"), (V{"srt", "vtt"}));
  EXPECT_EQ(*parse_output_formats(" VTT , srt,vtt,"), (V{"vtt", "srt"}));
  EXPECT_EQ(*parse_output_formats("json,all"), (V{"json", "txt", "srt", "vtt", "tsv", "verbose_json"}));
  EXPECT_EQ(output_format_extension("srt"), "srt");
  EXPECT_EQ(output_format_extension("verbose_json"), "verbose.json");
  for (const std::string& f : output_format_names()) EXPECT_TRUE(format_transcript(with_words(), f).ok()) << f;
}

}  // namespace
}  // namespace ama
