#include "server/api_server.h"

#include <fmt/format.h>

#include <cmath>
#include <csignal>
#include <ctime>

#include "core/version.h"
#include "server/system_fingerprint.h"
#include "util/log.h"
#include "util/timer.h"

namespace llm42::server {
namespace {

using json = nlohmann::json;

constexpr double kAbortGraceSeconds = 5.0;  // after aborting, for the last events to go out
constexpr std::string_view kJson = "application/json";
constexpr std::string_view kEventStream = "text/event-stream; charset=utf-8";

HttpAnswer error_answer(const ApiError& e, std::vector<HttpHeader> headers = {}) {
  if (e.status() == 429 || e.status() == 503) headers.push_back({"Retry-After", "1"});
  return {e.status(), dump_json(e.to_json()), std::move(headers)};
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

}  // namespace

ApiServer::ApiServer(Engine& engine, const Tokenizer* tokenizer, const ChatTemplate* chat_template,
                     ApiServerOptions options)
    : engine_(engine),
      tokenizer_(tokenizer),
      chat_template_(chat_template),
      options_(std::move(options)),
      fingerprint_(system_fingerprint(engine.fingerprint(), tokenizer, chat_template)),
      start_time_(static_cast<int64_t>(std::time(nullptr))),
      http_(options_.http, HttpHandlers{
                               [this](const HttpRequest& head) { return check_head(head); },
                               [this](ConnectionId c, HttpRequest& r) { on_request(c, r); },
                               [this](ConnectionId c) { on_abandon(c); },
                               [this](std::string_view path, int status) {
                                 metrics_.count_response(path, status);
                               },
                               [this](const HttpExchange& x) { log_access(x); },
                               [this](int signo) { on_signal(signo); },
                               [this](double now) { on_tick(now); },
                           }),
      metrics_(options_.served_model_name, engine.max_seq_len()),
      id_rng_(std::random_device{}()) {
  prompt_context_.tokenizer = tokenizer_;
  prompt_context_.chat_template = chat_template_;
  prompt_context_.max_seq_len = engine_.max_seq_len();
  prompt_context_.mode = engine_.config().mode;
  prompt_context_.default_seed = engine_.config().default_seed;
  if (tokenizer_ != nullptr) prompt_context_.max_token_bytes = max_token_bytes(*tokenizer_);
  tokenize_context_ = {prompt_context_, options_.served_model_name, options_.request_limits};
  workers_ = std::make_unique<WorkerPool>(options_.workers);
}

ApiServer::~ApiServer() {
  workers_.reset();
  engine_.stop(false);
}

void ApiServer::run() {
  engine_.start();
  last_stats_time_ = now_seconds();
  next_stats_time_ = last_stats_time_ + options_.log_stats_interval;
  log_info("server: serving {} on http://{}:{} (fingerprint {})", options_.served_model_name,
           options_.http.host, http_.port(), fingerprint_);
  http_.run();
  // Whatever a worker still holds goes to the engine, which aborts it as it stops.
  workers_.reset();
  engine_.stop(false);
  log_info("server: stopped");
}

std::optional<HttpAnswer> ApiServer::check_head(const HttpRequest& head) const {
  if (head.path == "/health") return std::nullopt;
  int fields = 0;
  for (const auto& [name, value] : head.headers) fields += name == "authorization";
  if (fields > 1)
    return error_answer(ApiError(400, "invalid_request_error",
                                 "more than one Authorization header: send exactly one"));
  if (options_.api_key.empty()) return std::nullopt;
  const std::string* auth = head.header("authorization");
  if (auth != nullptr && auth->size() >= 7) {
    std::string scheme = auth->substr(0, 7);
    for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme == "bearer " &&
        constant_time_equal(std::string_view(*auth).substr(7), options_.api_key))
      return std::nullopt;
  }
  // RFC 6750 §3: the challenge, with the error code once a credential was presented.
  return error_answer(
      ApiError(401, "invalid_request_error",
               "missing or incorrect API key: send 'Authorization: Bearer KEY'", std::nullopt,
               "invalid_api_key"),
      {{"WWW-Authenticate", auth == nullptr ? "Bearer" : "Bearer error=\"invalid_token\""}});
}

void ApiServer::respond_error(ConnectionId conn, const ApiError& e) {
  const HttpAnswer a = error_answer(e);
  http_.respond(conn, a.status, kJson, a.body, a.headers);
}

void ApiServer::log_access(const HttpExchange& x) {
  UsageTotals usage;
  std::string_view id;
  if (auto c = job_of_conn_.find(x.conn); c != job_of_conn_.end()) {
    if (auto it = jobs_.find(c->second); it != jobs_.end() && it->second.job) {
      usage = it->second.job->usage();
      id = it->second.job->meta().id;
    }
  }
  // nginx's 499: the client closed the connection before an answer began.
  const int status = x.status == 0 ? 499 : x.status;
  log_event(LogLevel::kInfo, "access",
            {{"method", x.method.empty() ? std::string_view("-") : x.method},
             {"path", x.target.empty() ? std::string_view("-") : x.target},
             {"status", int64_t{status}},
             {"prompt_tokens", usage.prompt_tokens},
             {"completion_tokens", usage.completion_tokens},
             {"duration_ms", std::round((x.end - x.start) * 1e4) / 10},
             {"deterministic", usage.deterministic},
             {"rollbacks", usage.verify.rollbacks},
             {"client_gone", x.client_gone},
             {"id", id.empty() ? std::string_view("-") : id}});
}

json ApiServer::model_card() const {
  return {{"id", options_.served_model_name},
               {"object", "model"},
               {"created", start_time_},
               {"owned_by", "llm42"},
               {"root", options_.served_model_name},
               {"parent", nullptr},
               {"max_model_len", engine_.max_seq_len()},
               {"vocab_size", engine_.model_config().vocab_size}};
}

void ApiServer::on_request(ConnectionId conn, HttpRequest& req) {
  const std::string& path = req.path;
  const std::string& method = req.method;
  // HEAD is answered wherever GET is, with the same head and no body (RFC 9110 §9.3.2).
  auto only = [&](std::string_view allowed) {
    if (method == allowed || (allowed == "GET" && method == "HEAD")) return true;
    const std::string allow = allowed == "GET" ? "GET, HEAD" : std::string(allowed);
    http_.respond(conn, 405, kJson,
                  dump_json(ApiError(405, "invalid_request_error",
                                     fmt::format("method {} is not allowed on {}: use {}", method,
                                                 path, allow))
                                .to_json()),
                  {{"Allow", allow}});
    return false;
  };
  if (path == "/health") {
    if (!only("GET")) return;
    if (draining_) {
      respond_error(conn, ApiError(503, "service_unavailable", "the server is shutting down"));
    } else {
      http_.respond(conn, 200, kJson, "{\"status\":\"ok\"}");
    }
    return;
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (!only("POST")) return;
    submit(conn, path == "/v1/completions" ? Endpoint::kCompletions : Endpoint::kChatCompletions,
           std::move(req.body), now_seconds());
  } else if (path == "/v1/models") {
    if (only("GET"))
      http_.respond(conn, 200, kJson,
                    dump_json(json{{"object", "list"}, {"data", json::array({model_card()})}}));
  } else if (path.starts_with("/v1/models/")) {
    if (!only("GET")) return;
    const std::string id = path.substr(11);
    if (id == options_.served_model_name) {
      http_.respond(conn, 200, kJson, dump_json(model_card()));
    } else {
      respond_error(conn, ApiError(404, "invalid_request_error",
                                   fmt::format("the model '{}' does not exist", id), "model",
                                   "model_not_found"));
    }
  } else if (path == "/tokenize" || path == "/v1/tokenize" || path == "/detokenize" ||
             path == "/v1/detokenize") {
    if (only("POST"))
      submit_tokenizer_work(conn, path.ends_with("/detokenize"), std::move(req.body));
  } else if (path == "/tokenizer_info") {
    if (!only("GET")) return;
    try {
      http_.respond(conn, 200, kJson, dump_json(tokenizer_info(tokenize_context_)));
    } catch (const ApiError& e) {
      respond_error(conn, e);
    }
  } else if (path == "/metrics") {
    if (!only("GET")) return;
    const ServerMetrics::Gauges gauges{http_.num_connections(), static_cast<int>(jobs_.size())};
    http_.respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8",
                  metrics_.render(engine_.stats(), gauges));
  } else if (path == "/version") {
    if (only("GET")) http_.respond(conn, 200, kJson, dump_json(json{{"version", kVersion}}));
  } else {
    respond_error(conn, ApiError(404, "invalid_request_error",
                                 fmt::format("no such endpoint: {} {}", method, path)));
  }
}

