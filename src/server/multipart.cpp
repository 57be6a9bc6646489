// The streaming multipart/form-data parser: see multipart.h.
#include "server/multipart.h"

#include <algorithm>
#include <cctype>

namespace ama::server {

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "type; a=b; c="d;e"" -> the type, then (name, value) pairs; names lowered.
// False on an unterminated quoted string.
bool split_params(std::string_view s, std::string& type, std::vector<std::pair<std::string, std::string>>& params) {
  size_t i = s.find(';');
  type = lower(trim(s.substr(0, i)));
  while (i != std::string_view::npos && i < s.size()) {
    ++i;  // past ';'
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    const size_t eq = s.find('=', i);
    const size_t semi = s.find(';', i);
    if (eq == std::string_view::npos || (semi != std::string_view::npos && semi < eq)) {
      // A parameter without a value: skip it.
      i = semi;
      continue;
    }
    std::string name = lower(trim(s.substr(i, eq - i)));
    size_t j = eq + 1;
    while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
    std::string value;
    if (j < s.size() && s[j] == '"') {
      ++j;
      bool closed = false;
      while (j < s.size()) {
        const char c = s[j++];
        if (c == '\\' && j < s.size()) {
          value += s[j++];
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return false;
      i = s.find(';', j);
    } else {
      const size_t end = s.find(';', j);
      value = std::string(trim(s.substr(j, end == std::string_view::npos ? std::string_view::npos : end - j)));
      i = end;
    }
    params.emplace_back(std::move(name), std::move(value));
  }
  return true;
}

}  // namespace

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  std::string type;
  std::vector<std::pair<std::string, std::string>> params;
  if (!split_params(content_type, type, params) || type != "multipart/form-data") return std::nullopt;
  for (const auto& [name, value] : params) {
    if (name != "boundary") continue;
    // RFC 2046: 1 to 70 characters, not ending in a space; no CR or LF.
    if (value.empty() || value.size() > 70 || value.back() == ' ') return std::nullopt;
    if (value.find_first_of("\r\n") != std::string::npos) return std::nullopt;
    return value;
  }
  return std::nullopt;
}

MultipartParser::MultipartParser(std::string boundary, Handler handler)
    : boundary_("\r\n--" + boundary), handler_(std::move(handler)) {
  // The first boundary may start the body: behave as if a line ended before it.
  buf_ = "\r\n";
}

bool MultipartParser::fail(std::string message) {
  if (state_ != State::failed) error_ = std::move(message);
  state_ = State::failed;
  buf_.clear();
  return false;
}

bool MultipartParser::parse_headers(std::string_view block) {
  PartHeader h;
  bool disposition = false;
  size_t pos = 0;
  while (pos < block.size()) {
    size_t eol = block.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = block.size();
    const std::string_view line = block.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail("malformed part header line");
    const std::string name = lower(trim(line.substr(0, colon)));
    const std::string_view value = trim(line.substr(colon + 1));
    if (name == "content-disposition") {
      std::string type;
      std::vector<std::pair<std::string, std::string>> params;
      if (!split_params(value, type, params)) return fail("malformed Content-Disposition (unterminated quote)");
      if (type != "form-data") return fail("a part's Content-Disposition is not form-data");
      for (auto& [pname, pvalue] : params) {
        if (pname == "name") h.name = pvalue;
        else if (pname == "filename" || (pname == "filename*" && !h.filename)) h.filename = pvalue;
      }
      disposition = true;
    } else if (name == "content-type") {
      h.content_type = std::string(value);
    }
  }
  if (!disposition || h.name.empty()) return fail("a part has no Content-Disposition name");
  if (++parts_ > kMaxParts) return fail("too many parts");
  if (handler_.on_part && !handler_.on_part(h)) return fail("part refused");
  return true;
}

bool MultipartParser::feed(const char* data, size_t n) {
  if (state_ == State::failed) return false;
  if (state_ == State::done) return true;  // the epilogue is ignored
  buf_.append(data, n);
  const size_t keep = boundary_.size() - 1;  // a boundary may straddle pieces
  for (;;) {
    switch (state_) {
      case State::preamble: {
        const size_t p = buf_.find(boundary_);
        if (p == std::string::npos) {
          if (buf_.size() > keep) buf_.erase(0, buf_.size() - keep);
          return true;
        }
        buf_.erase(0, p + boundary_.size());
        state_ = State::after_boundary;
        break;
      }
      case State::after_boundary: {
        // "--" closes the body; else optional transport padding, then CRLF.
        size_t i = 0;
        if (buf_.size() >= 2 && buf_[0] == '-' && buf_[1] == '-') {
          state_ = State::done;
          buf_.clear();
          return true;
        }
        while (i < buf_.size() && (buf_[i] == ' ' || buf_[i] == '\t')) ++i;
        if (i > 256) return fail("malformed boundary line");
        if (buf_.size() < i + 2) {
          if (buf_.size() == 1 && buf_[0] == '-') return true;  // maybe "--"
          if (i == buf_.size() || (buf_.size() == i + 1 && buf_[i] == '\r')) return true;
          return fail("malformed boundary line");
        }
        if (buf_[i] != '\r' || buf_[i + 1] != '\n') return fail("malformed boundary line");
        buf_.erase(0, i + 2);
        state_ = State::headers;
        break;
      }
      case State::headers: {
        size_t end;
        size_t skip;
        if (buf_.size() >= 2 && buf_[0] == '\r' && buf_[1] == '\n') {
          end = 0;
          skip = 2;
        } else {
          end = buf_.find("\r\n\r\n");
          if (end == std::string::npos) {
            if (buf_.size() > kMaxHeaderBytes) return fail("a part's headers are too long");
            return true;
          }
          skip = end + 4;
        }
        if (end > kMaxHeaderBytes) return fail("a part's headers are too long");
        if (!parse_headers(std::string_view(buf_).substr(0, end))) return false;
        buf_.erase(0, skip);
        state_ = State::body;
        break;
      }
      case State::body: {
        const size_t p = buf_.find(boundary_);
        if (p == std::string::npos) {
          if (buf_.size() > keep) {
            const size_t emit = buf_.size() - keep;
            if (handler_.on_data && !handler_.on_data(buf_.data(), emit)) return fail("part content refused");
            buf_.erase(0, emit);
          }
          return true;
        }
        if (p > 0 && handler_.on_data && !handler_.on_data(buf_.data(), p)) return fail("part content refused");
        if (handler_.on_part_end && !handler_.on_part_end()) return fail("part refused");
        buf_.erase(0, p + boundary_.size());
        state_ = State::after_boundary;
        break;
      }
      case State::done:
        buf_.clear();
        return true;
      case State::failed:
        return false;
    }
  }
}

bool MultipartParser::finish() {
  if (state_ == State::failed) return false;
  if (state_ != State::done) return fail("the multipart body ended before its closing boundary");
  return true;
}

ParsedForm parse_multipart(std::string_view content_type, std::string_view body, size_t piece,
                           size_t max_part_bytes) {
  ParsedForm form;
  auto boundary = multipart_boundary(content_type);
  if (!boundary) {
    form.error = "Content-Type is not multipart/form-data with a boundary";
    return form;
  }
  MultipartParser::Handler h;
  h.on_part = [&](const PartHeader& header) {
    form.parts.push_back({header, {}});
    return true;
  };
  h.on_data = [&](const char* d, size_t n) {
    std::string& c = form.parts.back().content;
    if (c.size() + n > max_part_bytes) return false;
    c.append(d, n);
    return true;
  };
  MultipartParser parser(*boundary, h);
  if (piece == 0) piece = std::max<size_t>(body.size(), 1);
  bool ok = true;
  for (size_t i = 0; ok && i < body.size(); i += piece)
    ok = parser.feed(body.data() + i, std::min(piece, body.size() - i));
  ok = ok && parser.finish();
  form.ok = ok;
  if (!ok) form.error = parser.error();
  return form;
}

}  // namespace ama::server
