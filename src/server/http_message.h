// HTTP/1.1 messages as the server sees them: a parsed request, the limits a request must stay
// within, and the serialisation of responses (whole, or streamed with chunked transfer coding).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llm42::server {

struct HttpLimits {
  size_t max_request_line = 8 * 1024;  // longer: 414
  size_t max_header_bytes = 16 * 1024;  // request line and header fields together; more: 431
  size_t max_headers = 100;             // more fields: 431
  size_t max_body_bytes = 16 << 20;     // larger Content-Length: 413
};

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // target up to '?', percent-decoded
  std::string query;   // after '?', without it
  int version_minor = 1;  // HTTP/1.<minor>; 0 and 1 are accepted
  // Field names lower-cased, values with surrounding whitespace removed, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive = true;       // after this request (Connection header and version)
  bool expect_continue = false;  // "Expect: 100-continue"

  // The first field of that (lower-case) name, or null.
  const std::string* header(std::string_view name) const;
};

struct HttpHeader {
  std::string name;
  std::string value;
};

std::string_view http_status_text(int status);

// A complete response with Content-Length. `keep_alive` false adds "Connection: close".
std::string format_http_response(int status, std::string_view content_type, std::string_view body,
                                 bool keep_alive, const std::vector<HttpHeader>& extra = {});

// The head of a streamed response. HTTP/1.1 clients get chunked transfer coding, so the
// connection can be kept alive; HTTP/1.0 clients get the body delimited by closing.
std::string format_stream_head(int status, std::string_view content_type, bool chunked,
                               bool keep_alive);
// One piece of a streamed body, framed for the transfer coding chosen above.
std::string format_stream_piece(std::string_view data, bool chunked);
// The end of a chunked body ("0\r\n\r\n"); nothing when the body is delimited by closing.
std::string_view format_stream_end(bool chunked);

}  // namespace llm42::server
