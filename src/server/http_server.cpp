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

#include <algorithm>
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
constexpr double kEvictionRetrySeconds = 0.01;  // after finding no idle connection to close
constexpr size_t kReadChunk = 64 * 1024;

sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGQUIT);
  sigaddset(&set, SIGHUP);
  return set;
}

// 503 with Retry-After: a limit of the server's, not a fault of the request.
HttpAnswer unavailable(const std::string& message) {
  return {503,
          dump_json(ApiError(503, "service_unavailable", message).to_json()),
          {{"Retry-After", "1"}}};
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
  // The request being answered (or read, once its head is complete).
  std::string method;
  std::string target;  // as sent, without the query
  std::string path;    // decoded
  int version_minor = 1;
  bool head_only = false;     // HEAD: the response goes without its body
  int status = 0;             // of its response, once begun
  double exchange_start = 0;  // of the request being answered
  double request_start = 0;   // the first byte of the request being read (0: none yet)
  double head_done = 0;       // when its head was complete (0: not yet)
  bool peer_closed = false;   // the client sent FIN: nothing more will arrive
  double out_since = 0;       // when unsent output last appeared (0: none)
  size_t charged = 0;         // bytes counted against the request buffer budget
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

void check_options(const HttpServerOptions& o) {
  const HttpLimits& l = o.limits;
  if (o.max_connections < 1) fail("--max-connections {}: must be at least 1", o.max_connections);
  if (o.max_buffered_request_bytes < l.max_header_bytes + l.max_body_bytes)
    fail(
        "--max-buffered-request-bytes {} is less than one largest request ({} header bytes + "
        "--max-body-bytes {})",
        o.max_buffered_request_bytes, l.max_header_bytes, l.max_body_bytes);
  for (auto [name, value] : {std::pair{"--timeout-request-head", o.head_timeout},
                             std::pair{"--timeout-request-body", o.body_timeout},
                             std::pair{"--timeout-write", o.write_timeout},
                             std::pair{"--timeout-keep-alive", o.keep_alive_timeout}})
    if (!(value > 0)) fail("{} {}: must be a positive number of seconds", name, value);
}

HttpServer::HttpServer(const HttpServerOptions& options, HttpHandlers handlers)
    : options_(options), handlers_(std::move(handlers)) {
  check_options(options_);
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
          if (handlers_.on_signal) handlers_.on_signal(static_cast<int>(info.ssi_signo));
        }
      } else {
        on_event(id, events[static_cast<size_t>(i)].events);
      }
    }
    const double now = now_seconds();
    if (now - last_tick >= kTickSeconds) {
      last_tick = now;
      on_timer(now);
      if (handlers_.on_tick) handlers_.on_tick(now);
    }
    // Output queued and pipelined input unblocked during this iteration (timer answers too).
    while (!dirty_.empty()) {
      std::vector<ConnectionId> dirty;
      dirty.swap(dirty_);
      for (ConnectionId id : dirty) {
        auto it = by_id_.find(id);
        if (it == by_id_.end()) continue;
        Connection& c = *it->second;
        c.dirty = false;
        if (!c.busy && !c.close_after_write && !c.lingering) {
          process_input(c);  // may close
          if (!by_id_.count(id)) continue;
        }
        flush(c);
      }
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
    if (static_cast<int>(by_id_.size()) >= options_.max_connections && !evict_idle_connection()) {
      refuse_connection(fd);
      continue;
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

bool HttpServer::evict_idle_connection() {
  // Under a flood of slow clients there is rarely an idle one: do not rescan for each.
  const double now = now_seconds();
  if (now - last_failed_eviction_ < kEvictionRetrySeconds) return false;
  Connection* oldest = nullptr;
  for (auto& [id, c] : by_id_) {
    const bool idle = !c->busy && c->in.empty() && c->out_off >= c->out.size() && !c->lingering &&
                      !c->close_after_write;
    if (idle && (oldest == nullptr || c->last_activity < oldest->last_activity)) oldest = c.get();
  }
  if (oldest == nullptr) {
    last_failed_eviction_ = now;
    return false;
  }
  close_connection(*oldest, false);
  return true;
}

void HttpServer::refuse_connection(int fd) {
  // A fresh socket's send buffer is empty, so the short answer fits in one non-blocking send;
  // the client has rarely sent anything yet, so closing does not turn into a reset.
  const HttpAnswer a = unavailable(fmt::format(
      "too many open connections (--max-connections {}); retry later", options_.max_connections));
  const std::string answer =
      format_http_response(a.status, "application/json", a.body, false, a.headers);
  [[maybe_unused]] const ssize_t n =
      ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(fd, SHUT_WR);
  close(fd);
  ++refused_connections_;
  if (handlers_.on_response) handlers_.on_response("", 503);
}

void HttpServer::on_event(ConnectionId id, uint32_t events) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  Connection& c = *it->second;
  if (events & (EPOLLERR | EPOLLHUP)) {
    // A reset, or both directions shut: nothing can be read or written any more.
    close_connection(c, c.busy);
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP)) {
    read_input(c);  // may close
    if (!by_id_.count(id)) return;
    if (!c.busy && !c.lingering) process_input(c);
    if (!by_id_.count(id)) return;
  }
  if (events & EPOLLOUT) flush(c);
}

