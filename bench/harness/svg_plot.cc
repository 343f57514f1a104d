#include "bench/harness/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice::bench {
namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string Escape(const std::string& s) {
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

// Linear ticks at 1/2/5 x 10^k steps covering [lo, hi].
std::vector<double> NiceTicks(double lo, double hi, int target) {
  std::vector<double> ticks;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

}  // namespace

std::string FormatCompact(double v) {
  const double a = std::abs(v);
  auto trim = [](double x, const char* suffix) {
    std::string s = absl::StrFormat("%.3g", x);
    return s + suffix;
  };
  if (a >= 1e9) return trim(v / 1e9, "G");
  if (a >= 1e6) return trim(v / 1e6, "M");
  if (a >= 1e3) return trim(v / 1e3, "k");
  return absl::StrFormat("%.3g", v);
}

double PercentileToNines(double percentile, double max_nines) {
  if (percentile >= 100) return max_nines;
  return std::min(max_nines, -std::log10(1 - percentile / 100));
}

namespace {

// The value range of one y axis and how to map it to pixels.
struct Axis {
  double lo = INFINITY, hi = -INFINITY;
  bool log = false;
  std::vector<double> ticks;

  void Add(double y) {
    if (!std::isfinite(y) || (log && y <= 0)) return;
    lo = std::min(lo, y);
    hi = std::max(hi, y);
  }
  bool empty() const { return !std::isfinite(lo); }
  void Finish() {
    if (empty()) lo = log ? 1 : 0, hi = 1;
    if (log) {
      lo = std::pow(10, std::floor(std::log10(lo)));
      hi = std::pow(10, std::ceil(std::log10(hi)));
      if (hi <= lo) hi = lo * 10;
      for (double t = lo; t <= hi * 1.0001; t *= 10) ticks.push_back(t);
    } else {
      lo = std::min(0.0, lo);  // Rates, counts and sizes read best from zero.
      if (hi <= lo) hi = lo + 1;
      ticks = NiceTicks(lo, hi * 1.05, 6);
      // End the axis on a labelled tick above the data, so the top value stays readable.
      if (ticks.size() >= 2 && ticks.back() < hi * 1.05) {
        ticks.push_back(ticks.back() + (ticks[1] - ticks[0]));
      }
      hi = std::max(hi, ticks.back());
    }
  }
  // 0 at the bottom, 1 at the top.
  double Frac(double y) const {
    if (log) return (std::log10(y) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (y - lo) / (hi - lo);
  }
};

}  // namespace

std::string RenderLineChart(const PlotSpec& spec) {
  bool any_right = false;
  for (const PlotSeries& s : spec.series) any_right = any_right || s.right_axis;
  const double left = 78, right = any_right ? 78 : 24, top = 62, bottom = 58;
  const double w = spec.width - left - right, h = spec.height - top - bottom;

  double x_lo = INFINITY, x_hi = -INFINITY;
  Axis y1, y2;
  y1.log = y2.log = spec.log_y;
  for (const PlotSeries& s : spec.series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y) || (spec.log_y && y <= 0)) continue;
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      (s.right_axis ? y2 : y1).Add(y);
    }
  }
  for (const auto& [x, label] : spec.x_ticks) {
    x_lo = std::min(x_lo, x);
    x_hi = std::max(x_hi, x);
  }
  const bool empty = y1.empty() && y2.empty();
  if (!std::isfinite(x_lo)) x_lo = 0, x_hi = 1;
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  y1.Finish();
  y2.Finish();
  auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * w; };
  auto py = [&](const Axis& a, double y) { return top + h - a.Frac(y) * h; };

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      spec.width, spec.height, spec.width, spec.height);
  absl::StrAppendFormat(&svg,
                        "<text x=\"%g\" y=\"22\" font-size=\"15\" font-weight=\"bold\" "
                        "text-anchor=\"middle\">%s</text>\n",
                        spec.width / 2.0, Escape(spec.title));
  // Phases: shaded when not measured, a boundary line and a label either way.
  for (const PlotBand& b : spec.bands) {
    const double x0 = px(std::max(b.x0, x_lo)), x1 = px(std::min(b.x1, x_hi));
    if (x1 <= x0) continue;
    if (b.shaded) {
      absl::StrAppendFormat(&svg,
                            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                            "fill=\"#000\" fill-opacity=\"0.06\"/>\n",
                            x0, top, x1 - x0, h);
    }
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\" "
                          "stroke-dasharray=\"2,3\"/>\n"
                          "<text x=\"%.1f\" y=\"%.1f\" fill=\"#777\" font-size=\"11\">%s</text>\n",
                          x0, top, x0, top + h, x0 + 3, top + h - 5, Escape(b.label));
  }
  // Grid and y labels.
  for (double t : y1.ticks) {
    const double y = py(y1, t);
    absl::StrAppendFormat(
        &svg,
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
        left, y, left + w, y, left - 6, y + 4, FormatCompact(t));
  }
  if (any_right) {
    for (double t : y2.ticks) {
      absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", left + w + 6,
                            py(y2, t) + 4, FormatCompact(t));
    }
    absl::StrAppendFormat(&svg,
                          "<text transform=\"translate(%.1f,%.1f) rotate(90)\" "
                          "text-anchor=\"middle\">%s</text>\n",
                          spec.width - 16.0, top + h / 2, Escape(spec.y2_label));
  }
  std::vector<std::pair<double, std::string>> x_ticks = spec.x_ticks;
  if (x_ticks.empty()) {
    for (double t : NiceTicks(x_lo, x_hi, 8)) x_ticks.push_back({t, FormatCompact(t)});
  }
  for (const auto& [t, label] : x_ticks) {
    if (t < x_lo - 1e-9 || t > x_hi + 1e-9) continue;
    const double x = px(t);
    absl::StrAppendFormat(
        &svg,
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n"
        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
        x, top, x, top + h, x, top + h + 18, Escape(label));
  }
  absl::StrAppendFormat(&svg,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                        "stroke=\"#444\"/>\n",
                        left, top, w, h);
  absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                        left + w / 2, top + h + 42.0, Escape(spec.x_label));
  absl::StrAppendFormat(&svg,
                        "<text transform=\"translate(18,%.1f) rotate(-90)\" "
                        "text-anchor=\"middle\">%s</text>\n",
                        top + h / 2, Escape(spec.y_label));
  if (empty) {
    absl::StrAppendFormat(&svg,
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#999\">no "
                          "data</text>\n",
                          left + w / 2, top + h / 2);
  }
  // Series, clipped to the plot area; the legend is one row between title and plot.
  absl::StrAppendFormat(&svg,
                        "<clipPath id=\"plot\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                        "height=\"%.1f\"/></clipPath>\n",
                        left, top, w, h);
  double legend_x = left;
  for (size_t i = 0; i < spec.series.size(); ++i) {
    const PlotSeries& s = spec.series[i];
    const Axis& axis = s.right_axis ? y2 : y1;
    const std::string color = s.color.empty() ? kPalette[i % 8] : s.color;
    const char* dash = s.dashed ? " stroke-dasharray=\"6,4\"" : "";
    std::string path;
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y) || (spec.log_y && y <= 0)) continue;
      absl::StrAppendFormat(&path, "%s%.1f,%.1f", path.empty() ? "M" : " L", px(x), py(axis, y));
    }
    if (!path.empty()) {
      absl::StrAppendFormat(&svg,
                            "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s "
                            "clip-path=\"url(#plot)\"/>\n",
                            path, color, dash);
    }
    const std::string name = s.right_axis ? s.name + " (right axis)" : s.name;
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"42\" x2=\"%.1f\" y2=\"42\" stroke=\"%s\" "
                          "stroke-width=\"2.5\"%s/>\n"
                          "<text x=\"%.1f\" y=\"46\">%s</text>\n",
                          legend_x, legend_x + 22, color, dash, legend_x + 27, Escape(name));
    legend_x += 27 + 6.6 * name.size() + 18;
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace sluice::bench
