// The client side shared by `llm42 check` and `llm42 bench serve`: URL parsing and the
// server-sent-events parser (fed in every possible split), plus the SVG writer's escaping.
#include "client/http_client.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/sse_parser.h"
#include "client/svg_plot.h"
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

TEST(HttpSvg, EscapesAndDrawsEverySeries) {
  PlotPanel p{"TTFT <P50>", "req/s", "ms", {}};
  p.series.push_back({"dvr & friends", {{1, 10}, {2, 20}}});
  p.series.push_back({"off", {{1, 5}, {2, 7}}});
  const std::string svg = render_svg("title \"q\"", {p, p});
  EXPECT_TRUE(svg.starts_with("<svg"));
  EXPECT_TRUE(svg.ends_with("</svg>\n"));
  EXPECT_NE(svg.find("TTFT &lt;P50&gt;"), std::string::npos);
  EXPECT_NE(svg.find("dvr &amp; friends"), std::string::npos);
  EXPECT_NE(svg.find("title &quot;q&quot;"), std::string::npos);
  EXPECT_EQ(svg.find("<P50>"), std::string::npos);
  size_t paths = 0;
  for (size_t at = svg.find("<path"); at != std::string::npos; at = svg.find("<path", at + 1))
    ++paths;
  EXPECT_EQ(paths, 4u);
}

TEST(HttpSvg, AxisFromZeroOrSpanningTheData) {
  PlotPanel p{"ratio", "x", "y", {{"a", {{0, 0.93}, {100, 0.99}}}}};
  auto ticks = [](const std::string& svg) {
    std::vector<std::string> out;
    for (size_t at = svg.find("text-anchor=\"end\">"); at != std::string::npos;
         at = svg.find("text-anchor=\"end\">", at + 1)) {
      const size_t b = svg.find('>', at) + 1;
      out.push_back(svg.substr(b, svg.find('<', b) - b));
    }
    return out;
  };
  const std::vector<std::string> from_zero = ticks(render_svg("t", {p}));
  ASSERT_FALSE(from_zero.empty());
  EXPECT_EQ(from_zero.front(), "0.0");
  p.y_from_zero = false;
  const std::vector<std::string> spanning = ticks(render_svg("t", {p}));
  ASSERT_FALSE(spanning.empty());
  EXPECT_EQ(spanning.front(), "0.92");  // steps of 0.02 from just below the smallest point
  EXPECT_EQ(spanning.back(), "1.00");
}

}  // namespace
}  // namespace llm42::client