void HttpServer::read_input(Connection& c) {
  char buf[kReadChunk];
  const size_t cap = options_.limits.max_header_bytes + options_.limits.max_body_bytes;
  while (true) {
    const ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
    if (n > 0) {
      const double now = now_seconds();
      c.last_activity = now;
      if (c.lingering) continue;  // discarded
      c.in.append(buf, static_cast<size_t>(n));
      if (c.request_start == 0 && !c.busy) c.request_start = now;
      charge(c, std::max(c.in.size(), c.charged));
      // Bytes past the request being read count against the budget too.
      const bool past_request =
          c.busy || (c.parser.head_complete() && c.in.size() > c.parser.request_size());
      if (c.in.size() > cap ||
          (past_request && buffered_bytes_ > options_.max_buffered_request_bytes)) {
        // A client pipelining more than one request's worth while it waits, or bytes past a
        // body the budget admitted: stop reading until the current request is answered.
        c.want_in = false;
        update_interest(c);
        return;
      }
      // A head still being read when the budget is spent: process_input refuses it.
      if (buffered_bytes_ > options_.max_buffered_request_bytes) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n == 0 && !c.lingering) {
      // The client shut its sending side: a half-close still gets the answers to what it sent.
      c.peer_closed = true;
      update_interest(c);
      if (!c.busy) mark_dirty(c);
      return;
    }
    // A socket error, or the end of a lingering close.
    close_connection(c, c.busy);
    return;
  }
}

void HttpServer::process_input(Connection& c) {
  const ConnectionId id = c.id;
  while (!c.busy && !c.close_after_write && !c.in.empty()) {
    const bool had_head = c.parser.head_complete();
    const HttpParseStatus st = c.parser.parse(c.in);
    if (st == HttpParseStatus::kError) {
      // The request's end is unknown, so nothing after it can be read: answer and close.
      refuse(c, c.parser.error_status(), c.parser.error_message());
      return;
    }
    if (!had_head && c.parser.head_complete()) {
      c.head_done = now_seconds();
      if (!admit_head(c, st == HttpParseStatus::kComplete)) return;
    }
    if (st == HttpParseStatus::kIncomplete) {
      if (buffered_bytes_ > options_.max_buffered_request_bytes && !c.parser.head_complete()) {
        refuse(c, unavailable(fmt::format(
                      "the server holds too many request bytes (--max-buffered-request-bytes "
                      "{}); retry later",
                      options_.max_buffered_request_bytes)));
        return;
      }
      if (c.parser.head_complete() && c.parser.request().expect_continue && !c.continue_sent) {
        c.continue_sent = true;
        c.out += "HTTP/1.1 100 Continue\r\n\r\n";
        mark_dirty(c);
      }
      break;
    }
    HttpRequest req = take_request(c);
    if (!c.want_in) {
      c.want_in = true;
      update_interest(c);
    }
    try {
      handlers_.on_request(id, req);
    } catch (const std::exception& e) {
      log(LogLevel::kError, "server: handler failed: {}", e.what());
      if (by_id_.count(id) && by_id_[id]->busy && !by_id_[id]->streaming)
        respond_error(id, 500, dump_json(ApiError(500, "server_error", e.what()).to_json()));
    }
    if (!by_id_.count(id)) return;
  }
  if (c.peer_closed && !c.busy && !c.close_after_write) on_peer_closed(c);
}

