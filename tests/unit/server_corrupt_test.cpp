// Robustness of the two parsers that read untrusted bytes: the HTTP request parser and the
// OpenAI request parser. Replays the seed corpus of the fuzz targets (tests/fuzz_corpus/) and
// thousands of deterministic random mutations of it; scripts/test.sh runs these suites again
// under AddressSanitizer and UndefinedBehaviorSanitizer.
//
// Invariants: no crash; HTTP errors are among the statuses the parser documents; feeding the
// bytes in random pieces parses exactly as feeding them whole; request bodies are accepted or
// refused with an ApiError (400 naming a field or none), never another exception.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/http_parser.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/request_builder.h"

namespace llm42::server {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> corpus(const std::string& name) {
  std::vector<std::string> out;
  const fs::path dir = fs::path(LLM42_SOURCE_DIR) / "tests" / "fuzz_corpus" / name;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    out.push_back(ss.str());
  }
  return out;
}

// One to four edits of `s`: bit flips, bytes that matter to the grammars, inserted, deleted or
// duplicated slices, truncation, and splices with another corpus entry.
std::string mutate(std::string s, const std::vector<std::string>& all, std::mt19937_64& rng) {
  static constexpr char kSpecial[] = {'\r', '\n', ':', ' ', '\t', '"', '{', '}', '[', ']', ',',
                                      '\\', '\0', '\x7f', '\xff', '\xc3', '0', '9', '-', 'e'};
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < edits; ++k) {
    switch (rng() % 7) {
      case 0:
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        if (!s.empty()) s[pick(s.size())] = kSpecial[pick(sizeof(kSpecial))];
        break;
      case 2:
        s.insert(pick(s.size() + 1), 1 + pick(3), kSpecial[pick(sizeof(kSpecial))]);
        break;
      case 3: {
        const size_t at = pick(s.size() + 1);
        s.erase(at, 1 + pick(16));
        break;
      }
      case 4: {
        const size_t at = pick(s.size() + 1);
        s.insert(pick(s.size() + 1), s.substr(at, 1 + pick(32)));
        break;
      }
      case 5:
        s.resize(pick(s.size() + 1));
        break;
      default: {
        const std::string& other = all[pick(all.size())];
        const size_t from = pick(other.size() + 1);
        s.insert(pick(s.size() + 1), other.substr(from, pick(64)));
        break;
      }
    }
  }
  return s;
}

struct HttpOutcome {
  std::vector<std::string> requests;  // method, target, headers and body of each, flattened
  int error = 0;
  bool operator==(const HttpOutcome&) const = default;
};

// Parses every request of `data` given in pieces cut at `cuts` (sorted offsets).
HttpOutcome parse_http(const std::string& data, const std::vector<size_t>& cuts,
                       const HttpLimits& limits) {
  static const std::set<int> kStatuses = {400, 411, 413, 414, 431, 501, 505};
  HttpRequestParser p(limits);
  HttpOutcome out;
  std::string buf;
  size_t fed = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(data.size());
  for (size_t end : ends) {
    buf.append(data, fed, end - fed);
    fed = end;
    while (!buf.empty()) {
      const HttpParseStatus st = p.parse(buf);
      if (st == HttpParseStatus::kError) {
        out.error = p.error_status();
        EXPECT_TRUE(kStatuses.count(out.error)) << out.error;
        EXPECT_FALSE(p.error_message().empty());
        return out;
      }
      if (st == HttpParseStatus::kIncomplete) break;
      EXPECT_LE(p.request_size(), buf.size());
      const HttpRequest& r = p.request();
      EXPECT_LE(r.body.size(), limits.max_body_bytes);
      EXPECT_LE(r.headers.size(), limits.max_headers);
      std::string flat = r.method + ' ' + r.target + ' ' + r.path + ' ' +
                         std::to_string(r.keep_alive) + '\n';
      for (const auto& [k, v] : r.headers) flat += k + ':' + v + '\n';
      out.requests.push_back(flat + r.body);
      buf.erase(0, p.request_size());
      p.reset();
    }
  }
  return out;
}

