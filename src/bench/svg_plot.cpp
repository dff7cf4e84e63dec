#include "bench/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>

namespace llm42::bench {
namespace {

constexpr double kPanelW = 460, kPanelH = 320;
constexpr double kLeft = 70, kRight = 20, kTop = 36, kBottom = 50;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A 1-2-5 step giving about `target` intervals over [lo, hi].
double nice_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / target;
  if (!(raw > 0)) return 1;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string tick_label(double v, double step) {
  if (step >= 1) return fmt::format("{:.0f}", v);
  const int decimals = static_cast<int>(std::ceil(-std::log10(step)));
  return fmt::format("{:.{}f}", v, decimals);
}

template <typename... Args>
void append(std::string& out, fmt::format_string<Args...> f, Args&&... args) {
  fmt::format_to(std::back_inserter(out), f, std::forward<Args>(args)...);
}

}  // namespace

std::string render_svg(const std::string& title, const std::vector<PlotPanel>& panels,
                       int columns) {
  std::map<std::string, size_t> colour_of;
  for (const PlotPanel& p : panels)
    for (const PlotSeries& s : p.series)
      colour_of.emplace(s.label, colour_of.size() % std::size(kColors));
  columns = std::max(1, std::min<int>(columns, static_cast<int>(panels.size())));
  const int rows = (static_cast<int>(panels.size()) + columns - 1) / columns;
  const double legend_h = 24.0 * static_cast<double>((colour_of.size() + 3) / 4);
  const double header = 40 + legend_h;
  const double width = kPanelW * columns, height = header + kPanelH * rows;

  std::string out;
  append(out,
         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" "
         "viewBox=\"0 0 {:.0f} {:.0f}\" font-family=\"sans-serif\" font-size=\"12\">\n",
         width, height, width, height);
  append(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
  append(out, "<text x=\"{:.1f}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
         width / 2, escape(title));
  // Legend: four entries a row.
  size_t k = 0;
  for (const auto& [label, colour] : colour_of) {
    const double x = 20 + static_cast<double>(k % 4) * (width - 40) / 4;
    const double y = 44 + 24.0 * static_cast<double>(k / 4);
    append(out,
           "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
           "stroke-width=\"3\"/>\n",
           x, y, x + 24, y, kColors[colour]);
    append(out, "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", x + 30, y + 4, escape(label));
    ++k;
  }

  for (size_t pi = 0; pi < panels.size(); ++pi) {
    const PlotPanel& p = panels[pi];
    const double ox = kPanelW * static_cast<double>(pi % static_cast<size_t>(columns));
    const double oy = header + kPanelH * static_cast<double>(pi / static_cast<size_t>(columns));
    const double px = ox + kLeft, py = oy + kTop;
    const double pw = kPanelW - kLeft - kRight, ph = kPanelH - kTop - kBottom;
    double x_lo = INFINITY, x_hi = -INFINITY, y_hi = 0, y_min = INFINITY;
    for (const PlotSeries& s : p.series)
      for (const auto& [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        x_lo = std::min(x_lo, x);
        x_hi = std::max(x_hi, x);
        y_hi = std::max(y_hi, y);
        y_min = std::min(y_min, y);
      }
    if (!(x_lo <= x_hi)) x_lo = 0, x_hi = 1;
    if (x_hi == x_lo) x_lo -= 0.5, x_hi += 0.5;
    const double x_step = nice_step(x_lo, x_hi, 5);
    x_lo = std::floor(x_lo / x_step) * x_step;
    x_hi = std::ceil(x_hi / x_step) * x_step;
    if (y_hi <= 0) y_hi = 1;
    double y_lo = 0;
    if (!p.y_from_zero && std::isfinite(y_min) && y_min > 0) {
      y_lo = y_min;
      if (y_hi - y_lo < 1e-9 * y_hi) y_lo -= 0.05 * y_hi, y_hi += 0.05 * y_hi;
    }
    const double y_step = nice_step(y_lo, y_hi, 5);
    y_lo = std::floor(y_lo / y_step) * y_step;
    y_hi = std::ceil(y_hi / y_step) * y_step;
    if (y_hi <= y_lo) y_hi = y_lo + y_step;
    auto sx = [&](double x) { return px + (x - x_lo) / (x_hi - x_lo) * pw; };
    auto sy = [&](double y) { return py + ph - (y - y_lo) / (y_hi - y_lo) * ph; };

    append(out,
           "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
           px + pw / 2, oy + 22, escape(p.title));
    for (double y = y_lo; y <= y_hi + y_step / 2; y += y_step) {
      append(out,
             "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n",
             px, sy(y), px + pw, sy(y));
      append(out, "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", px - 6,
             sy(y) + 4, tick_label(y, y_step));
    }
    for (double x = x_lo; x <= x_hi + x_step / 2; x += x_step) {
      append(out,
             "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#eee\"/>\n",
             sx(x), py, sx(x), py + ph);
      append(out, "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", sx(x),
             py + ph + 16, tick_label(x, x_step));
    }
    append(out,
           "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" "
           "stroke=\"#333\"/>\n",
           px, py, pw, ph);
    append(out, "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", px + pw / 2,
           py + ph + 36, escape(p.x_label));
    append(out,
           "<text transform=\"translate({:.1f},{:.1f}) rotate(-90)\" "
           "text-anchor=\"middle\">{}</text>\n",
           ox + 18, py + ph / 2, escape(p.y_label));
    for (const PlotSeries& s : p.series) {
      std::vector<std::pair<double, double>> pts;
      for (const auto& pt : s.points)
        if (std::isfinite(pt.first) && std::isfinite(pt.second)) pts.push_back(pt);
      std::sort(pts.begin(), pts.end());
      const char* colour = kColors[colour_of[s.label]];
      std::string path;
      for (const auto& [x, y] : pts)
        path += fmt::format("{}{:.1f},{:.1f} ", path.empty() ? "M" : "L", sx(x), sy(y));
      if (!path.empty())
        append(out, "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", path,
               colour, s.measured ? "" : " stroke-dasharray=\"6,4\"");
      if (!s.measured) continue;
      for (const auto& [x, y] : pts)
        append(out,
               "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}: ({}, {:.4g})"
               "</title></circle>\n",
               sx(x), sy(y), colour, escape(s.label), x, y);
    }
  }
  out += "</svg>\n";
  return out;
}

}  // namespace llm42::bench
