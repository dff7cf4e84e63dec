// The epoll HTTP transport on a loopback port, driven by the project's own client and by raw
// sockets: keep-alive, pipelining answered in order, 100-continue, chunked streaming, errors
// that close the connection, a client leaving mid-request (on_abandon), and draining.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "client/sse_parser.h"
#include "server/http_server.h"

namespace llm42::server {
namespace {

using namespace std::chrono_literals;

// A server on a free port whose handler echoes, streams or holds requests, by path.
class TestServer {
 public:
  TestServer() {
    HttpServerOptions o;
    o.port = 0;
    o.limits.max_body_bytes = 1000;
    o.keep_alive_timeout = 2;
    HttpHandlers h;
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
  ConnectionId wait_held() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, 5s, [&] { return held_ != 0; });
    return held_;
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
  EXPECT_TRUE(s.wait_abandoned(held));
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

}  // namespace
}  // namespace llm42::server
