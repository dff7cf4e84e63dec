// Incremental HTTP/1.1 request parser (RFC 9112), strict where leniency lets a request be read
// two ways: bodies are delimited by Content-Length only, chunked request bodies are refused with
// 411 and other transfer codings with 501 (or 400 where the framing cannot be known), a request
// with both Transfer-Encoding and Content-Length is refused, whitespace before a field's colon
// and obsolete line folding are errors. Every limit violated maps to its status code:
// request line 414, header block or field count 431, body 413, unknown HTTP version 505.
// The path is percent-decoded (a malformed escape or %00 is a 400); the target stays as sent.
//
// The parser never copies the head while it is incomplete: it is given the connection's
// unconsumed bytes each time more arrive and remembers how far it has scanned, so feeding a
// request one byte at a time costs linear time.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "server/http_message.h"

namespace llm42::server {

enum class HttpParseStatus { kIncomplete, kComplete, kError };

class HttpRequestParser {
 public:
  explicit HttpRequestParser(const HttpLimits& limits) : limits_(limits) {}

  // Parses the request at the start of `data`: every byte received on the connection and not
  // consumed by an earlier request. After kIncomplete, call again with the same bytes and more
  // appended. After kComplete, drop request_size() bytes from the buffer and call reset() before
  // parsing the next (pipelined) request. After kError, the connection must be answered with
  // error_status() and closed: the parser cannot know where the next request would begin.
  HttpParseStatus parse(std::string_view data);

  // The head (request line and fields) is parsed; the body may still be incomplete. A client
  // that sent "Expect: 100-continue" waits for an interim response at this point.
  bool head_complete() const { return head_size_ > 0; }
  const HttpRequest& request() const { return req_; }
  HttpRequest& request() { return req_; }
  // Head plus body, once the head is complete.
  size_t request_size() const { return head_size_ + body_size_; }
  size_t head_size() const { return head_size_; }
  size_t content_length() const { return body_size_; }
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

  void reset();

 private:
  HttpParseStatus fail(int status, std::string message);
  // Finds the end of the head, enforcing the size limits while scanning. Returns false while
  // more bytes are needed (or on error, with error_status_ set).
  bool scan_head(std::string_view data);
  HttpParseStatus parse_head(std::string_view head);
  HttpParseStatus parse_request_line(std::string_view line);
  HttpParseStatus apply_framing();

  HttpLimits limits_;
  size_t line_start_ = 0;          // start of the line being scanned
  size_t scanned_ = 0;             // bytes searched for a line end so far
  size_t request_line_start_ = 0;  // after leading empty lines
  bool in_request_line_ = true;
  size_t head_size_ = 0;   // 0 until the head is complete
  size_t body_size_ = 0;
  HttpRequest req_;
  int error_status_ = 0;
  std::string error_message_;
};

}  // namespace llm42::server
