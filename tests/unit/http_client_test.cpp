// The client side shared by `llm42 check` and `llm42 bench serve`: URL parsing and the
// server-sent-events parser (fed in every possible split).
#include "client/http_client.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/sse_parser.h"
#include "util/error.h"

namespace llm42::client {
namespace {

TEST(HttpUrl, Parse) {
  Url u = Url::parse("http://127.0.0.1:8000");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8000);
  EXPECT_EQ(u.prefix, "");
  u = Url::parse("http://localhost:9/v1/");
  EXPECT_EQ(u.prefix, "");  // the API paths carry /v1 themselves
  u = Url::parse("http://host/proxy/v1");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.prefix, "/proxy");
  u = Url::parse("localhost:1234");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 1234);
  u = Url::parse("http://[::1]:8080");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 8080);
  EXPECT_THROW(Url::parse("https://x"), Error);
  EXPECT_THROW(Url::parse("http://:80"), Error);
  EXPECT_THROW(Url::parse("http://x:port"), Error);
}

std::vector<SseEvent> events_of(const std::string& stream, size_t step) {
  SseParser p;
  std::vector<SseEvent> out;
  for (size_t at = 0; at < stream.size(); at += step)
    p.feed(std::string_view(stream).substr(at, step), [&](const SseEvent& e) { out.push_back(e); });
  return out;
}

TEST(HttpSse, EventsInEveryFraming) {
  const std::string stream =
      ": a comment\r\n"
      "data: {\"a\":1}\r\n\r\n"
      "data:no space\n\n"
      "event: ping\rdata: x\r\rdata: line1\ndata: line2\n\n"
      "id: 7\nretry: 10\nunknown\n\n"  // no data: no event
      "data: [DONE]\n\n"
      "data: incomplete";
  for (size_t step = 1; step <= stream.size(); ++step) {
    const std::vector<SseEvent> e = events_of(stream, step);
    ASSERT_EQ(e.size(), 5u) << "step " << step;
    EXPECT_EQ(e[0].data, "{\"a\":1}");
    EXPECT_EQ(e[1].data, "no space");
    EXPECT_EQ(e[2].event, "ping");
    EXPECT_EQ(e[2].data, "x");
    EXPECT_EQ(e[3].data, "line1\nline2");
    EXPECT_EQ(e[3].event, "");
    EXPECT_EQ(e[4].data, "[DONE]");
  }
}

}  // namespace
}  // namespace llm42::client
