#include "server/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "server/api_error.h"
#include "server/openai_response.h"
#include "util/error.h"
#include "util/log.h"
#include "util/timer.h"

namespace llm42::server {
namespace {

constexpr ConnectionId kListenId = 1, kEventId = 2, kSignalId = 3;
constexpr double kLingerSeconds = 2.0;  // reading and discarding after a final response
constexpr double kTickSeconds = 0.1;
constexpr size_t kReadChunk = 64 * 1024;

sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void block_shutdown_signals() {
  const sigset_t set = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

struct HttpServer::Connection {
  Connection(ConnectionId i, int f, const HttpLimits& limits) : id(i), fd(f), parser(limits) {}
  ConnectionId id;
  int fd;
  std::string in;  // received, not yet consumed by a request
  HttpRequestParser parser;
  std::string out;  // to send, from out_off on
  size_t out_off = 0;
  std::string path;  // of the request being answered
  int version_minor = 1;
  bool busy = false;  // a request was handed to the application and is not fully answered
  bool streaming = false;
  bool chunked = false;
  bool keep_alive = true;  // after the request being answered
  bool close_after_write = false;
  bool continue_sent = false;
  bool lingering = false;
  double linger_deadline = 0;
  bool dirty = false;
  bool want_in = true, want_out = false;  // epoll interest now
  double last_activity = 0;
};

HttpServer::HttpServer(const HttpServerOptions& options, HttpHandlers handlers)
    : options_(options), handlers_(std::move(handlers)) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(options_.port);
  if (const int rc = getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    fail("--host {}: {}", options_.host, gai_strerror(rc));
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr && listen_fd_ < 0; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, options_.backlog) == 0) {
      listen_fd_ = fd;
    } else {
      last_error = std::strerror(errno);
      close(fd);
    }
  }
  freeaddrinfo(res);
  if (listen_fd_ < 0) fail("cannot listen on {}:{}: {}", options_.host, options_.port, last_error);
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  const sigset_t set = shutdown_signals();
  signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (epoll_fd_ < 0 || event_fd_ < 0 || signal_fd_ < 0)
    fail("cannot create the event loop: {}", std::strerror(errno));
  for (auto [fd, id] : {std::pair{listen_fd_, kListenId}, std::pair{event_fd_, kEventId},
                        std::pair{signal_fd_, kSignalId}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

HttpServer::~HttpServer() {
  for (auto& [id, c] : by_id_) close(c->fd);
  for (int fd : {listen_fd_, epoll_fd_, event_fd_, signal_fd_, spare_fd_})
    if (fd >= 0) close(fd);
}

void HttpServer::post(std::function<void()> task) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    wake = posted_.empty();
    posted_.push_back(std::move(task));
  }
  if (wake) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof(one));
  }
}

void HttpServer::run_posted() {
  uint64_t value = 0;
  [[maybe_unused]] ssize_t n = read(event_fd_, &value, sizeof(value));
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void HttpServer::run() {
  std::vector<epoll_event> events(512);
  double last_tick = now_seconds();
  while (!stop_) {
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                             static_cast<int>(kTickSeconds * 1000));
    if (n < 0 && errno != EINTR) fail("epoll_wait: {}", std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      const ConnectionId id = events[static_cast<size_t>(i)].data.u64;
      if (id == kListenId) {
        accept_all();
      } else if (id == kEventId) {
        run_posted();
      } else if (id == kSignalId) {
        signalfd_siginfo info{};
        while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
          log_info("server: received {}", strsignal(static_cast<int>(info.ssi_signo)));
          if (handlers_.on_signal) handlers_.on_signal();
        }
      } else {
        on_event(id, events[static_cast<size_t>(i)].events);
      }
    }
    // Output queued and pipelined input unblocked during this iteration.
    while (!dirty_.empty()) {
      std::vector<ConnectionId> dirty;
      dirty.swap(dirty_);
      for (ConnectionId id : dirty) {
        auto it = by_id_.find(id);
        if (it == by_id_.end()) continue;
        Connection& c = *it->second;
        c.dirty = false;
        if (!c.busy && !c.close_after_write && !c.lingering) process_input(c);
        flush(c);
      }
    }
    const double now = now_seconds();
    if (now - last_tick >= kTickSeconds) {
      last_tick = now;
      on_timer(now);
      if (handlers_.on_tick) handlers_.on_tick(now);
    }
  }
}