// The body as the server takes it: parse, then expand with no tokenizer or template (the
// engine is not involved). Only ApiError may come out.
void parse_body(const std::string& body) {
  for (Endpoint e : {Endpoint::kCompletions, Endpoint::kChatCompletions}) {
    try {
      const ApiRequest r = parse_api_request(body, e);
      EXPECT_GE(r.n, 1);
      EXPECT_FALSE(r.prompts.empty());
      PromptContext ctx;
      ctx.max_seq_len = 64;
      build_engine_requests(r, ctx);
    } catch (const ApiError& err) {
      EXPECT_EQ(err.status(), 400);
      EXPECT_EQ(err.type(), "invalid_request_error");
      // The error itself must serialise (its message may quote the input).
      EXPECT_FALSE(dump_json(err.to_json()).empty());
    }
  }
}

TEST(CorruptHttpRequest, CorpusAndMutations) {
  const std::vector<std::string> seeds = corpus("http_request");
  ASSERT_GE(seeds.size(), 10u);
  HttpLimits limits;
  limits.max_request_line = 256;
  limits.max_header_bytes = 1024;
  limits.max_headers = 16;
  limits.max_body_bytes = 512;
  std::mt19937_64 rng(20260101);
  int errors = 0, completes = 0;
  for (int i = 0; i < 6000; ++i) {
    const std::string& seed = seeds[static_cast<size_t>(i) % seeds.size()];
    const std::string data = i < static_cast<int>(seeds.size()) ? seed : mutate(seed, seeds, rng);
    const HttpOutcome whole = parse_http(data, {}, limits);
    // The same bytes in random pieces, and one byte at a time for short inputs.
    std::vector<size_t> cuts;
    for (size_t k = 0, n = rng() % 6; k < n && !data.empty(); ++k) cuts.push_back(rng() % data.size());
    std::sort(cuts.begin(), cuts.end());
    EXPECT_EQ(parse_http(data, cuts, limits), whole) << "input #" << i;
    if (data.size() < 300) {
      std::vector<size_t> every;
      for (size_t k = 1; k < data.size(); ++k) every.push_back(k);
      EXPECT_EQ(parse_http(data, every, limits), whole) << "input #" << i;
    }
    errors += whole.error != 0;
    completes += !whole.requests.empty();
  }
  // The mutations reach both the accepting and the refusing paths.
  EXPECT_GT(errors, 500);
  EXPECT_GT(completes, 500);
}

TEST(CorruptApiRequest, CorpusAndMutations) {
  const std::vector<std::string> seeds = corpus("openai_request");
  ASSERT_GE(seeds.size(), 10u);
  std::mt19937_64 rng(4242);
  for (int i = 0; i < 6000; ++i) {
    const std::string& seed = seeds[static_cast<size_t>(i) % seeds.size()];
    parse_body(i < static_cast<int>(seeds.size()) ? seed : mutate(seed, seeds, rng));
  }
}

TEST(CorruptApiRequest, HostileShapes) {
  parse_body(std::string(100000, '['));
  parse_body("{\"prompt\": " + std::string(50000, '[') + "1" + std::string(50000, ']') + "}");
  parse_body("{\"prompt\": \"" + std::string(100000, 'a') + "\", \"n\": 16}");
  std::string many = "{\"prompt\": [";
  for (int i = 0; i < 20000; ++i) many += std::to_string(i) + ",";
  many += "1]}";
  parse_body(many);
  parse_body("{\"messages\": [" + std::string(10000, '{') + "]}");
  parse_body("{\"prompt\": \"a\", \"seed\": 99999999999999999999999999999}");
  parse_body("{\"prompt\": \"a\", \"max_tokens\": -0.0, \"top_k\": 1e300}");
}

}  // namespace
}  // namespace llm42::server
