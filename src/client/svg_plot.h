// Line charts as a standalone SVG file (no plotting library): a grid of panels, each with
// axes, ticks, and one line with markers per series, and a shared legend.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace llm42::client {

struct PlotSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in x order
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

}  // namespace llm42::client
