// The epoll HTTP transport on a loopback port, driven by the project's own client and by raw
// sockets: keep-alive, pipelining answered in order, 100-continue, chunked streaming, errors
// that close the connection, a client leaving mid-request (on_abandon), and draining; and the
// bounds on hostile clients: connections, head and body deadlines, the request buffer budget,
// the write deadline, the check of a request's head before its body, half-close and HEAD.
#include "server/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "client/sse_parser.h"
#include "util/error.h"

namespace llm42::server {
namespace {

using namespace std::chrono_literals;

// A server on a free port whose handler echoes, streams or holds requests, by path.
class TestServer {
 public:
  explicit TestServer(const std::function<void(HttpServerOptions&)>& configure = {}) {
    HttpServerOptions o;
    o.port = 0;
    o.limits.max_body_bytes = 1000;
    o.keep_alive_timeout = 2;
    if (configure) configure(o);
    HttpHandlers h;
    // Requests for /secret are refused from their head.
    h.on_head = [](const HttpRequest& head) -> std::optional<HttpAnswer> {
      if (head.path != "/secret") return std::nullopt;
      return HttpAnswer{401, "{}", {{"WWW-Authenticate", "Bearer"}}};
    };
    h.on_exchange = [this](const HttpExchange& x) {
      std::lock_guard<std::mutex> lock(mu_);
      exchanges_.push_back(std::string(x.method) + " " + std::string(x.target) + " " +
                           std::to_string(x.status) + (x.client_gone ? " gone" : ""));
    };
    h.on_request = [this](ConnectionId c, HttpRequest& r) { handle(c, r); };
    h.on_abandon = [this](ConnectionId c) {
      std::lock_guard<std::mutex> lock(mu_);
      abandoned_.push_back(c);
      cv_.notify_all();
    };
    h.on_response = [this](std::string_view, int status) { statuses_.push_back(status); };
    server_ = std::make_unique<HttpServer>(o, h);
    thread_ = std::thread([this] { server_->run(); });
  }
  ~TestServer() {
    server_->post([this] { server_->stop(); });
    thread_.join();
  }
  int port() const { return server_->port(); }
  HttpServer& http() { return *server_; }

  bool wait_abandoned(ConnectionId c) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 5s, [&] {
      return std::find(abandoned_.begin(), abandoned_.end(), c) != abandoned_.end();
    });
  }
  bool abandoned(ConnectionId c) {
    std::lock_guard<std::mutex> lock(mu_);
    return std::find(abandoned_.begin(), abandoned_.end(), c) != abandoned_.end();
  }
  // The connection of the latest /hold (or /flood) request other than `previous`.
  ConnectionId wait_held(ConnectionId previous = 0) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, 5s, [&] { return held_ != 0 && held_ != previous; });
    return held_;
  }
  std::vector<std::string> exchanges() {
    std::lock_guard<std::mutex> lock(mu_);
    return exchanges_;
  }

 private:
  void handle(ConnectionId c, HttpRequest& r) {
    if (r.path == "/stream") {
      server_->start_stream(c, 200, "text/event-stream");
      // The pieces go out from later loop iterations, as engine outputs do.
      std::thread([this, c] {
        for (int i = 0; i < 3; ++i) {
          std::this_thread::sleep_for(5ms);
          server_->post([this, c, i] { server_->send(c, "data: " + std::to_string(i) + "\n\n"); });
        }
        server_->post([this, c] {
          server_->send(c, "data: [DONE]\n\n");
          server_->end_stream(c);
        });
      }).detach();
    } else if (r.path == "/flood") {
      // More than the socket buffers hold, for a client that does not read.
      server_->start_stream(c, 200, "text/plain");
      server_->send(c, std::string(32 << 20, 'x'));
      std::lock_guard<std::mutex> lock(mu_);
      held_ = c;
      cv_.notify_all();
    } else if (r.path == "/hold") {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = c;
      cv_.notify_all();
    } else {
      server_->respond(c, 200, "text/plain", r.method + " " + r.target + " " + r.body);
    }
  }

  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ConnectionId> abandoned_;
  ConnectionId held_ = 0;
  std::vector<std::string> exchanges_;  // "METHOD TARGET STATUS[ gone]"
  std::vector<int> statuses_;  // loop thread only
};