bool HttpServer::admit_head(Connection& c, bool complete) {
  const HttpRequest& head = c.parser.request();
  if (handlers_.on_head) {
    if (std::optional<HttpAnswer> answer = handlers_.on_head(head)) {
      if (!complete) {
        refuse(c, *answer);
        return false;
      }
      // The whole request is here: consume it, so that the connection can stay open.
      take_request(c);
      respond(c.id, answer->status, "application/json", answer->body, answer->headers);
      return false;
    }
  }
  const size_t need = std::max(c.in.size(), c.parser.request_size());
  if (buffered_bytes_ - c.charged + need > options_.max_buffered_request_bytes) {
    refuse(c, unavailable(
                  fmt::format("the server holds too many request bytes to take a body of {} bytes "
                              "(--max-buffered-request-bytes {}); retry later",
                              c.parser.content_length(), options_.max_buffered_request_bytes)));
    return false;
  }
  charge(c, need);
  return true;
}

HttpRequest HttpServer::take_request(Connection& c) {
  HttpRequest req = std::move(c.parser.request());
  c.in.erase(0, c.parser.request_size());
  c.parser.reset();
  charge(c, c.in.size());
  begin_exchange(c, req);
  c.request_start = c.head_done = 0;
  return req;
}

void HttpServer::begin_exchange(Connection& c, const HttpRequest& req) {
  c.busy = true;
  c.streaming = false;
  c.continue_sent = false;
  c.status = 0;
  c.exchange_start = c.request_start > 0 ? c.request_start : now_seconds();
  c.keep_alive = req.keep_alive && !draining_;
  c.method = req.method;
  c.target = req.target.substr(0, req.target.find('?'));
  c.path = req.path;
  c.version_minor = req.version_minor;
  c.head_only = req.method == "HEAD";
}

void HttpServer::refuse(Connection& c, const HttpAnswer& answer) {
  if (c.parser.head_complete()) {
    begin_exchange(c, c.parser.request());
  } else {
    c.busy = true;
    c.method.clear();
    c.target.clear();
    c.path.clear();
    c.head_only = false;
    c.status = 0;
    c.exchange_start = c.request_start > 0 ? c.request_start : now_seconds();
  }
  c.keep_alive = false;
  // Nothing more is read from this connection: its buffered bytes are free again.
  c.in.clear();
  charge(c, 0);
  respond(c.id, answer.status, "application/json", answer.body, answer.headers);
}

void HttpServer::refuse(Connection& c, int status, const std::string& message) {
  refuse(c, {status, dump_json(ApiError(status, "invalid_request_error", message).to_json()), {}});
}

void HttpServer::on_peer_closed(Connection& c) {
  if (c.in.empty()) {
    if (c.out_off >= c.out.size()) {
      close_connection(c, false);
    } else {
      c.close_after_write = true;
      mark_dirty(c);
    }
    return;
  }
  // RFC 9112 §8: an incomplete message is an error; answer it, as the client can still read.
  if (c.parser.head_complete()) {
    refuse(c, 400,
           fmt::format("the client closed its side after {} of the {} body bytes its "
                       "Content-Length announced",
                       c.in.size() - c.parser.head_size(), c.parser.content_length()));
  } else {
    refuse(c, 400, "the client closed its side before the request head was complete");
  }
}

void HttpServer::count(Connection& c, int status) {
  c.status = status;
  if (handlers_.on_response) handlers_.on_response(c.path, status);
}

void HttpServer::end_exchange(Connection& c, bool client_gone) {
  if (!handlers_.on_exchange) return;
  handlers_.on_exchange(HttpExchange{.conn = c.id,
                                     .method = c.method,
                                     .target = c.target,
                                     .status = c.status,
                                     .start = c.exchange_start,
                                     .end = now_seconds(),
                                     .client_gone = client_gone});
}

