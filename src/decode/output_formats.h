// Writers for transcripts: txt, srt, vtt and json (the shapes of openai
// whisper's writers; json mirrors its result dictionary).
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "decode/transcriber.h"

namespace ama {

// "txt", "srt", "vtt", "json"
const std::vector<std::string>& output_format_names();
Result<std::string> format_transcript(const Transcript& t, const std::string& format);

// HH:MM:SS,mmm (srt) or HH:MM:SS.mmm (vtt)
std::string format_timestamp(double seconds, char decimal_marker);

}  // namespace ama
