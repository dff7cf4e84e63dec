// A small blocking HTTP/1.1 client for `llm42 check` and `llm42 bench serve`: one connection,
// kept alive between requests when the server allows, responses delimited by Content-Length,
// chunked transfer coding or the end of the connection, bodies handed over as they arrive (for
// server-sent events).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llm42::client {

// http://HOST[:PORT][/PREFIX]. A trailing "/v1" is dropped: callers name the API paths.
struct Url {
  std::string host;
  int port = 80;
  std::string prefix;  // before the API paths, without a trailing slash

  static Url parse(std::string_view url);  // throws llm42::Error naming the URL
  std::string str() const;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;  // empty when the body went to on_body

  const std::string* header(std::string_view name) const;
};

// Receives the body as it arrives (decoded from chunked coding); returning false stops reading
// and closes the connection.
using BodyCallback = std::function<bool(std::string_view)>;

class HttpClient {
 public:
  explicit HttpClient(Url url, double timeout_seconds = 600);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads its response. Throws llm42::Error on a connection failure or a
  // malformed response. A kept-alive connection the server has closed meanwhile is reopened
  // once, transparently.
  HttpResponse request(std::string_view method, std::string_view path, std::string_view body,
                       const std::vector<std::pair<std::string, std::string>>& headers = {},
                       const BodyCallback& on_body = nullptr);
  void close();
  const Url& url() const { return url_; }

 private:
  void connect();
  // Reads more bytes into buf_; false at the end of the stream.
  bool fill();
  std::string read_line();
  void read_body(HttpResponse& r, bool head_only, const BodyCallback& on_body, bool& keep);

  Url url_;
  double timeout_;
  int fd_ = -1;
  std::string buf_;
  size_t pos_ = 0;  // start of the unread part of buf_
};

}  // namespace llm42::client
