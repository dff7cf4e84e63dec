// The HTTP/1.1 request parser: framing, limits, the RFC 9112 rules it enforces, and that feeding
// a request in pieces (split at every byte boundary) parses it exactly as feeding it whole.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/http_message.h"
#include "server/http_parser.h"

namespace llm42::server {
namespace {

struct Parsed {
  HttpParseStatus status = HttpParseStatus::kIncomplete;
  int error = 0;
  std::vector<HttpRequest> requests;
  size_t consumed = 0;
};

// Parses every request in `data` as a connection would, given `data` in pieces of `step` bytes
// (0: all at once).
Parsed parse_all(const std::string& data, size_t step = 0, HttpLimits limits = {}) {
  HttpRequestParser p(limits);
  Parsed out;
  std::string buf;
  size_t fed = 0;
  while (true) {
    const size_t n = step == 0 ? data.size() - fed : std::min(step, data.size() - fed);
    buf.append(data, fed, n);
    fed += n;
    while (!buf.empty()) {
      out.status = p.parse(buf);
      if (out.status == HttpParseStatus::kError) {
        out.error = p.error_status();
        return out;
      }
      if (out.status == HttpParseStatus::kIncomplete) break;
      out.requests.push_back(p.request());
      out.consumed += p.request_size();
      buf.erase(0, p.request_size());
      p.reset();
    }
    if (fed == data.size()) return out;
  }
}

int error_of(const std::string& data, HttpLimits limits = {}) {
  return parse_all(data, 0, limits).error;
}

TEST(HttpParser, SimpleGet) {
  const Parsed r = parse_all("GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v  \r\n\r\n");
  ASSERT_EQ(r.requests.size(), 1u);
  const HttpRequest& q = r.requests[0];
  EXPECT_EQ(q.method, "GET");
  EXPECT_EQ(q.target, "/v1/models?x=1");
  EXPECT_EQ(q.path, "/v1/models");
  EXPECT_EQ(q.query, "x=1");
  EXPECT_EQ(q.version_minor, 1);
  EXPECT_TRUE(q.keep_alive);
  ASSERT_NE(q.header("x-thing"), nullptr);
  EXPECT_EQ(*q.header("x-thing"), "v");
  EXPECT_EQ(q.header("missing"), nullptr);
  EXPECT_TRUE(q.body.empty());
}

TEST(HttpParser, PostBodyByContentLength) {
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
  const Parsed r = parse_all(req);
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].body, "hello world");
  EXPECT_EQ(r.consumed, req.size());
  // One byte short: still incomplete, but the head is known.
  HttpRequestParser p({});
  EXPECT_EQ(p.parse(req.substr(0, req.size() - 1)), HttpParseStatus::kIncomplete);
  EXPECT_TRUE(p.head_complete());
}

TEST(HttpParser, PipelinedRequestsInOrder) {
  const std::string data =
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
      "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  const Parsed r = parse_all(data);
  ASSERT_EQ(r.requests.size(), 3u);
  EXPECT_EQ(r.requests[0].path, "/a");
  EXPECT_EQ(r.requests[1].path, "/b");
  EXPECT_EQ(r.requests[1].body, "xyz");
  EXPECT_EQ(r.requests[2].path, "/c");
  EXPECT_FALSE(r.requests[2].keep_alive);
  EXPECT_EQ(r.consumed, data.size());
}