int connect_to(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void send_all(int fd, const std::string& s) {
  ASSERT_EQ(send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
}

// Closes with a reset (SO_LINGER 0) rather than a FIN.
void reset_close(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

// Reads until `done(received)` or the peer closes.
std::string read_until(int fd, const std::function<bool(const std::string&)>& done) {
  std::string got;
  char buf[4096];
  while (!done(got)) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(HttpServer, KeepAliveRequests) {
  TestServer s;
  client::HttpClient c(client::Url::parse("http://127.0.0.1:" + std::to_string(s.port())));
  for (int i = 0; i < 3; ++i) {
    const client::HttpResponse r = c.request("POST", "/echo", "body" + std::to_string(i));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "POST /echo body" + std::to_string(i));
  }
}

TEST(HttpServer, PipelinedRequestsAnsweredInOrder) {
  TestServer s;
  const int fd = connect_to(s.port());
  ASSERT_GE(fd, 0);
  send_all(fd,
           "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
           "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
           "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string got = read_until(fd, [](const std::string&) { return false; });
  close(fd);
  const size_t a = got.find("GET /a "), b = got.find("POST /b hi"), c = got.find("GET /c ");
  ASSERT_NE(a, std::string::npos) << got;
  ASSERT_NE(b, std::string::npos) << got;
  ASSERT_NE(c, std::string::npos) << got;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(count(got, "HTTP/1.1 200 OK"), 3u);
}

TEST(HttpServer, ChunkedEventStream) {
  TestServer s;
  client::HttpClient c(client::Url::parse("http://127.0.0.1:" + std::to_string(s.port())));
  client::SseParser sse;
  std::vector<std::string> data;
  const client::HttpResponse r = c.request("GET", "/stream", "", {}, [&](std::string_view b) {
    sse.feed(b, [&](const client::SseEvent& e) { data.push_back(e.data); });
    return true;
  });
  EXPECT_EQ(r.status, 200);
  ASSERT_NE(r.header("transfer-encoding"), nullptr);
  EXPECT_EQ(*r.header("transfer-encoding"), "chunked");
  EXPECT_EQ(data, (std::vector<std::string>{"0", "1", "2", "[DONE]"}));
  // The connection stays usable after the stream.
  EXPECT_EQ(c.request("GET", "/after", "").body, "GET /after ");
}

TEST(HttpServer, Http10StreamIsDelimitedByClose) {
  TestServer s;
  const int fd = connect_to(s.port());
  send_all(fd, "GET /stream HTTP/1.0\r\n\r\n");
  const std::string got = read_until(fd, [](const std::string&) { return false; });
  close(fd);
  EXPECT_EQ(got.find("chunked"), std::string::npos);
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(got.ends_with("data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n")) << got;
}

TEST(HttpServer, ExpectContinue) {
  TestServer s;
  const int fd = connect_to(s.port());
  send_all(fd, "POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  const std::string interim = read_until(fd, [](const std::string& g) {
    return g.find("\r\n\r\n") != std::string::npos;
  });
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  send_all(fd, "abc");
  const std::string got = read_until(fd, [](const std::string& g) { return g.ends_with("abc"); });
  EXPECT_NE(got.find("POST /x abc"), std::string::npos);
  close(fd);
}

TEST(HttpServer, BadRequestsGetAnErrorAndAClose) {
  TestServer s;
  for (const auto& [req, status] : std::vector<std::pair<std::string, std::string>>{
           {"GARBAGE\r\n\r\n", "400"},
           {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "411"},
           {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", "413"},
           {"GET / HTTP/3.0\r\nHost: x\r\n\r\n", "505"}}) {
    const int fd = connect_to(s.port());
    send_all(fd, req);
    const std::string got = read_until(fd, [](const std::string&) { return false; });
    close(fd);
    EXPECT_TRUE(got.starts_with("HTTP/1.1 " + status)) << got;
    EXPECT_NE(got.find("Connection: close"), std::string::npos);
    EXPECT_NE(got.find("\"type\":\"invalid_request_error\""), std::string::npos) << got;
  }
}

TEST(HttpServer, ClientLeavingIsReported) {
  TestServer s;
  const int fd = connect_to(s.port());
  send_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  const ConnectionId held = s.wait_held();
  ASSERT_NE(held, 0u);
  close(fd);
  // A FIN may be a half-close: the client is known gone once a write meets its reset.
  s.http().post([&] {
    s.http().start_stream(held, 200, "text/plain");
    s.http().send(held, "data");
  });
  EXPECT_TRUE(s.wait_abandoned(held));

  // A reset is known at once.
  const int rst = connect_to(s.port());
  send_all(rst, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  const ConnectionId second = s.wait_held(held);
  ASSERT_NE(second, held);
  reset_close(rst);
  EXPECT_TRUE(s.wait_abandoned(second));
}

TEST(HttpServer, DrainRefusesNewConnectionsAndFinishesBusyOnes) {
  TestServer s;
  const int busy = connect_to(s.port());
  send_all(busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  const ConnectionId held = s.wait_held();
  const int idle = connect_to(s.port());
  ASSERT_GE(idle, 0);
  std::atomic<bool> drained{false};
  s.http().post([&] {
    s.http().drain();
    drained = true;
  });
  while (!drained) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(connect_to(s.port()), -1);  // refused
  // The idle connection was closed.
  EXPECT_EQ(read_until(idle, [](const std::string&) { return false; }), "");
  close(idle);
  s.http().post([&] { s.http().respond(held, 200, "text/plain", "late"); });
  const std::string got = read_until(busy, [](const std::string&) { return false; });
  close(busy);
  EXPECT_TRUE(got.ends_with("late")) << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
}

// Sends `data` a byte at a time, `gap` apart, until it is all sent or the server closes.
std::thread trickle(int fd, std::string data, std::chrono::milliseconds gap) {
  return std::thread([fd, data = std::move(data), gap] {
    for (char ch : data) {
      if (send(fd, &ch, 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(gap);
    }
  });
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string read_all(int fd) {
  return read_until(fd, [](const std::string&) { return false; });
}

TEST(HttpServer, ConnectionsOverTheLimitGet503) {
  TestServer s([](HttpServerOptions& o) { o.max_connections = 2; });
  // Two connections with requests being answered (not idle: they are not closed for a new one).
  std::vector<int> open;
  ConnectionId held = 0;
  for (int i = 0; i < 2; ++i) {
    open.push_back(connect_to(s.port()));
    send_all(open.back(), "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    held = s.wait_held(held);
  }
  const int third = connect_to(s.port());
  const std::string got = read_all(third);
  close(third);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 503")) << got;
  EXPECT_NE(got.find("Retry-After: 1"), std::string::npos);
  EXPECT_NE(got.find("--max-connections 2"), std::string::npos);
  // A slot freed is a slot taken again (a reset: a FIN would be a half-close, still answered).
  reset_close(open.back());
  open.pop_back();
  std::string again;
  for (int i = 0; i < 100 && !again.starts_with("HTTP/1.1 200"); ++i) {
    std::this_thread::sleep_for(10ms);
    const int fd = connect_to(s.port());
    send_all(fd, "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    again = read_all(fd);
    close(fd);
  }
  EXPECT_TRUE(again.starts_with("HTTP/1.1 200")) << again;
  for (int fd : open) close(fd);
}

TEST(HttpServer, AtTheLimitTheLongestIdleConnectionMakesRoom) {
  TestServer s([](HttpServerOptions& o) { o.max_connections = 2; });
  std::vector<int> idle;
  for (int i = 0; i < 2; ++i) {
    idle.push_back(connect_to(s.port()));
    send_all(idle.back(), "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    read_until(idle.back(), [](const std::string& g) { return g.ends_with("GET /a "); });
    std::this_thread::sleep_for(20ms);  // the first is the longest idle
  }
  const int fresh = connect_to(s.port());
  send_all(fresh, "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(read_all(fresh).starts_with("HTTP/1.1 200"));
  close(fresh);
  EXPECT_EQ(read_all(idle[0]), "");  // closed for the new client
  send_all(idle[1], "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(read_all(idle[1]).ends_with("GET /c "));
  for (int fd : idle) close(fd);
}

// What a client gets that sends `first` at once and then `rest` a byte every 50 ms (never idle
// for long), and how many seconds after `first` it came.
std::pair<std::string, double> answer_to_trickle(int port, const std::string& first,
                                                 const std::string& rest) {
  const int fd = connect_to(port);
  send_all(fd, first);
  const auto t0 = std::chrono::steady_clock::now();
  std::thread t = trickle(fd, rest, 50ms);
  const std::string got = read_all(fd);
  const double took = seconds_since(t0);
  shutdown(fd, SHUT_RDWR);
  t.join();
  close(fd);
  return {got, took};
}

TEST(HttpServer, TricklingDoesNotExtendTheHeadDeadline) {
  TestServer s([](HttpServerOptions& o) { o.head_timeout = 0.5; });
  // The head would take 2 s.
  const auto [got, took] =
      answer_to_trickle(s.port(), "", "GET /a HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789\r\n\r\n");
  EXPECT_TRUE(got.starts_with("HTTP/1.1 408")) << got;
  EXPECT_NE(got.find("--timeout-request-head"), std::string::npos) << got;
  EXPECT_LT(took, 1.5);
}

TEST(HttpServer, TricklingDoesNotExtendTheBodyDeadline) {
  TestServer s([](HttpServerOptions& o) { o.body_timeout = 0.5; });
  const auto [got, took] = answer_to_trickle(
      s.port(), "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n", std::string(30, 'b'));
  EXPECT_TRUE(got.starts_with("HTTP/1.1 408")) << got;
  EXPECT_NE(got.find("--timeout-request-body"), std::string::npos) << got;
  EXPECT_LT(took, 1.5);
}

TEST(HttpServer, HalfSentRequestGets408WhenIdle) {
  TestServer s([](HttpServerOptions& o) { o.keep_alive_timeout = 0.3; });
  const int fd = connect_to(s.port());
  send_all(fd, "GET /a HTTP/1.1\r\nHost");
  const std::string got = read_all(fd);
  close(fd);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 408")) << got;
}

TEST(HttpServer, HeadCheckRefusesBeforeTheBody) {
  TestServer s;
  const int fd = connect_to(s.port());
  // The body is never sent: the answer comes from the head alone.
  send_all(fd, "POST /secret HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n");
  const std::string got = read_all(fd);
  close(fd);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 401")) << got;
  EXPECT_NE(got.find("WWW-Authenticate: Bearer"), std::string::npos);
  EXPECT_NE(got.find("Connection: close"), std::string::npos);

  // A complete request refused from its head leaves the connection usable.
  const int keep = connect_to(s.port());
  send_all(keep,
           "GET /secret HTTP/1.1\r\nHost: x\r\n\r\nGET /open HTTP/1.1\r\nHost: x\r\n"
           "Connection: close\r\n\r\n");
  const std::string both = read_all(keep);
  close(keep);
  EXPECT_TRUE(both.starts_with("HTTP/1.1 401")) << both;
  EXPECT_TRUE(both.ends_with("GET /open ")) << both;
}

TEST(HttpServer, BufferedRequestBytesAreBounded) {
  TestServer s([](HttpServerOptions& o) {
    o.limits.max_header_bytes = 1024;
    o.max_buffered_request_bytes = 2100;  // one 1000-byte body and its head, not two
  });
  const std::string head = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
  const int a = connect_to(s.port());
  // 100 Continue comes once the head passed the checks: a's body is admitted.
  send_all(a,
           "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n");
  EXPECT_EQ(read_until(a, [](const std::string& g) { return g.ends_with("\r\n\r\n"); }),
            "HTTP/1.1 100 Continue\r\n\r\n");
  send_all(a, "first");
  const int b = connect_to(s.port());
  send_all(b, head);
  const std::string refused = read_all(b);
  close(b);
  EXPECT_TRUE(refused.starts_with("HTTP/1.1 503")) << refused;
  EXPECT_NE(refused.find("--max-buffered-request-bytes"), std::string::npos);
  send_all(a, std::string(995, 'x'));
  EXPECT_NE(
      read_until(a, [](const std::string& g) { return g.find("firstx") != g.npos; }).find("200 OK"),
      std::string::npos);
  close(a);
  // Once a's request is answered its bytes are free again.
  const int c = connect_to(s.port());
  send_all(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" +
                  std::string(1000, 'y'));
  EXPECT_TRUE(read_all(c).starts_with("HTTP/1.1 200"));
  close(c);
  EXPECT_THROW(
      {
        HttpServerOptions o;
        o.port = 0;
        o.max_buffered_request_bytes = o.limits.max_body_bytes;
        HttpServer bad(o, HttpHandlers{});
      },
      Error);
}

TEST(HttpServer, ClientThatDoesNotReadIsDroppedAndAbandoned) {
  TestServer s([](HttpServerOptions& o) { o.write_timeout = 0.3; });
  const int fd = connect_to(s.port());
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  send_all(fd, "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n");
  const ConnectionId held = s.wait_held();
  ASSERT_NE(held, 0u);
  EXPECT_TRUE(s.wait_abandoned(held));  // never read from
  close(fd);
  const std::vector<std::string> x = s.exchanges();
  ASSERT_FALSE(x.empty());
  EXPECT_EQ(x.back(), "GET /flood 200 gone");
}

TEST(HttpServer, HalfClosedClientStillGetsItsAnswers) {
  TestServer s;
  const int fd = connect_to(s.port());
  send_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  shutdown(fd, SHUT_WR);
  const ConnectionId held = s.wait_held();
  ASSERT_NE(held, 0u);
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(s.abandoned(held));
  s.http().post([&] { s.http().respond(held, 200, "text/plain", "late"); });
  const std::string got = read_all(fd);
  close(fd);
  EXPECT_TRUE(got.ends_with("late")) << got;

  // Pipelined requests before the half-close are all answered, then the connection closes.
  const int p = connect_to(s.port());
  send_all(p, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  shutdown(p, SHUT_WR);
  const std::string two = read_all(p);
  close(p);
  EXPECT_EQ(count(two, "HTTP/1.1 200 OK"), 2u) << two;
  EXPECT_TRUE(two.ends_with("GET /b ")) << two;
}

TEST(HttpServer, ClosingBeforeTheBodyIsCompleteGets400) {
  TestServer s;
  const int fd = connect_to(s.port());
  send_all(fd, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  shutdown(fd, SHUT_WR);
  const std::string got = read_all(fd);
  close(fd);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 400")) << got;
  EXPECT_NE(got.find("after 3 of the 10 body bytes"), std::string::npos) << got;

  const int head = connect_to(s.port());
  send_all(head, "GET /a HTTP/1.1\r\nHo");
  shutdown(head, SHUT_WR);
  const std::string partial = read_all(head);
  close(head);
  EXPECT_TRUE(partial.starts_with("HTTP/1.1 400")) << partial;
}

TEST(HttpServer, HeadIsAnsweredWithoutABody) {
  TestServer s;
  const int fd = connect_to(s.port());
  send_all(fd,
           "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string got = read_all(fd);
  close(fd);
  // The HEAD answer's Content-Length is that of the body a GET would get ("HEAD /x ").
  const size_t end_of_head = got.find("\r\n\r\n");
  ASSERT_NE(end_of_head, std::string::npos) << got;
  EXPECT_NE(got.substr(0, end_of_head).find("Content-Length: 8"), std::string::npos) << got;
  EXPECT_EQ(got.compare(end_of_head + 4, 9, "HTTP/1.1 "), 0) << got;
  EXPECT_TRUE(got.ends_with("GET /y ")) << got;
}

TEST(HttpServer, ExchangesAreReported) {
  TestServer s;
  const int fd = connect_to(s.port());
  send_all(fd, "GET /a%2Fb?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  read_all(fd);
  close(fd);
  const int bad = connect_to(s.port());
  send_all(bad, "NOT HTTP\r\n\r\n");
  read_all(bad);
  close(bad);
  EXPECT_EQ(s.exchanges(), (std::vector<std::string>{"GET /a%2Fb 200", "  400"}));
}

}  // namespace
}  // namespace llm42::server