void HttpServer::accept_all() {
  while (listen_fd_ >= 0) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && spare_fd_ >= 0) {
        // Out of descriptors: accept with the spare one and close at once, rather than leave
        // the client hanging in the backlog while the loop spins on the readable socket.
        log_warn("server: out of file descriptors, refusing a connection");
        close(spare_fd_);
        const int refused = accept(listen_fd_, nullptr, nullptr);
        if (refused >= 0) close(refused);
        spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      return;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const ConnectionId id = next_id_++;
    auto c = std::make_unique<Connection>(id, fd, options_.limits);
    c->last_activity = now_seconds();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      continue;
    }
    by_id_.emplace(id, std::move(c));
  }
}

void HttpServer::on_event(ConnectionId id, uint32_t events) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  Connection& c = *it->second;
  if (events & EPOLLERR) {
    close_connection(c, c.busy);
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
    if (!c.want_in) {
      // Reading is paused (the buffer is full): the peer hung up.
      close_connection(c, c.busy);
      return;
    }
    read_input(c);  // may close
    if (!by_id_.count(id)) return;
    if (!c.busy && !c.lingering) process_input(c);
  }
  if (events & EPOLLOUT) flush(c);
}

void HttpServer::read_input(Connection& c) {
  char buf[kReadChunk];
  const size_t cap = options_.limits.max_header_bytes + options_.limits.max_body_bytes;
  while (true) {
    const ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
    if (n > 0) {
      c.last_activity = now_seconds();
      if (c.lingering) continue;  // discarded
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > cap) {
        // A client pipelining more than one request's worth while it waits: stop reading
        // until the current request is answered.
        c.want_in = false;
        update_interest(c);
        return;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // End of stream or a socket error: the client is gone.
    close_connection(c, c.busy);
    return;
  }
}

void HttpServer::process_input(Connection& c) {
  while (!c.busy && !c.close_after_write && !c.in.empty()) {
    const HttpParseStatus st = c.parser.parse(c.in);
    if (st == HttpParseStatus::kIncomplete) {
      if (c.parser.head_complete() && c.parser.request().expect_continue && !c.continue_sent) {
        c.continue_sent = true;
        c.out += "HTTP/1.1 100 Continue\r\n\r\n";
        if (!c.dirty) {
          c.dirty = true;
          dirty_.push_back(c.id);
        }
      }
      return;
    }
    if (st == HttpParseStatus::kError) {
      // The request's end is unknown, so nothing after it can be read: answer and close.
      c.busy = true;
      c.keep_alive = false;
      c.path.clear();
      respond_error(c.id, c.parser.error_status(),
                    dump_json(ApiError(c.parser.error_status(), "invalid_request_error",
                                       c.parser.error_message())
                                  .to_json()));
      return;
    }
    HttpRequest req = std::move(c.parser.request());
    c.in.erase(0, c.parser.request_size());
    c.parser.reset();
    c.continue_sent = false;
    c.busy = true;
    c.streaming = false;
    c.keep_alive = req.keep_alive && !draining_;
    c.path = req.path;
    c.version_minor = req.version_minor;
    if (!c.want_in) {
      c.want_in = true;
      update_interest(c);
    }
    const ConnectionId id = c.id;
    try {
      handlers_.on_request(id, req);
    } catch (const std::exception& e) {
      log(LogLevel::kError, "server: handler failed: {}", e.what());
      if (by_id_.count(id) && by_id_[id]->busy && !by_id_[id]->streaming)
        respond_error(id, 500, dump_json(ApiError(500, "server_error", e.what()).to_json()));
    }
    if (!by_id_.count(id)) return;
  }
}

void HttpServer::count(const Connection& c, int status) {
  if (handlers_.on_response) handlers_.on_response(c.path, status);
}

void HttpServer::respond(ConnectionId id, int status, std::string_view content_type,
                         std::string_view body, const std::vector<HttpHeader>& extra) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  Connection& c = *it->second;
  LLM42_ASSERT(c.busy && !c.streaming, "respond() without a request to answer");
  c.out += format_http_response(status, content_type, body, c.keep_alive, extra);
  count(c, status);
  finish_response(c);
}

