// Line charts as a standalone SVG file (no plotting library): a grid of panels, each with
// axes, ticks, and one line per series (with markers where measured), and a shared legend.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace llm42::bench {

struct PlotSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in x order
  // A marker at each point (a measurement); false for a level drawn across a span (dashed, no
  // markers), whose ends were not measured there.
  bool measured = true;
};

struct PlotPanel {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<PlotSeries> series;
  // The y axis starts at 0 (amounts), or spans the data (ratios near 1, where 0 would flatten
  // the differences that matter).
  bool y_from_zero = true;
};

// Panels laid out `columns` wide. Series with the same label share a colour across panels.
std::string render_svg(const std::string& title, const std::vector<PlotPanel>& panels,
                       int columns = 2);

}  // namespace llm42::bench