void ApiServer::submit(ConnectionId conn, Endpoint endpoint, std::string body, double arrival) {
  if (draining_) {
    metrics_.count_rejected("shutting_down");
    respond_error(conn, ApiError(503, "service_unavailable", "the server is shutting down"));
    return;
  }
  // Engine requests waiting: in the scheduler, posted but not yet drained into it, and held by
  // workers (counted once each; their n is not known yet).
  const EngineStats st = engine_.stats();
  const int64_t waiting = st.waiting + (engine_added_.load() - st.requests_added) + in_workers_;
  if (waiting >= options_.max_queue) {
    metrics_.count_rejected("queue_full");
    respond_error(conn, ApiError(429, "rate_limit_error",
                                 fmt::format("the server is overloaded: {} requests are waiting "
                                             "(--max-queue {}); retry later",
                                             waiting, options_.max_queue),
                                 std::nullopt, "queue_full"));
    return;
  }
  const uint64_t job_id = next_job_id_++;
  jobs_[job_id] = Active{conn, arrival, nullptr, false};
  job_of_conn_[conn] = job_id;
  ++in_workers_;
  const uint64_t cost = body.size();
  workers_->submit(
      [this, job_id, endpoint, body = std::move(body)] { prepare(job_id, endpoint, body); }, cost);
}