// Every way of cutting the stream into two reads, and byte-at-a-time, parses the same.
TEST(HttpParser, SplitAtEveryByteBoundary) {
  const std::string data =
      "\r\nPOST /v1/chat/completions HTTP/1.1\r\nHost: localhost:8000\r\n"
      "Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"messages\": []}\n"
      "GET /health HTTP/1.0\n\n"
      "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n";
  const Parsed whole = parse_all(data);
  ASSERT_EQ(whole.requests.size(), 3u);
  auto same = [&](const Parsed& r) {
    ASSERT_EQ(r.requests.size(), whole.requests.size());
    for (size_t i = 0; i < r.requests.size(); ++i) {
      EXPECT_EQ(r.requests[i].method, whole.requests[i].method);
      EXPECT_EQ(r.requests[i].target, whole.requests[i].target);
      EXPECT_EQ(r.requests[i].headers, whole.requests[i].headers);
      EXPECT_EQ(r.requests[i].body, whole.requests[i].body);
      EXPECT_EQ(r.requests[i].keep_alive, whole.requests[i].keep_alive);
    }
  };
  same(parse_all(data, 1));
  for (size_t cut = 1; cut < data.size(); ++cut) {
    HttpRequestParser p({});
    std::string buf = data.substr(0, cut);
    Parsed r;
    size_t fed = cut;
    bool more = true;
    while (more) {
      while (!buf.empty()) {
        const HttpParseStatus st = p.parse(buf);
        ASSERT_NE(st, HttpParseStatus::kError) << "cut at " << cut;
        if (st == HttpParseStatus::kIncomplete) break;
        r.requests.push_back(p.request());
        buf.erase(0, p.request_size());
        p.reset();
      }
      more = fed < data.size();
      buf += data.substr(fed);
      fed = data.size();
    }
    same(r);
  }
  EXPECT_FALSE(whole.requests[1].keep_alive);  // HTTP/1.0 without keep-alive
  EXPECT_FALSE(whole.requests[2].keep_alive);  // "close" wins
}

