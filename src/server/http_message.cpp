#include "server/http_message.h"

#include <fmt/format.h>

#include <ctime>

#include "core/version.h"

namespace llm42::server {
namespace {

// RFC 9110 §6.6.1: an origin server with a clock sends Date, in IMF-fixdate.
std::string http_date() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  const size_t n = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

void append_common_headers(std::string& out, int status, bool keep_alive) {
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} {}\r\nServer: llm42/{}\r\nDate: {}\r\n",
                 status, http_status_text(status), kVersion, http_date());
  if (!keep_alive) out += "Connection: close\r\n";
}

}  // namespace

const std::string* HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

std::string_view http_status_text(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string format_http_response(int status, std::string_view content_type, std::string_view body,
                                 bool keep_alive, const std::vector<HttpHeader>& extra) {
  std::string out;
  out.reserve(256 + body.size());
  append_common_headers(out, status, keep_alive);
  for (const HttpHeader& h : extra) fmt::format_to(std::back_inserter(out), "{}: {}\r\n", h.name, h.value);
  if (!content_type.empty())
    fmt::format_to(std::back_inserter(out), "Content-Type: {}\r\n", content_type);
  fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n\r\n", body.size());
  out += body;
  return out;
}

std::string format_stream_head(int status, std::string_view content_type, bool chunked,
                               bool keep_alive) {
  std::string out;
  append_common_headers(out, status, keep_alive && chunked);
  fmt::format_to(std::back_inserter(out), "Content-Type: {}\r\nCache-Control: no-cache\r\n",
                 content_type);
  if (chunked) out += "Transfer-Encoding: chunked\r\n";
  out += "\r\n";
  return out;
}

std::string format_stream_piece(std::string_view data, bool chunked) {
  if (!chunked) return std::string(data);
  if (data.empty()) return {};  // an empty chunk would end the body
  std::string out = fmt::format("{:x}\r\n", data.size());
  out.reserve(out.size() + data.size() + 2);
  out += data;
  out += "\r\n";
  return out;
}

std::string_view format_stream_end(bool chunked) { return chunked ? "0\r\n\r\n" : ""; }

}  // namespace llm42::server
