// The HTTP/1.1 transport: one event-loop thread on epoll, non-blocking sockets, keep-alive,
// pipelining (answered in order), 100-continue, streamed responses, idle timeouts, and a
// lingering close after an error so that the client reads the response before the reset.
//
// The application sees complete requests (on_request) and answers them from the loop thread,
// at once or later: other threads hand work back with post(). It is told when a connection
// goes away while one of its requests is being answered (on_abandon: the client disconnected
// or a write failed), which is how an engine request is aborted as soon as its client leaves.
// SIGINT and SIGTERM arrive through a signalfd (call block_shutdown_signals() before starting
// any thread) and are passed to on_signal.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
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
  int backlog = 4096;
};

struct HttpHandlers {
  // A complete request. Answer it with respond(), or start_stream() ... end_stream().
  std::function<void(ConnectionId, HttpRequest&)> on_request;
  // The connection closed before its request was answered.
  std::function<void(ConnectionId)> on_abandon;
  // Every response that goes out (for the metrics), with the request's path ("" when the
  // request could not be parsed).
  std::function<void(std::string_view path, int status)> on_response;
  std::function<void()> on_signal;
  // About every 100 ms.
  std::function<void(double now)> on_tick;
};

// Blocks SIGINT and SIGTERM in the calling thread (and so in threads it starts later) and
// ignores SIGPIPE, so that shutdown signals reach the server's signalfd only.
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
  void on_event(ConnectionId id, uint32_t events);
  void read_input(Connection& c);
  void process_input(Connection& c);
  void dispatch(Connection& c);
  void flush(Connection& c);
  void finish_response(Connection& c);
  void update_interest(Connection& c);
  void close_connection(Connection& c, bool abandoned);
  void run_posted();
  void on_timer(double now);
  void count(const Connection& c, int status);

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
  ConnectionId next_id_ = 16;  // ids below are the listening socket, eventfd and signalfd
  std::unordered_map<ConnectionId, std::unique_ptr<Connection>> by_id_;
  std::vector<ConnectionId> dirty_;  // connections with output or input to process

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace llm42::server