TEST(HttpParser, ConnectionSemantics) {
  EXPECT_TRUE(parse_all("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").requests[0].keep_alive);
  EXPECT_FALSE(parse_all("GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n")
                   .requests[0]
                   .keep_alive);
  const Parsed r = parse_all("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                             "Content-Length: 2\r\n\r\nok");
  EXPECT_TRUE(r.requests[0].expect_continue);
}

TEST(HttpParser, TargetForms) {
  const Parsed r = parse_all("GET http://example.com:80/v1/models?q HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].path, "/v1/models");
  EXPECT_EQ(r.requests[0].query, "q");
  EXPECT_EQ(parse_all("GET http://example.com HTTP/1.1\r\nHost: a\r\n\r\n").requests[0].path, "/");
  EXPECT_EQ(parse_all("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").requests[0].path, "*");
  EXPECT_EQ(error_of("GET v1/models HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET /a\x01z HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

TEST(HttpParser, PathIsPercentDecoded) {
  const Parsed r = parse_all(
      "GET /v1/models/meta-llama%2FLlama-3.2-1B-Instruct?a=%2F HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.requests.size(), 1u);
  EXPECT_EQ(r.requests[0].path, "/v1/models/meta-llama/Llama-3.2-1B-Instruct");
  EXPECT_EQ(r.requests[0].target, "/v1/models/meta-llama%2FLlama-3.2-1B-Instruct?a=%2F");
  EXPECT_EQ(r.requests[0].query, "a=%2F");  // the query is left as sent
  EXPECT_EQ(parse_all("GET /%68ealth%2b%2B%25 HTTP/1.1\r\nHost: a\r\n\r\n").requests[0].path,
            "/health++%");
  for (const char* bad : {"/a%", "/a%2", "/a%zz", "/a%2g", "/a%00b"}) {
    const Parsed e = parse_all(std::string("GET ") + bad + " HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(e.error, 400) << bad;
  }
}

TEST(HttpParser, MalformedRequestLines) {
  EXPECT_EQ(error_of("GET /\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
  EXPECT_EQ(error_of("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
  EXPECT_EQ(error_of("GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n"), 400);  // bare CR
}

TEST(HttpParser, MalformedHeaders) {
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\n\r\n"), 400);  // no Host in HTTP/1.1
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);  // space before colon
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400);
  constexpr char kNul[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
  EXPECT_EQ(error_of(std::string(kNul, sizeof(kNul) - 1)), 400);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n"), 400);
  // obs-text in values is allowed.
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n"), 0);
}

TEST(HttpParser, ContentLength) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\n";
  EXPECT_EQ(error_of(head + "Content-Length: abc\r\n\r\n"), 400);
  EXPECT_EQ(error_of(head + "Content-Length: -1\r\n\r\n"), 400);
  EXPECT_EQ(error_of(head + "Content-Length: +1\r\n\r\n"), 400);
  EXPECT_EQ(error_of(head + "Content-Length:\r\n\r\n"), 400);
  EXPECT_EQ(error_of(head + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"), 400);
  EXPECT_EQ(error_of(head + "Content-Length: 1, 2\r\n\r\nab"), 400);
  EXPECT_EQ(error_of(head + "Content-Length: 99999999999999999999999\r\n\r\n"), 413);
  const Parsed same = parse_all(head + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nab");
  ASSERT_EQ(same.requests.size(), 1u);
  EXPECT_EQ(same.requests[0].body, "ab");
  // No Content-Length and no Transfer-Encoding: no body.
  const Parsed none = parse_all(head + "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(none.requests.size(), 2u);
}

TEST(HttpParser, TransferEncodingIsRefused) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\n";
  EXPECT_EQ(error_of(head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 411);
  EXPECT_EQ(error_of(head + "Transfer-Encoding: CHUNKED\r\n\r\n"), 411);
  EXPECT_EQ(error_of(head + "Transfer-Encoding: gzip, chunked\r\n\r\n"), 501);
  EXPECT_EQ(error_of(head + "Transfer-Encoding: chunked, gzip\r\n\r\n"), 400);
  EXPECT_EQ(error_of(head + "Transfer-Encoding: gzip\r\n\r\n"), 400);
  EXPECT_EQ(error_of(head + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 400);
  EXPECT_EQ(error_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

TEST(HttpParser, Limits) {
  HttpLimits lim;
  lim.max_request_line = 64;
  lim.max_header_bytes = 256;
  lim.max_headers = 4;
  lim.max_body_bytes = 10;
  EXPECT_EQ(error_of("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", lim), 414);
  // Detected before the line ends: the parser never buffers an unbounded line.
  EXPECT_EQ(error_of("GET /" + std::string(100, 'a'), lim), 414);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(300, 'v') + "\r\n\r\n", lim),
            431);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(300, 'v'), lim), 431);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n", lim),
            431);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\n\r\n", lim), 0);
  // The body limit is enforced from the head, before any body byte arrives.
  EXPECT_EQ(error_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", lim), 413);
  EXPECT_EQ(parse_all("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", 0, lim)
                .requests.size(),
            1u);
  // Leading empty lines count against the head limit too.
  EXPECT_EQ(error_of(std::string(300, '\n'), lim), 431);
}

TEST(HttpParser, ErrorIsSticky) {
  HttpRequestParser p({});
  const std::string bad = "BAD REQUEST LINE WITH SPACES\r\n\r\n";
  EXPECT_EQ(p.parse(bad), HttpParseStatus::kError);
  EXPECT_EQ(p.parse(bad + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), HttpParseStatus::kError);
  EXPECT_FALSE(p.error_message().empty());
}

TEST(HttpMessage, ResponseFraming) {
  const std::string r = format_http_response(404, "application/json", "{}", false);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
  EXPECT_NE(r.find("\r\nContent-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nDate: "), std::string::npos);
  EXPECT_TRUE(r.ends_with("\r\n\r\n{}"));
  const std::string head = format_stream_head(200, "text/event-stream", true, true);
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(head.find("Connection: close"), std::string::npos);
  EXPECT_EQ(format_stream_piece("data: x\n\n", true), "9\r\ndata: x\n\n\r\n");
  EXPECT_EQ(format_stream_piece("", true), "");  // an empty chunk would end the body
  EXPECT_EQ(format_stream_piece("abc", false), "abc");
  EXPECT_EQ(format_stream_end(true), "0\r\n\r\n");
  EXPECT_EQ(format_stream_end(false), "");
}

}  // namespace
}  // namespace llm42::server