void HttpServer::respond_error(ConnectionId id, int status, const std::string& body_json) {
  respond(id, status, "application/json", body_json);
}

void HttpServer::start_stream(ConnectionId id, int status, std::string_view content_type) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  Connection& c = *it->second;
  LLM42_ASSERT(c.busy && !c.streaming, "start_stream() without a request to answer");
  c.streaming = true;
  c.chunked = c.version_minor >= 1;
  if (!c.chunked) c.keep_alive = false;
  c.out += format_stream_head(status, content_type, c.chunked, c.keep_alive);
  count(c, status);
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(c.id);
  }
}

void HttpServer::send(ConnectionId id, std::string_view data) {
  auto it = by_id_.find(id);
  if (it == by_id_.end() || !it->second->streaming) return;
  Connection& c = *it->second;
  c.out += format_stream_piece(data, c.chunked);
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(c.id);
  }
}

void HttpServer::end_stream(ConnectionId id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end() || !it->second->streaming) return;
  Connection& c = *it->second;
  c.out += format_stream_end(c.chunked);
  finish_response(c);
}

void HttpServer::finish_response(Connection& c) {
  c.busy = false;
  c.streaming = false;
  if (!c.keep_alive) c.close_after_write = true;
  c.last_activity = now_seconds();
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(c.id);
  }
}

void HttpServer::flush(Connection& c) {
  while (c.out_off < c.out.size()) {
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (c.out_off > (1 << 16)) {
        c.out.erase(0, c.out_off);
        c.out_off = 0;
      }
      if (!c.want_out) {
        c.want_out = true;
        update_interest(c);
      }
      return;
    }
    close_connection(c, c.busy);  // the client is gone
    return;
  }
  c.out.clear();
  c.out_off = 0;
  if (c.want_out) {
    c.want_out = false;
    update_interest(c);
  }
  if (c.close_after_write && !c.busy && !c.lingering) {
    // Lingering close: stop sending, then read and discard until the client closes (or a
    // short while), so that unread request bytes do not turn the close into a reset that
    // destroys the response before the client reads it.
    shutdown(c.fd, SHUT_WR);
    c.lingering = true;
    c.linger_deadline = now_seconds() + kLingerSeconds;
    c.want_in = true;
    update_interest(c);
  }
}

void HttpServer::update_interest(Connection& c) {
  epoll_event ev{};
  ev.events = EPOLLRDHUP | (c.want_in ? EPOLLIN : 0u) | (c.want_out ? EPOLLOUT : 0u);
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void HttpServer::close_connection(Connection& c, bool abandoned) {
  const ConnectionId id = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  close(c.fd);
  by_id_.erase(id);
  if (abandoned && handlers_.on_abandon) handlers_.on_abandon(id);
}

void HttpServer::on_timer(double now) {
  std::vector<ConnectionId> expired;
  for (const auto& [id, c] : by_id_) {
    if (c->lingering) {
      if (now > c->linger_deadline) expired.push_back(id);
    } else if (!c->busy && c->out_off >= c->out.size() &&
               now - c->last_activity > options_.keep_alive_timeout) {
      expired.push_back(id);
    }
  }
  for (ConnectionId id : expired) close_connection(*by_id_[id], false);
}

void HttpServer::drain() {
  if (draining_) return;
  draining_ = true;
  if (listen_fd_ >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    close(listen_fd_);
    listen_fd_ = -1;
  }
  std::vector<ConnectionId> idle;
  for (auto& [id, c] : by_id_) {
    c->keep_alive = false;
    if (c->busy) continue;
    if (c->out_off >= c->out.size() && !c->lingering) {
      idle.push_back(id);
    } else {
      c->close_after_write = true;
    }
  }
  for (ConnectionId id : idle) close_connection(*by_id_[id], false);
}

bool HttpServer::has_pending_output() const {
  for (const auto& [id, c] : by_id_)
    if (c->out_off < c->out.size()) return true;
  return false;
}

}  // namespace llm42::server
