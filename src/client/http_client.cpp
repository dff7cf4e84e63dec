#include "client/http_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace llm42::client {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// The connection dropped before any byte of the response: on a reused connection this is the
// server having closed it while idle, and the request can be sent again.
struct StaleConnection {};

}  // namespace

Url Url::parse(std::string_view url) {
  Url u;
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.find("://") != std::string_view::npos) {
    fail("--url {}: only http:// is supported", url);
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  const size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    try {
      u.port = std::stoi(std::string(authority.substr(colon + 1)));
    } catch (const std::exception&) {
      fail("--url {}: invalid port", url);
    }
    authority = authority.substr(0, colon);
  }
  if (authority.size() >= 2 && authority.front() == '[' && authority.back() == ']')
    authority = authority.substr(1, authority.size() - 2);
  if (authority.empty()) fail("--url {}: no host", url);
  u.host = std::string(authority);
  while (path.ends_with("/")) path.remove_suffix(1);
  if (path.ends_with("/v1")) path.remove_suffix(3);
  u.prefix = std::string(path);
  return u;
}

std::string Url::str() const { return fmt::format("http://{}:{}{}", host, port, prefix); }

const std::string* HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

HttpClient::HttpClient(Url url, double timeout_seconds)
    : url_(std::move(url)), timeout_(timeout_seconds) {}

HttpClient::~HttpClient() { close(); }

void HttpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
  pos_ = 0;
}

void HttpClient::connect() {
  close();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(url_.port);
  if (const int rc = getaddrinfo(url_.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    fail("{}: {}", url_.str(), gai_strerror(rc));
  std::string err = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      fd_ = fd;
      break;
    }
    err = std::strerror(errno);
    ::close(fd);
  }
  freeaddrinfo(res);
  if (fd_ < 0) fail("cannot connect to {}: {}", url_.str(), err);
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_);
  tv.tv_usec = static_cast<suseconds_t>((timeout_ - static_cast<double>(tv.tv_sec)) * 1e6);
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool HttpClient::fill() {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  char tmp[64 * 1024];
  while (true) {
    const ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      fail("{}: no response within {} s", url_.str(), timeout_);
    if (errno == ECONNRESET) return false;
    fail("{}: {}", url_.str(), std::strerror(errno));
  }
}

std::string HttpClient::read_line() {
  while (true) {
    const size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      std::string line = buf_.substr(pos_, nl - pos_);
      pos_ = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (buf_.size() - pos_ > (1 << 20)) fail("{}: response line too long", url_.str());
    if (!fill()) fail("{}: connection closed in the middle of a response", url_.str());
  }
}

HttpResponse HttpClient::request(std::string_view method, std::string_view path,
                                 std::string_view body,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 const BodyCallback& on_body) {
  std::string head = fmt::format("{} {}{} HTTP/1.1\r\nHost: {}:{}\r\n", method, url_.prefix, path,
                                 url_.host, url_.port);
  for (const auto& [k, v] : headers) head += fmt::format("{}: {}\r\n", k, v);
  if (!body.empty() || method == "POST") {
    if (!body.empty()) head += "Content-Type: application/json\r\n";
    head += fmt::format("Content-Length: {}\r\n", body.size());
  }
  head += "\r\n";
  head += body;

  for (int attempt = 0;; ++attempt) {
    const bool reused = fd_ >= 0;
    if (!reused) connect();
    try {
      size_t sent = 0;
      while (sent < head.size()) {
        const ssize_t n = ::send(fd_, head.data() + sent, head.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          if (reused) throw StaleConnection{};
          fail("{}: send failed: {}", url_.str(), std::strerror(errno));
        }
        sent += static_cast<size_t>(n);
      }
      if (pos_ == buf_.size() && !fill()) {
        if (reused) throw StaleConnection{};
        fail("{}: the server closed the connection without a response", url_.str());
      }
      HttpResponse r;
      // Interim (1xx) responses come before the real one.
      while (true) {
        const std::string status_line = read_line();
        if (status_line.size() < 12 || !status_line.starts_with("HTTP/1."))
          fail("{}: malformed status line '{}'", url_.str(), status_line);
        r.status = std::stoi(status_line.substr(9, 3));
        r.headers.clear();
        while (true) {
          const std::string line = read_line();
          if (line.empty()) break;
          const size_t colon = line.find(':');
          if (colon == std::string::npos) fail("{}: malformed header '{}'", url_.str(), line);
          r.headers.emplace_back(lower(line.substr(0, colon)),
                                 std::string(trim(std::string_view(line).substr(colon + 1))));
        }
        if (r.status >= 200) break;
      }
      bool keep = true;
      read_body(r, method == "HEAD", on_body, keep);
      if (!keep) close();
      return r;
    } catch (const StaleConnection&) {
      close();
      if (attempt > 0) fail("{}: the connection was closed", url_.str());
    } catch (...) {
      close();
      throw;
    }
  }
}

void HttpClient::read_body(HttpResponse& r, bool head_only, const BodyCallback& on_body,
                           bool& keep) {
  const std::string* conn = r.header("connection");
  if (conn != nullptr && lower(*conn).find("close") != std::string::npos) keep = false;
  bool go_on = true;
  auto deliver = [&](std::string_view data) {
    if (data.empty() || !go_on) return;
    if (on_body) {
      go_on = on_body(data);
    } else {
      r.body.append(data);
    }
  };
  if (head_only || r.status == 204 || r.status == 304) return;
  const std::string* te = r.header("transfer-encoding");
  const std::string* cl = r.header("content-length");
  if (te != nullptr && lower(*te).find("chunked") != std::string::npos) {
    while (go_on) {
      const std::string size_line = read_line();
      size_t size = 0;
      try {
        size = std::stoul(size_line.substr(0, size_line.find(';')), nullptr, 16);
      } catch (const std::exception&) {
        fail("{}: malformed chunk size '{}'", url_.str(), size_line);
      }
      if (size == 0) {
        while (!read_line().empty()) {
        }
        return;
      }
      while (size > 0 && go_on) {
        if (pos_ == buf_.size() && !fill())
          fail("{}: connection closed inside a chunk", url_.str());
        const size_t take = std::min(size, buf_.size() - pos_);
        deliver(std::string_view(buf_).substr(pos_, take));
        pos_ += take;
        size -= take;
      }
      if (go_on && !read_line().empty()) fail("{}: chunk not followed by CRLF", url_.str());
    }
  } else if (cl != nullptr) {
    size_t left = std::stoull(*cl);
    while (left > 0 && go_on) {
      if (pos_ == buf_.size() && !fill())
        fail("{}: connection closed with {} body bytes missing", url_.str(), left);
      const size_t take = std::min(left, buf_.size() - pos_);
      deliver(std::string_view(buf_).substr(pos_, take));
      pos_ += take;
      left -= take;
    }
  } else {
    keep = false;  // the body ends with the connection
    while (go_on) {
      deliver(std::string_view(buf_).substr(pos_));
      pos_ = buf_.size();
      if (!fill()) break;
    }
  }
  if (!go_on) keep = false;
}

}  // namespace llm42::client
