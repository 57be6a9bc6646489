// A streaming multipart/form-data parser (RFC 7578), fed the request body in
// pieces of any size: part headers are parsed and handed over whole, part
// content is handed over as it arrives (an uploaded file is never held in
// memory). No sockets, no allocation that grows with the content: the
// server and the libFuzzer target (fuzz/) both drive it.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ama::server {

struct PartHeader {
  std::string name;                     // Content-Disposition's name
  std::optional<std::string> filename;  // set for file parts (may be empty)
  std::string content_type;             // the part's Content-Type, if any
};

class MultipartParser {
 public:
  struct Handler {
    std::function<bool(const PartHeader&)> on_part;            // false: stop with an error
    std::function<bool(const char*, size_t)> on_data;          // content of the current part
    std::function<bool()> on_part_end;
  };
  // boundary: the Content-Type's boundary parameter (without "--").
  MultipartParser(std::string boundary, Handler handler);

  // Feeds the next piece of the body. False on malformed input or when a
  // handler refused; error() says why. Calls after an error return false.
  bool feed(const char* data, size_t n);
  // The body has ended: true if the closing boundary was seen.
  bool finish();
  const std::string& error() const { return error_; }
  bool done() const { return state_ == State::done; }

  static constexpr size_t kMaxHeaderBytes = 16 * 1024;  // one part's header block
  static constexpr size_t kMaxParts = 256;

 private:
  enum class State { preamble, after_boundary, headers, body, done, failed };
  bool fail(std::string message);
  bool parse_headers(std::string_view block);

  std::string boundary_;   // "\r\n--" + boundary
  Handler handler_;
  State state_ = State::preamble;
  std::string buf_;        // bytes not yet consumed
  size_t parts_ = 0;
  std::string error_;
};

// The boundary parameter of a multipart/form-data Content-Type header, or
// nullopt if the header is not multipart/form-data with a valid boundary.
std::optional<std::string> multipart_boundary(std::string_view content_type);

// One form field held in memory (the pure-function form of the parser, for
// tests and the fuzzer): the whole body at once, split into pieces of
// `piece` bytes (0: one piece) to exercise the streaming paths.
struct FormPart {
  PartHeader header;
  std::string content;
};
struct ParsedForm {
  bool ok = false;
  std::string error;
  std::vector<FormPart> parts;
};
ParsedForm parse_multipart(std::string_view content_type, std::string_view body, size_t piece = 0,
                           size_t max_part_bytes = 1 << 20);

}  // namespace ama::server
