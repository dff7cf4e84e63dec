// The HTTP/1.1 transport: one event-loop thread on epoll, non-blocking sockets, keep-alive,
// pipelining (answered in order), 100-continue, streamed responses, idle timeouts, and a
// lingering close after an error so that the client reads the response before the reset.
//
// The application sees each request's head as soon as it is complete (on_head: it may refuse
// the request there, before its body is read) and then the complete request (on_request), and
// answers it from the loop thread, at once or later: other threads hand work back with post().
// It is told when a connection goes away while one of its requests is being answered
// (on_abandon: the client disconnected, a write failed, or the client stopped reading past the
// write deadline), which is how an engine request is aborted as soon as its client leaves.
//
// Hostile clients are bounded: open connections (at the limit the longest-idle keep-alive
// connection is closed for a new one; without one, the new one gets a 503 and a close), a total
// deadline for a request's head and one for its body that trickling bytes do not extend (408),
// a budget of request bytes buffered across all connections (503), and a write deadline for
// responses the client does not read (closed; the request is abandoned). A client that
// half-closes (shutdown(SHUT_WR)) after its request still gets the answer; one that closes
// before its request is complete gets a 400.
//
// SIGINT, SIGTERM, SIGQUIT and SIGHUP arrive through a signalfd (call block_shutdown_signals()
// before starting any thread) and are passed to on_signal.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "server/http_message.h"
#include "server/http_parser.h"

namespace llm42::server {

using ConnectionId = uint64_t;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (see HttpServer::port())
  HttpLimits limits;
  double keep_alive_timeout = 5.0;  // seconds a connection may sit idle (or mid-request)
  double head_timeout = 10.0;       // seconds from a request's first byte to the end of its head
  double body_timeout = 60.0;       // seconds from the end of the head to the end of the body
  double write_timeout = 30.0;      // seconds a response's unsent bytes may wait for the client
  int max_connections = 4096;       // open at once; more are answered 503 and closed
  // Request bytes buffered across all connections (a body counts in full from its head on).
  size_t max_buffered_request_bytes = size_t{256} << 20;
  int backlog = 4096;
};

// A response decided before the request reached on_request.
struct HttpAnswer {
  int status = 200;
  std::string body;  // JSON
  std::vector<HttpHeader> headers;
};

// One request and its response, for the access log.
struct HttpExchange {
  ConnectionId conn = 0;
  std::string_view method;   // "" when the request line could not be parsed
  std::string_view target;   // as sent, with the query cut off
  int status = 0;            // 0: the client left before an answer began
  double start = 0;          // the request's first byte arrived
  double end = 0;            // the response's last byte was queued, or the client left
  bool client_gone = false;  // the connection closed before the response was complete
};

struct HttpHandlers {
  // A request's head (its body not read yet): an answer refuses the request with it.
  std::function<std::optional<HttpAnswer>(const HttpRequest& head)> on_head;
  // A complete request. Answer it with respond(), or start_stream() ... end_stream().
  std::function<void(ConnectionId, HttpRequest&)> on_request;
  // The connection closed before its request was answered.
  std::function<void(ConnectionId)> on_abandon;
  // Every response that goes out (for the metrics), with the request's path ("" when the
  // request could not be parsed).
  std::function<void(std::string_view path, int status)> on_response;
  // Every request's end: its response complete, or its client gone.
  std::function<void(const HttpExchange&)> on_exchange;
  std::function<void(int signo)> on_signal;
  // About every 100 ms.
  std::function<void(double now)> on_tick;
};

// Throws llm42::Error naming the flag when the options cannot work together.
void check_options(const HttpServerOptions& o);

// Blocks SIGINT, SIGTERM, SIGQUIT and SIGHUP in the calling thread (and so in threads it starts
// later) and ignores SIGPIPE, so that shutdown signals reach the server's signalfd only.
void block_shutdown_signals();

class HttpServer {
 public:
  // Binds and listens; throws llm42::Error naming the address when it cannot.
  HttpServer(const HttpServerOptions& options, HttpHandlers handlers);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

  // Runs the loop on this thread until stop().
  void run();
  // Thread-safe: runs `task` on the loop thread, soon.
  void post(std::function<void()> task);

  // Loop thread only. Calls for a connection that has gone away do nothing.
  void respond(ConnectionId c, int status, std::string_view content_type, std::string_view body,
               const std::vector<HttpHeader>& extra = {});
  void respond_error(ConnectionId c, int status, const std::string& body_json);
  void start_stream(ConnectionId c, int status, std::string_view content_type);
  void send(ConnectionId c, std::string_view data);
  void end_stream(ConnectionId c);
  bool is_open(ConnectionId c) const { return by_id_.count(c) != 0; }

  // Shutdown: stop accepting (new connections are refused), close idle connections, and close
  // the others once their current response is complete.
  void drain();
  void stop() { stop_ = true; }
  int num_connections() const { return static_cast<int>(by_id_.size()); }
  // Whether some connection still has bytes to write.
  bool has_pending_output() const;

 private:
  struct Connection;

  void accept_all();
  // At the connection limit: closes the connection idle the longest (between keep-alive
  // requests), as nginx does, so that a new client is not refused for an idle one. False when
  // every connection is busy or mid-request.
  bool evict_idle_connection();
  void refuse_connection(int fd);
  void on_event(ConnectionId id, uint32_t events);
  void read_input(Connection& c);
  void process_input(Connection& c);
  // At the end of a request's head: the application's check and the buffer budget. False when
  // the request was refused.
  bool admit_head(Connection& c, bool complete);
  // Moves the complete request out of the connection's buffer and begins answering it.
  HttpRequest take_request(Connection& c);
  void begin_exchange(Connection& c, const HttpRequest& req);
  // Answers the request being read with an error and closes the connection after it.
  void refuse(Connection& c, const HttpAnswer& answer);
  void refuse(Connection& c, int status, const std::string& message);
  void on_peer_closed(Connection& c);
  void flush(Connection& c);
  void mark_dirty(Connection& c);
  // Sets the bytes `c` holds against the buffer budget.
  void charge(Connection& c, size_t bytes);
  void finish_response(Connection& c);
  void update_interest(Connection& c);
  void close_connection(Connection& c, bool abandoned);
  void run_posted();
  void on_timer(double now);
  void count(Connection& c, int status);
  void end_exchange(Connection& c, bool client_gone);

  HttpServerOptions options_;
  HttpHandlers handlers_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  int signal_fd_ = -1;
  int spare_fd_ = -1;  // released to accept-and-close when out of file descriptors
  int port_ = 0;
  bool stop_ = false;
  bool draining_ = false;
  size_t buffered_bytes_ = 0;  // request bytes charged by all connections
  int64_t refused_connections_ = 0, refused_logged_ = 0;  // over max_connections
  double last_refusal_log_ = 0;
  double last_failed_eviction_ = 0;
  ConnectionId next_id_ = 16;  // ids below are the listening socket, eventfd and signalfd
  std::unordered_map<ConnectionId, std::unique_ptr<Connection>> by_id_;
  std::vector<ConnectionId> dirty_;  // connections with output or input to process

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace llm42::server
