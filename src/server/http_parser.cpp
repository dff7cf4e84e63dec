#include "server/http_parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace llm42::server {
namespace {

// RFC 9110 §5.6.2 token characters.
bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return is_tchar(static_cast<unsigned char>(c));
  });
}

// Field values: visible characters, space, tab and obs-text; never NUL, CR, LF or other controls.
bool is_field_value(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c != 0x7f);
  });
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
  return -1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// The comma-separated elements of a list-valued field, trimmed and lower-cased, empty ones
// dropped (RFC 9110 §5.6.1).
std::vector<std::string> list_elements(std::string_view value) {
  std::vector<std::string> out;
  while (!value.empty()) {
    const size_t comma = value.find(',');
    const std::string_view item = trim_ows(value.substr(0, comma));
    if (!item.empty()) out.push_back(lower(item));
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

void HttpRequestParser::reset() {
  line_start_ = 0;
  scanned_ = 0;
  request_line_start_ = 0;
  in_request_line_ = true;
  head_size_ = 0;
  body_size_ = 0;
  req_ = HttpRequest{};
  error_status_ = 0;
  error_message_.clear();
}

HttpParseStatus HttpRequestParser::fail(int status, std::string message) {
  error_status_ = status;
  error_message_ = std::move(message);
  return HttpParseStatus::kError;
}

bool HttpRequestParser::scan_head(std::string_view data) {
  while (true) {
    const size_t nl = data.find('\n', scanned_);
    const size_t line_end = nl == std::string_view::npos ? data.size() : nl;
    if (in_request_line_ && line_end - line_start_ > limits_.max_request_line) {
      fail(414, fmt::format("request line longer than {} bytes", limits_.max_request_line));
      return false;
    }
    if (line_end > limits_.max_header_bytes) {
      fail(431, fmt::format("request header block longer than {} bytes",
                            limits_.max_header_bytes));
      return false;
    }
    if (nl == std::string_view::npos) {
      scanned_ = data.size();
      return false;
    }
    std::string_view line = data.substr(line_start_, nl - line_start_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line_start_ = scanned_ = nl + 1;
    if (in_request_line_) {
      // RFC 9112 §2.2: empty lines before the request line are ignored.
      if (line.empty()) {
        request_line_start_ = line_start_;
        continue;
      }
      in_request_line_ = false;
    } else if (line.empty()) {
      head_size_ = line_start_;
      return true;
    }
  }
}

HttpParseStatus HttpRequestParser::parse(std::string_view data) {
  if (error_status_ != 0) return HttpParseStatus::kError;
  if (head_size_ == 0) {
    if (!scan_head(data))
      return error_status_ != 0 ? HttpParseStatus::kError : HttpParseStatus::kIncomplete;
    const HttpParseStatus st =
        parse_head(data.substr(request_line_start_, head_size_ - request_line_start_));
    if (st == HttpParseStatus::kError) {
      head_size_ = 0;
      return st;
    }
  }
  if (data.size() < head_size_ + body_size_) return HttpParseStatus::kIncomplete;
  req_.body.assign(data.substr(head_size_, body_size_));
  return HttpParseStatus::kComplete;
}

HttpParseStatus HttpRequestParser::parse_request_line(std::string_view line) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return fail(400, "malformed request line: expected METHOD SP TARGET SP HTTP-VERSION");
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) return fail(400, "malformed request line: invalid method");
  if (target.empty()) return fail(400, "malformed request line: empty request target");
  for (char ch : target) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f)
      return fail(400, "malformed request target: control, space or non-ASCII byte");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9')
    return fail(400, "malformed request line: invalid HTTP version");
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
    return fail(505, fmt::format("{} is not supported: use HTTP/1.1 or HTTP/1.0", version));
  req_.method.assign(method);
  req_.target.assign(target);
  req_.version_minor = version[7] - '0';

  std::string_view path = target;
  const std::string low = lower(target.substr(0, std::min<size_t>(target.size(), 8)));
  if (low.starts_with("http://") || low.starts_with("https://")) {
    // Absolute form (RFC 9112 §3.2.2): the path starts after the authority.
    const size_t auth = target.find("//") + 2;
    const size_t slash = target.find_first_of("/?", auth);
    path = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    if (!path.empty() && path.front() == '?') {
      req_.query.assign(path.substr(1));
      path = "/";
    }
  } else if (target != "*" && target.front() != '/') {
    return fail(400, "malformed request target: expected an absolute path");
  }
  const size_t q = path.find('?');
  if (q != std::string_view::npos) {
    req_.query.assign(path.substr(q + 1));
    path = path.substr(0, q);
  }
  if (path.empty()) path = "/";
  // RFC 3986 §2.1: the path is routed decoded, so that "%2F" in a model id is a '/'.
  req_.path.clear();
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') {
      req_.path += path[i];
      continue;
    }
    const int hi = i + 2 < path.size() ? hex_value(path[i + 1]) : -1;
    const int lo = hi >= 0 ? hex_value(path[i + 2]) : -1;
    if (lo < 0)
      return fail(400, fmt::format("malformed percent-encoding in the request path at '{}'",
                                   path.substr(i, 3)));
    if (hi == 0 && lo == 0) return fail(400, "NUL byte (%00) in the request path");
    req_.path += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return HttpParseStatus::kComplete;
}

