// The page that `amanuensis serve` sends for GET /: one self-contained HTML
// document (inline CSS and JavaScript, nothing loaded from elsewhere) that
// uploads an audio or video file to /v1/audio/transcriptions or
// /v1/audio/translations, shows upload progress and the segments as the
// server streams them (stream=true), and downloads the transcript as txt,
// srt, vtt or json. Tested in headless Chromium by tests/clients/web_page.test.mjs.
#pragma once

#include <string_view>

namespace ama::server {

// The whole document (UTF-8, text/html). Built once; the view stays valid
// for the life of the program.
std::string_view web_page_html();

}  // namespace ama::server