void ApiServer::submit_tokenizer_work(ConnectionId conn, bool detokenize, std::string body) {
  if (draining_) {
    respond_error(conn, ApiError(503, "service_unavailable", "the server is shutting down"));
    return;
  }
  ++tokenizer_work_;
  const uint64_t cost = body.size();
  workers_->submit(
      [this, conn, detokenize, body = std::move(body)] {
        HttpAnswer a;
        try {
          a.body = dump_json(detokenize ? detokenize_response(body, tokenize_context_)
                                        : tokenize_response(body, tokenize_context_));
        } catch (const ApiError& e) {
          a = error_answer(e);
        } catch (const std::exception& e) {
          a = error_answer(
              ApiError(500, "server_error", fmt::format("internal error: {}", e.what())));
        }
        http_.post([this, conn, a = std::move(a)] {
          --tokenizer_work_;
          http_.respond(conn, a.status, kJson, a.body, a.headers);
        });
      },
      cost);
}

std::string ApiServer::new_request_id(Endpoint endpoint) {
  const std::lock_guard<std::mutex> lock(id_mutex_);
  return fmt::format("{}{:016x}{:016x}",
                     endpoint == Endpoint::kCompletions ? "cmpl-" : "chatcmpl-", id_rng_(),
                     id_rng_());
}

