// The SVG writer of the benchmark plots: escaping, one path per series, and the y axis.
#include "bench/svg_plot.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace llm42::bench {
namespace {

TEST(SvgPlot, EscapesAndDrawsEverySeries) {
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

TEST(SvgPlot, AxisFromZeroOrSpanningTheData) {
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
}  // namespace llm42::bench
