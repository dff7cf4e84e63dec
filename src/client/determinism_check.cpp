#include "client/determinism_check.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/completion_client.h"
#include "client/http_client.h"
#include "util/error.h"
#include "util/timer.h"

namespace llm42::client {
namespace {

using json = nlohmann::json;

constexpr const char* kPrompts[] = {
    "Once upon a time",       "The little dog",      "One day, a girl named Lily",
    "Tom and his friend",     "In a small house",    "The sun was shining",
    "A big red ball",         "There was a cat who", "Mom said",
    "The bird flew over the", "Sam wanted to",       "It was a rainy day",
    "The old man had a",      "A tiny fish",         "The kids played in the",
    "Anna found a"};
constexpr int kNumPrompts = static_cast<int>(std::size(kPrompts));

std::string prompt_text(int i) {
  std::string p = kPrompts[i % kNumPrompts];
  if (i >= kNumPrompts) p += fmt::format(" and {}", i / kNumPrompts);
  return p;
}

// Request i: even ones greedy, odd ones sampled with seed + i; every other pair streamed.
json request_body(int i, const CheckOptions& o, const std::string& model, bool deterministic) {
  json b = {{"model", model},
            {"prompt", prompt_text(i)},
            {"max_tokens", o.max_tokens},
            {"logprobs", 1},
            {"return_token_ids", true},
            {"deterministic", deterministic}};
  if (i % 2 == 0) {
    b["temperature"] = 0.0;
  } else {
    b["temperature"] = 0.9;
    b["top_p"] = 0.95;
    b["seed"] = o.seed + static_cast<uint64_t>(i);
  }
  if ((i / 2) % 2 == 1) {
    b["stream"] = true;
    b["stream_options"] = {{"include_usage", true}};
  }
  return b;
}

// Sends bodies[order[k]] through `concurrency` clients; results are indexed like `bodies`.
std::vector<CompletionResult> run_batch(const Url& url, const std::vector<json>& bodies,
                                        const std::vector<int>& order, int concurrency,
                                        const std::string& api_key) {
  std::vector<CompletionResult> results(bodies.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, concurrency); ++t) {
    threads.emplace_back([&] {
      HttpClient client(url);
      for (size_t k = next++; k < order.size(); k = next++) {
        const int i = order[k];
        results[static_cast<size_t>(i)] = complete(client, bodies[static_cast<size_t>(i)], api_key);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

// Non-deterministic traffic of varied lengths and sampling settings, from `clients` threads,
// until stopped.
class Background {
 public:
  Background(const Url& url, const CheckOptions& o, const std::string& model) {
    for (int t = 0; t < o.background; ++t) {
      threads_.emplace_back([this, url, o, model, t] {
        HttpClient client(url);
        std::mt19937_64 rng(o.seed * 7919 + static_cast<uint64_t>(t));
        std::uniform_int_distribution<int> len(4, std::max(8, 2 * o.max_tokens));
        std::uniform_int_distribution<int> prompt(0, 4 * kNumPrompts - 1);
        while (!stop_) {
          json b = {{"model", model},
                    {"prompt", prompt_text(prompt(rng))},
                    {"max_tokens", len(rng)},
                    {"temperature", 1.0},
                    {"ignore_eos", true},
                    {"stream", (rng() & 1) == 1}};
          if (complete(client, b, o.api_key).ok) ++sent_;
        }
      });
    }
  }
  ~Background() { stop(); }
  int stop() {
    stop_ = true;
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
    return sent_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> sent_{0};
  std::vector<std::thread> threads_;
};

struct Comparison {
  std::string name;
  bool deterministic = true;
  int requests = 0;
  int mismatched = 0;
  int failed = 0;
  int first_request = -1, first_position = -1;
  std::string first_kind;  // "token id", "logprob", "length", "error"
  std::string first_error;
  double seconds = 0;
  bool passed() const { return mismatched == 0 && failed == 0; }
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

Comparison compare(std::string name, bool deterministic, const std::vector<CompletionResult>& ref,
                   const std::vector<CompletionResult>& got, double seconds) {
  Comparison c;
  c.name = std::move(name);
  c.deterministic = deterministic;
  c.requests = static_cast<int>(got.size());
  c.seconds = seconds;
  for (size_t i = 0; i < got.size(); ++i) {
    const CompletionResult& a = ref[i];
    const CompletionResult& b = got[i];
    int pos = -1;
    std::string kind;
    if (!b.ok) {
      ++c.failed;
      if (c.first_error.empty()) c.first_error = b.error;
      pos = 0;
      kind = "error";
    } else {
      const size_t n = std::min(a.token_ids.size(), b.token_ids.size());
      for (size_t k = 0; k < n && pos < 0; ++k) {
        if (a.token_ids[k] != b.token_ids[k]) {
          pos = static_cast<int>(k);
          kind = "token id";
        } else if (k < a.logprobs.size() && k < b.logprobs.size() &&
                   !same_bits(a.logprobs[k], b.logprobs[k])) {
          pos = static_cast<int>(k);
          kind = "logprob";
        }
      }
      if (pos < 0 && (a.token_ids.size() != b.token_ids.size() ||
                      a.logprobs.size() != b.logprobs.size())) {
        pos = static_cast<int>(n);
        kind = "length";
      }
      if (pos >= 0) ++c.mismatched;
    }
    if (pos >= 0 && c.first_request < 0) {
      c.first_request = static_cast<int>(i);
      c.first_position = pos;
      c.first_kind = kind;
    }
  }
  return c;
}

}  // namespace

int run_determinism_check(const CheckOptions& o) {
  if (o.prompts < 1) fail("--prompts must be at least 1");
  if (o.max_tokens < 1) fail("--max-tokens must be at least 1");
  const Url url = Url::parse(o.url);
  const std::string model =
      o.model.empty() ? first_served_model(url, o.api_key)["id"].get<std::string>() : o.model;
  std::vector<json> det, nondet;
  for (int i = 0; i < o.prompts; ++i) {
    det.push_back(request_body(i, o, model, true));
    nondet.push_back(request_body(i, o, model, false));
  }
  std::vector<int> in_order(static_cast<size_t>(o.prompts));
  for (int i = 0; i < o.prompts; ++i) in_order[static_cast<size_t>(i)] = i;
  std::vector<int> shuffled = in_order;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(o.seed + 1));
  const int n_greedy = (o.prompts + 1) / 2;
  std::printf("llm42 check: %s, model %s\n%d prompts (%d greedy, %d seeded sampling), "
              "max_tokens %d, token ids and logprobs compared bitwise\n\n",
              url.str().c_str(), model.c_str(), o.prompts, n_greedy, o.prompts - n_greedy,
              o.max_tokens);
  std::fflush(stdout);

  auto timed = [](auto&& f) {
    const double t0 = now_seconds();
    auto r = f();
    return std::pair{std::move(r), now_seconds() - t0};
  };
  const auto [ref, ref_s] = timed([&] { return run_batch(url, det, in_order, 1, o.api_key); });
  std::vector<Comparison> rows;
  rows.push_back(compare("alone, one at a time (reference)", true, ref, ref, ref_s));
  rows.back().requests = o.prompts;
  for (size_t i = 0; i < ref.size(); ++i)
    if (!ref[i].ok) {
      ++rows.back().failed;
      if (rows.back().first_error.empty()) rows.back().first_error = ref[i].error;
    }
  const auto [conc, conc_s] =
      timed([&] { return run_batch(url, det, in_order, o.concurrency, o.api_key); });
  rows.push_back(compare(fmt::format("concurrent ({} at a time)", o.concurrency), true, ref, conc,
                         conc_s));
  const auto [shuf, shuf_s] =
      timed([&] { return run_batch(url, det, shuffled, o.concurrency, o.api_key); });
  rows.push_back(compare(fmt::format("shuffled order ({} at a time)", o.concurrency), true, ref,
                         shuf, shuf_s));
  int bg_sent = 0;
  const auto [bg, bg_s] = timed([&] {
    Background background(url, o, model);
    auto r = run_batch(url, det, shuffled, o.concurrency, o.api_key);
    bg_sent = background.stop();
    return r;
  });
  rows.push_back(compare(fmt::format("with {} background clients", o.background), true, ref, bg,
                         bg_s));

  // The same prompts without `deterministic`: how many diverge under the same load.
  const auto [nd_ref, nd_ref_s] =
      timed([&] { return run_batch(url, nondet, in_order, 1, o.api_key); });
  const auto [nd_load, nd_load_s] = timed([&] {
    Background background(url, o, model);
    auto r = run_batch(url, nondet, shuffled, o.concurrency, o.api_key);
    bg_sent += background.stop();
    return r;
  });
  rows.push_back(compare("NOT deterministic: alone vs under load", false, nd_ref, nd_load,
                         nd_ref_s + nd_load_s));
  const size_t nd_row = rows.size() - 1;

  // Other servers (e.g. another TP size): the same deterministic answers, bit for bit.
  std::vector<std::pair<std::string, std::set<std::string>>> other_fingerprints;
  for (const std::string& other : o.compare_urls) {
    const Url u = Url::parse(other);
    const std::string m =
        o.model.empty() ? first_served_model(u, o.api_key)["id"].get<std::string>() : o.model;
    std::vector<json> det2 = det, nondet2 = nondet;
    for (json& b : det2) b["model"] = m;
    for (json& b : nondet2) b["model"] = m;
    const auto [alone2, alone2_s] =
        timed([&] { return run_batch(u, det2, in_order, 1, o.api_key); });
    rows.push_back(compare(fmt::format("{}: alone", u.str()), true, ref, alone2, alone2_s));
    const auto [conc2, conc2_s] =
        timed([&] { return run_batch(u, det2, shuffled, o.concurrency, o.api_key); });
    rows.push_back(compare(fmt::format("{}: shuffled, {} at a time", u.str(), o.concurrency), true,
                           ref, conc2, conc2_s));
    const auto [nd2, nd2_s] = timed([&] { return run_batch(u, nondet2, in_order, 1, o.api_key); });
    rows.push_back(compare(fmt::format("NOT deterministic: {}", u.str()), false, nd_ref, nd2,
                           nd2_s));
    std::set<std::string> fps;
    for (const auto* results : {&alone2, &conc2})
      for (const CompletionResult& r : *results)
        if (r.ok) fps.insert(r.system_fingerprint);
    other_fingerprints.emplace_back(u.str(), std::move(fps));
  }

  std::set<std::string> fingerprints;
  for (const auto* results : {&ref, &conc, &shuf, &bg})
    for (const CompletionResult& r : *results)
      if (r.ok) fingerprints.insert(r.system_fingerprint);

  size_t width = 42;
  for (const Comparison& c : rows) width = std::max(width, c.name.size());
  std::printf("%-*s %8s %10s %8s  %-26s %6s  %s\n", static_cast<int>(width), "scenario", "requests", "mismatched",
              "failed", "first mismatch", "time", "result");
  bool all_pass = true;
  for (const Comparison& c : rows) {
    const std::string first =
        c.first_request < 0 ? "-"
                            : fmt::format("req {} pos {} ({})", c.first_request, c.first_position,
                                          c.first_kind);
    const char* result = !c.deterministic ? "info" : (c.passed() ? "PASS" : "FAIL");
    if (c.deterministic && !c.passed()) all_pass = false;
    std::printf("%-*s %8d %10d %8d  %-26s %5.1fs  %s\n", static_cast<int>(width), c.name.c_str(),
                c.requests,
                c.mismatched, c.failed, first.c_str(), c.seconds, result);
    if (!c.first_error.empty()) std::printf("    first error: %s\n", c.first_error.c_str());
  }
  const bool one_fingerprint = fingerprints.size() <= 1;
  if (!one_fingerprint) all_pass = false;
  std::printf("\nsystem_fingerprint: %s\nbackground requests completed: %d\n",
              fingerprints.empty()
                  ? "(none)"
                  : (one_fingerprint ? fingerprints.begin()->c_str()
                                     : "CHANGED between responses (FAIL)"),
              bg_sent);
  for (const auto& [u, fps] : other_fingerprints)
    std::printf("system_fingerprint of %s: %s%s\n", u.c_str(),
                fps.empty() ? "(none)" : fps.begin()->c_str(),
                !fps.empty() && !fingerprints.empty() && *fps.begin() == *fingerprints.begin()
                    ? " (the same)"
                    : "");
  const Comparison& nd = rows[nd_row];
  std::printf("non-deterministic requests that diverged under load: %d of %d\n", nd.mismatched,
              nd.requests);
  std::printf("%s\n", all_pass ? "PASS: every deterministic request was bitwise identical"
                               : "FAIL: deterministic requests differed (see above)");

  if (!o.json_out.empty()) {
    json scenarios = json::array();
    for (const Comparison& c : rows) {
      json s = {{"name", c.name},
                {"deterministic", c.deterministic},
                {"requests", c.requests},
                {"mismatched", c.mismatched},
                {"failed", c.failed},
                {"seconds", c.seconds},
                {"first_mismatch", nullptr}};
      if (c.first_request >= 0)
        s["first_mismatch"] = {
            {"request", c.first_request}, {"position", c.first_position}, {"kind", c.first_kind}};
      if (c.deterministic) s["passed"] = c.passed();
      scenarios.push_back(std::move(s));
    }
    const json out = {{"url", url.str()},
                      {"model", model},
                      {"prompts", o.prompts},
                      {"max_tokens", o.max_tokens},
                      {"system_fingerprints", fingerprints},
                      {"compare_urls", o.compare_urls},
                      {"scenarios", std::move(scenarios)},
                      {"nondeterministic_diverged", nd.mismatched},
                      {"passed", all_pass}};
    std::ofstream f(o.json_out);
    if (!f) fail("--json {}: cannot write", o.json_out);
    f << out.dump(2) << "\n";
  }
  return all_pass ? 0 : 1;
}

}  // namespace llm42::client