void ApiServer::prepare(uint64_t job_id, Endpoint endpoint, const std::string& body) {
  try {
    ApiRequest r = parse_api_request(body, endpoint, options_.request_limits);
    if (!r.deterministic_set) r.deterministic = options_.default_deterministic;
    if (r.model && *r.model != options_.served_model_name)
      throw model_not_found(*r.model, options_.served_model_name);
    EngineRequests er = build_engine_requests(r, prompt_context_);
    ResponseMeta meta;
    meta.endpoint = endpoint;
    meta.id = new_request_id(endpoint);
    meta.created = static_cast<int64_t>(std::time(nullptr));
    meta.model = options_.served_model_name;
    meta.system_fingerprint = fingerprint_;
    const DeterminismMode mode = prompt_context_.mode;
    const bool deterministic_answer = mode == DeterminismMode::kGlobal ||
                                      (mode == DeterminismMode::kDvr && r.deterministic);
    auto job = std::make_unique<CompletionJob>(r, std::move(er), std::move(meta), tokenizer_,
                                               deterministic_answer);
    const std::shared_ptr<OutputChannel> channel = job->channel();
    std::vector<Request>& requests = job->engine_requests();
    for (size_t c = 0; c < requests.size(); ++c) {
      auto on_output = [this, channel, job_id, c](RequestOutput&& out) {
        if (channel->push(static_cast<int>(c), std::move(out)))
          http_.post([this, job_id] { drain_job(job_id); });
      };
      try {
        job->engine_ids().push_back(engine_.add_request(std::move(requests[c]), on_output));
      } catch (const Error& e) {
        abort_engine_requests(*job);
        throw engine_error(e, endpoint);
      }
      engine_added_.fetch_add(1);
    }
    requests.clear();
    http_.post([this, job_id, j = std::shared_ptr<CompletionJob>(std::move(job))] {
      on_started(job_id, j);
    });
  } catch (const ApiError& e) {
    http_.post([this, job_id, e] { on_rejected(job_id, e); });
  } catch (const std::exception& e) {
    const ApiError err(500, "server_error", fmt::format("internal error: {}", e.what()));
    http_.post([this, job_id, err] { on_rejected(job_id, err); });
  }
}

void ApiServer::on_rejected(uint64_t job_id, const ApiError& error) {
  --in_workers_;
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  if (!it->second.abandoned) respond_error(it->second.conn, error);
  finish_job(job_id);
}

void ApiServer::on_started(uint64_t job_id, std::shared_ptr<CompletionJob> job) {
  --in_workers_;
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    abort_engine_requests(*job);
    return;
  }
  Active& a = it->second;
  if (a.abandoned || aborted_all_) {
    abort_engine_requests(*job);
    if (a.abandoned) {
      finish_job(job_id);
      return;
    }
  }
  a.job = std::move(job);
  if (a.job->stream()) {
    http_.start_stream(a.conn, 200, kEventStream);
    const std::string first = a.job->stream_start();
    if (!first.empty()) http_.send(a.conn, first);
  }
  drain_job(job_id);
}

void ApiServer::abort_engine_requests(const CompletionJob& job) {
  for (size_t c = 0; c < job.engine_ids().size(); ++c)
    if (static_cast<int>(c) >= job.num_choices() || !job.choice_finished(static_cast<int>(c)))
      engine_.abort(job.engine_ids()[c]);
}

