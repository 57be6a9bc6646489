// Writers for transcripts: txt, srt, vtt, tsv, json and verbose_json, in the
// shapes of openai/whisper's writers (utils.py: WriteTXT, WriteSRT, WriteVTT,
// WriteTSV, WriteJSON and SubtitlesWriter's word-level line breaking); json
// is its result dictionary, verbose_json the OpenAI API's response.
//
// For the CLI:
//   auto formats = parse_output_formats("srt,vtt");   // or "all"
//   WriterOptions wo{...}; AMA_TRY(wo.validate());
//   for (auto& f : *formats)
//     write(path + "." + output_format_extension(f), *format_transcript(t, f, wo, task));
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "decode/transcriber.h"  // Task
#include "decode/transcript.h"

namespace ama {

// openai's --max_line_width, --max_line_count, --highlight_words and
// --max_words_per_line (0: not set). They shape srt and vtt cues, and only
// when the transcript has word timestamps; without words every cue is one
// segment. max_line_count breaks subtitles only together with
// max_line_width (as in openai); max_words_per_line only when they are not
// both set.
struct WriterOptions {
  int max_line_width = 0;      // characters (code points) per line
  int max_line_count = 0;      // lines per cue
  bool highlight_words = false;  // one cue per word, the word in <u></u>
  int max_words_per_line = 0;

  Status validate() const;  // negative or absurdly large values are errors
  bool uses_words() const;  // any option set that needs word timestamps
};

// One subtitle cue (srt/vtt), times in seconds.
struct Cue {
  double start = 0, end = 0;
  std::string text;
};

// "txt", "srt", "vtt", "tsv", "json", "verbose_json"
const std::vector<std::string>& output_format_names();

// "srt", "srt,vtt", "all" (every format), any case, spaces ignored, no
// duplicates -> the formats in the given order; unknown names are errors.
Result<std::vector<std::string>> parse_output_formats(std::string_view list);

// The file extension of a format: its name, but "verbose.json" for
// verbose_json (so that json and verbose_json can be written side by side).
std::string output_format_extension(const std::string& format);

// The whole file's text. `task` is reported by verbose_json only.
Result<std::string> format_transcript(const Transcript& t, const std::string& format,
                                      const WriterOptions& options = {}, Task task = Task::transcribe);

// The cues srt and vtt are made of (openai's SubtitlesWriter.iterate_result).
// Text is cleaned: valid UTF-8, no "-->".
std::vector<Cue> subtitle_cues(const Transcript& t, const WriterOptions& options = {});

// HH:MM:SS,mmm (srt: ',') or HH:MM:SS.mmm; without always_include_hours the
// hours appear only from one hour on (vtt: MM:SS.mmm). Milliseconds are
// rounded half to even, as Python's round(); negative times print as 0.
std::string format_timestamp(double seconds, char decimal_marker, bool always_include_hours = true);

// Invalid UTF-8 sequences replaced by U+FFFD.
std::string sanitize_utf8(std::string_view s);

}  // namespace ama