HttpParseStatus HttpRequestParser::parse_head(std::string_view head) {
  bool first = true;
  while (!head.empty()) {
    const size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head.remove_prefix(nl == std::string_view::npos ? head.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos)
      return fail(400, "bare CR in the request head");
    if (first) {
      first = false;
      if (parse_request_line(line) == HttpParseStatus::kError) return HttpParseStatus::kError;
      continue;
    }
    if (line.empty()) break;  // the end of the head
    if (line.front() == ' ' || line.front() == '\t')
      return fail(400, "obsolete line folding in a header field is not accepted");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(400, "header field without a colon");
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name))
      return fail(400, "invalid header field name (no whitespace is allowed before the colon)");
    const std::string_view value = trim_ows(line.substr(colon + 1));
    if (!is_field_value(value)) return fail(400, "invalid character in a header field value");
    if (req_.headers.size() >= limits_.max_headers)
      return fail(431, fmt::format("more than {} header fields", limits_.max_headers));
    req_.headers.emplace_back(lower(name), std::string(value));
  }
  return apply_framing();
}

HttpParseStatus HttpRequestParser::apply_framing() {
  const bool http11 = req_.version_minor == 1;
  int hosts = 0;
  bool has_te = false;
  std::vector<std::string> codings;
  bool has_length = false;
  uint64_t length = 0;
  req_.keep_alive = http11;
  for (const auto& [name, value] : req_.headers) {
    if (name == "host") {
      ++hosts;
    } else if (name == "transfer-encoding") {
      has_te = true;
      for (std::string& c : list_elements(value)) codings.push_back(std::move(c));
    } else if (name == "content-length") {
      // Repeated fields (or a list) are accepted only when every value is the same number.
      const std::vector<std::string> items = list_elements(value);
      if (items.empty()) return fail(400, "empty Content-Length");
      for (const std::string& item : items) {
        if (item.size() > 18 || !std::all_of(item.begin(), item.end(),
                                             [](char c) { return c >= '0' && c <= '9'; }))
          return fail(item.size() > 18 ? 413 : 400,
                      fmt::format("invalid Content-Length '{}'", item));
        const uint64_t v = std::stoull(item);
        if (has_length && v != length) return fail(400, "conflicting Content-Length values");
        has_length = true;
        length = v;
      }
    } else if (name == "connection") {
      for (const std::string& opt : list_elements(value)) {
        if (opt == "close") req_.keep_alive = false;
        if (opt == "keep-alive" && !http11) req_.keep_alive = true;
      }
    } else if (name == "expect") {
      if (lower(value) == "100-continue") req_.expect_continue = true;
    }
  }
  // "close" wins over "keep-alive", whatever their order.
  for (const auto& [name, value] : req_.headers)
    if (name == "connection")
      for (const std::string& opt : list_elements(value))
        if (opt == "close") req_.keep_alive = false;
  if (http11 && hosts == 0) return fail(400, "HTTP/1.1 request without a Host header");
  if (hosts > 1) return fail(400, "more than one Host header");
  if (has_te) {
    // RFC 9112 §6.1 and §6.3: the framing of such requests cannot be trusted or is unknown.
    if (!http11) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (has_length) return fail(400, "both Transfer-Encoding and Content-Length");
    if (codings.empty() || codings.back() != "chunked")
      return fail(400, "Transfer-Encoding whose final coding is not chunked");
    if (codings.size() > 1)
      return fail(501, fmt::format("transfer coding '{}' is not implemented", codings.front()));
    return fail(411, "chunked request bodies are not supported: send Content-Length");
  }
  if (length > limits_.max_body_bytes)
    return fail(413, fmt::format("request body of {} bytes exceeds the limit of {} bytes", length,
                                 limits_.max_body_bytes));
  body_size_ = static_cast<size_t>(length);
  return HttpParseStatus::kComplete;
}

}  // namespace llm42::server