void ApiServer::drain_job(uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || !it->second.job) return;  // gone, or not registered yet
  Active& a = it->second;
  CompletionJob& job = *a.job;
  const double now = now_seconds();
  std::string events;
  for (auto& [c, out] : job.channel()->take()) {
    const std::string reason(finish_reason_name(out.finish_reason));
    if (!job.apply(c, std::move(out), now, events)) continue;
    const ChoiceTiming& t = job.timing(c);
    RequestLatency lat;
    lat.has_first_token = t.first_token > 0;
    lat.ttft = t.first_token - a.arrival;
    lat.tpot = t.completion_tokens > 1 ? (t.last_token - t.first_token) / (t.completion_tokens - 1)
                                       : 0.0;
    lat.e2e = t.finished - a.arrival;
    lat.queue = t.queue;
    lat.prefill = t.prefill;
    lat.decode = t.first_token > 0 ? t.last_token - t.first_token : 0.0;
    lat.prompt_tokens = t.prompt_tokens;
    lat.generation_tokens = t.completion_tokens;
    metrics_.observe_request(lat, reason);
  }
  if (job.error()) {
    abort_engine_requests(job);
    if (job.stream()) {
      http_.send(a.conn, events + sse_event(dump_json(job.error()->to_json())) +
                             sse_event("[DONE]"));
      http_.end_stream(a.conn);
    } else {
      respond_error(a.conn, *job.error());
    }
    finish_job(job_id);
    return;
  }
  if (job.stream()) {
    if (job.all_finished()) events += job.stream_end();
    if (!events.empty()) http_.send(a.conn, events);
    if (job.all_finished()) {
      http_.end_stream(a.conn);
      finish_job(job_id);
    }
  } else if (job.all_finished()) {
    http_.respond(a.conn, 200, kJson, job.response_body());
    finish_job(job_id);
  }
}

void ApiServer::finish_job(uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  auto c = job_of_conn_.find(it->second.conn);
  if (c != job_of_conn_.end() && c->second == job_id) job_of_conn_.erase(c);
  jobs_.erase(it);
}

void ApiServer::on_abandon(ConnectionId conn) {
  auto c = job_of_conn_.find(conn);
  if (c == job_of_conn_.end()) return;
  const uint64_t job_id = c->second;
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  if (!it->second.job) {
    it->second.abandoned = true;  // a worker holds it: aborted when it comes back
    return;
  }
  log_debug("server: client of {} left, aborting", it->second.job->meta().id);
  abort_engine_requests(*it->second.job);
  finish_job(job_id);
}

void ApiServer::on_signal(int signo) {
  if (signo == SIGHUP) {
    // Nothing can be reloaded: ignore it, so that a server started from a terminal outlives it.
    log_info("server: SIGHUP ignored (SIGTERM, SIGINT or SIGQUIT shut down with a drain)");
    return;
  }
  const double now = now_seconds();
  if (!draining_) {
    draining_ = true;
    drain_deadline_ = now + options_.drain_timeout;
    log_info("server: shutting down: {} requests in flight get up to {} s to finish",
             jobs_.size(), options_.drain_timeout);
    http_.drain();
  } else {
    log_info("server: second signal: aborting the requests in flight");
    drain_deadline_ = now;
  }
  on_tick(now);
}

void ApiServer::log_stats(double now) {
  if (options_.log_stats_interval <= 0 || now < next_stats_time_) return;
  const EngineStats es = engine_.stats();
  // A line per interval in which the engine worked or holds requests; none while idle.
  if (es.steps != last_stats_.steps || es.running > 0 || es.waiting > 0)
    log_info("{}", engine_stats_line(last_stats_, es, now - last_stats_time_));
  last_stats_ = es;
  last_stats_time_ = now;
  next_stats_time_ = now + options_.log_stats_interval;
}

void ApiServer::on_tick(double now) {
  log_stats(now);
  if (!draining_) return;
  if (jobs_.empty() && tokenizer_work_ == 0) {
    // Done once the last bytes are out (or a client too slow to take them has had its grace).
    if (!http_.has_pending_output() || now > drain_deadline_ + kAbortGraceSeconds) http_.stop();
    return;
  }
  if (!aborted_all_ && now >= drain_deadline_) {
    aborted_all_ = true;
    abort_deadline_ = now;
    log_info("server: drain timeout: aborting {} requests", jobs_.size());
    for (auto& [id, a] : jobs_)
      if (a.job) abort_engine_requests(*a.job);
  }
  if (aborted_all_ && now > abort_deadline_ + kAbortGraceSeconds) {
    log_warn("server: {} requests did not end after the abort; closing", jobs_.size());
    http_.stop();
  }
}

}  // namespace llm42::server
