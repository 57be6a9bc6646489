// libFuzzer target: the server's request parsing without sockets. The input
// is "CONTENT-TYPE\nBODY" after one byte choosing the piece size the body is
// fed in. Checks, beyond "no crash, no sanitizer report": the streaming
// parser gives the same parts whatever the piece size, and every parsed
// form goes through the OpenAI parameter checks (both endpoints) and the
// error JSON without throwing. Build and run: scripts/fuzz.sh [SECONDS].
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/api.h"
#include "server/multipart.h"

using namespace ama::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 64;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nl = rest.find('\n');
  const std::string_view content_type = nl == std::string_view::npos ? rest : rest.substr(0, nl);
  const std::string_view body = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);

  const ParsedForm whole = parse_multipart(content_type, body, 0, 1 << 16);
  const ParsedForm pieces = parse_multipart(content_type, body, piece, 1 << 16);
  if (whole.ok != pieces.ok || whole.parts.size() != pieces.parts.size()) std::abort();
  if (whole.ok)
    for (size_t i = 0; i < whole.parts.size(); ++i)
      if (whole.parts[i].content != pieces.parts[i].content || whole.parts[i].header.name != pieces.parts[i].header.name)
        std::abort();

  if (whole.ok) {
    FormFields fields;
    bool has_file = false;
    for (const FormPart& p : whole.parts) {
      if (p.header.name == "file") has_file = true;
      else fields.emplace_back(p.header.name, p.content);
    }
    for (Endpoint ep : {Endpoint::transcriptions, Endpoint::translations}) {
      ParseResult r = parse_audio_request(ep, fields, has_file);
      if (r.request) {
        const auto d = request_decoding(*r.request, ama::DecodingOptions{});
        if (d.temperatures.empty()) std::abort();
      } else {
        if (r.error.status != 400 || r.error.message.empty()) std::abort();
        (void)error_json(r.error);
      }
    }
  }
  (void)bearer_token(content_type);
  (void)constant_time_equal(content_type, body);
  return 0;
}
