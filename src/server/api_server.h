// The OpenAI-compatible API on top of the HTTP transport and the engine (DESIGN.md §4):
//
//   event loop (HttpServer)  --request-->  WorkerPool: parse, validate, template, tokenize,
//        ^                                             Engine::add_request (one per choice)
//        |  post(drain job)                                   |
//   OutputChannel  <--committed outputs--  engine thread  <---+
//
// Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models[/{id}], GET /health
// (no auth; 503 while shutting down), GET /metrics, GET /version, and vLLM's tokenizer routes
// (tokenize_api.h): POST /tokenize and /detokenize (also under /v1/), GET /tokenizer_info. HEAD
// wherever GET. With an API key every route but /health needs "Authorization: Bearer KEY",
// checked from the request's head before its body is read. Every request ends with an access
// log line.
//
// Admission: a request is refused with 429 when --max-queue engine requests are already
// waiting (waiting in the engine's scheduler, queued for it, or being prepared by a worker),
// and with 503 once shutdown has begun. A client that is gone (a reset or failed write, or
// output left unread past the write deadline) has its engine requests aborted at once (their
// KV is freed at the next engine step); a half-closed client still gets its answer.
//
// Shutdown (SIGINT, SIGTERM or SIGQUIT; SIGHUP is logged and ignored): stop accepting, close idle
// connections, answer 503 to anything new, let requests in flight finish for up to the drain
// timeout, then abort the rest (streams end with an error event and [DONE]), stop the engine,
// return. A second signal skips the wait.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>

#include "chat/chat_template.h"
#include "engine/engine.h"
#include "server/completion_job.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/request_builder.h"
#include "server/tokenize_api.h"
#include "server/worker_pool.h"
#include "tokenizer/tokenizer.h"

namespace llm42::server {

struct ApiServerOptions {
  HttpServerOptions http;
  std::string served_model_name;
  std::string api_key;         // empty: no authentication
  int max_queue = 1024;        // engine requests waiting before new ones get 429
  double drain_timeout = 30;   // seconds in-flight requests get after SIGTERM
  int workers = 2;
  double log_stats_interval = 10;  // seconds between engine stats lines in the log; 0 = none
  RequestLimits request_limits;
  // Whether requests that do not say ('deterministic' / 'is_deterministic') are deterministic:
  // for clients that cannot add the field (lm-evaluation-harness).
  bool default_deterministic = false;
};

class ApiServer {
 public:
  // The engine must not be started yet; the server starts it and stops it before run()
  // returns. Binds the port (throws llm42::Error when it cannot).
  ApiServer(Engine& engine, const Tokenizer* tokenizer, const ChatTemplate* chat_template,
            ApiServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  int port() const { return http_.port(); }
  // Serves until shutdown completes.
  void run();

 private:
  // A completions request between its arrival and its last byte out.
  struct Active {
    ConnectionId conn = 0;
    double arrival = 0;
    std::shared_ptr<CompletionJob> job;  // null while a worker prepares it
    bool abandoned = false;              // the client left while a worker held it
  };

  // Refuses a request from its head, before its body is read: a second Authorization field,
  // or a missing or wrong API key.
  std::optional<HttpAnswer> check_head(const HttpRequest& head) const;
  void on_request(ConnectionId conn, HttpRequest& req);
  void on_abandon(ConnectionId conn);
  // The access log line of a request that ended.
  void log_access(const HttpExchange& x);
  void on_signal(int signo);
  void on_tick(double now);
  // Every --log-stats-interval seconds: the engine stats line.
  void log_stats(double now);

  void submit(ConnectionId conn, Endpoint endpoint, std::string body, double arrival);
  // POST /tokenize or /detokenize, answered from a worker (long prompts take a while).
  void submit_tokenizer_work(ConnectionId conn, bool detokenize, std::string body);
  // Worker thread: everything from the body to the engine.
  void prepare(uint64_t job_id, Endpoint endpoint, const std::string& body);
  void on_started(uint64_t job_id, std::shared_ptr<CompletionJob> job);
  void on_rejected(uint64_t job_id, const ApiError& error);
  // Applies what the engine committed for the job since last time, and answers.
  void drain_job(uint64_t job_id);
  void abort_engine_requests(const CompletionJob& job);
  void finish_job(uint64_t job_id);
  void respond_error(ConnectionId conn, const ApiError& e);
  // The entry of GET /v1/models (with vLLM's max_model_len, and vocab_size for load generators).
  nlohmann::json model_card() const;
  std::string new_request_id(Endpoint endpoint);

  Engine& engine_;
  const Tokenizer* tokenizer_;
  const ChatTemplate* chat_template_;
  ApiServerOptions options_;
  PromptContext prompt_context_;
  TokenizeContext tokenize_context_;
  std::string fingerprint_;
  int64_t start_time_ = 0;
  HttpServer http_;
  ServerMetrics metrics_;

  // Event-loop state.
  std::unordered_map<uint64_t, Active> jobs_;
  std::unordered_map<ConnectionId, uint64_t> job_of_conn_;
  uint64_t next_job_id_ = 1;
  int in_workers_ = 0;  // jobs handed to workers and not yet back
  int tokenizer_work_ = 0;  // tokenize/detokenize requests handed to workers, not yet answered
  std::mutex id_mutex_;  // new_request_id runs on the worker threads
  std::mt19937_64 id_rng_;
  bool draining_ = false;
  EngineStats last_stats_;  // at the last stats line (log_stats), or at run()
  double last_stats_time_ = 0, next_stats_time_ = 0;
  bool aborted_all_ = false;
  double drain_deadline_ = 0;
  double abort_deadline_ = 0;

  std::atomic<int64_t> engine_added_{0};  // engine requests added by the workers
  std::unique_ptr<WorkerPool> workers_;   // last: joined before the rest goes away
};

}  // namespace llm42::server