void HttpServer::respond(ConnectionId id, int status, std::string_view content_type,
                         std::string_view body, const std::vector<HttpHeader>& extra) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  Connection& c = *it->second;
  LLM42_ASSERT(c.busy && !c.streaming, "respond() without a request to answer");
  c.out += format_http_response(status, content_type, body, c.keep_alive, extra);
  // HEAD: the same head (with the Content-Length the body would have), no body.
  if (c.head_only) c.out.resize(c.out.size() - body.size());
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
  mark_dirty(c);
}

void HttpServer::send(ConnectionId id, std::string_view data) {
  auto it = by_id_.find(id);
  if (it == by_id_.end() || !it->second->streaming) return;
  Connection& c = *it->second;
  c.out += format_stream_piece(data, c.chunked);
  mark_dirty(c);
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
  end_exchange(c, false);
  if (!c.keep_alive) c.close_after_write = true;
  const double now = now_seconds();
  c.last_activity = now;
  if (!c.in.empty()) c.request_start = now;  // a pipelined request: its deadlines start now
  mark_dirty(c);
}

void HttpServer::mark_dirty(Connection& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(c.id);
}

void HttpServer::charge(Connection& c, size_t bytes) {
  buffered_bytes_ = buffered_bytes_ - c.charged + bytes;
  c.charged = bytes;
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
      if (c.out_since == 0) c.out_since = now_seconds();
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
  c.out_since = 0;
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
  // After the client's FIN, reading is over (and EPOLLIN/EPOLLRDHUP would fire for ever); a
  // reset or the end of a lingering close still shows as EPOLLHUP/EPOLLERR.
  const bool reading = c.want_in && !c.peer_closed;
  ev.events = (reading ? EPOLLIN | EPOLLRDHUP : 0u) | (c.want_out ? EPOLLOUT : 0u);
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void HttpServer::close_connection(Connection& c, bool abandoned) {
  const ConnectionId id = c.id;
  if (c.busy) end_exchange(c, true);
  charge(c, 0);
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  close(c.fd);
  by_id_.erase(id);
  if (abandoned && handlers_.on_abandon) handlers_.on_abandon(id);
}

void HttpServer::on_timer(double now) {
  std::vector<std::pair<ConnectionId, std::string>> late;  // a request being read: 408
  std::vector<ConnectionId> expired, stalled;
  for (const auto& [id, c] : by_id_) {
    if (c->lingering) {
      if (now > c->linger_deadline) expired.push_back(id);
    } else if (c->out_since > 0 && now - c->out_since > options_.write_timeout) {
      stalled.push_back(id);
    } else if (c->busy || c->close_after_write) {
      continue;
    } else if (c->request_start > 0 && !c->parser.head_complete() &&
               now - c->request_start > options_.head_timeout) {
      late.emplace_back(id, fmt::format("the request head was not complete within {} s "
                                        "(--timeout-request-head)",
                                        options_.head_timeout));
    } else if (c->head_done > 0 && now - c->head_done > options_.body_timeout) {
      late.emplace_back(id, fmt::format("the request body was not complete within {} s "
                                        "(--timeout-request-body)",
                                        options_.body_timeout));
    } else if (now - c->last_activity > options_.keep_alive_timeout) {
      if (c->in.empty() && c->out_off >= c->out.size()) {
        expired.push_back(id);
      } else if (!c->in.empty()) {
        late.emplace_back(id, fmt::format("no request bytes for {} s (--timeout-keep-alive)",
                                          options_.keep_alive_timeout));
      }
    }
  }
  for (ConnectionId id : expired) close_connection(*by_id_[id], false);
  for (ConnectionId id : stalled) {
    Connection& c = *by_id_[id];
    log_warn(
        "server: dropping a connection whose client left {} response bytes unread for {} s "
        "(--timeout-write)",
        c.out.size() - c.out_off, options_.write_timeout);
    close_connection(c, c.busy);
  }
  for (auto& [id, message] : late) refuse(*by_id_[id], 408, message);
  if (refused_connections_ > refused_logged_ && now - last_refusal_log_ >= 1.0) {
    log_warn("server: refused {} connections over --max-connections {}",
             refused_connections_ - refused_logged_, options_.max_connections);
    refused_logged_ = refused_connections_;
    last_refusal_log_ = now;
  }
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
