// Hand-written SVG line charts: enough for "throughput over time" and "latency percentile
// distribution" plots that open in any browser, with no plotting dependency.
#ifndef SLUICE_BENCH_HARNESS_SVG_PLOT_H_
#define SLUICE_BENCH_HARNESS_SVG_PLOT_H_

#include <string>
#include <utility>
#include <vector>

namespace sluice::bench {

struct PlotSeries {
  std::string name;
  std::string color;                              // Any SVG colour; empty picks one from a palette.
  std::vector<std::pair<double, double>> points;  // (x, y), x ascending.
  bool dashed = false;
  bool right_axis = false;  // Plotted against the secondary (right) y axis.
};

// A labelled x range (a phase); shaded ones are not part of the measurement.
struct PlotBand {
  double x0 = 0, x1 = 0;
  std::string label;
  bool shaded = true;
};

struct PlotSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::string y2_label;  // Secondary axis, used when a series has right_axis.
  bool log_y = false;    // Non-positive values are dropped from a log axis.
  // Optional fixed x ticks (value, label); otherwise "nice" linear ticks.
  std::vector<std::pair<double, std::string>> x_ticks;
  std::vector<PlotSeries> series;
  std::vector<PlotBand> bands;
  int width = 860;
  int height = 440;
};

// Returns a complete standalone SVG document.
std::string RenderLineChart(const PlotSpec& spec);

// Formats a number compactly for axis labels: 1.5k, 20M, 0.25.
std::string FormatCompact(double v);

// X position used by latency distribution plots: the number of "nines" of a percentile,
// -log10(1 - p/100), so 90 -> 1, 99 -> 2, 99.9 -> 3. 100 maps to `max_nines`.
double PercentileToNines(double percentile, double max_nines);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_SVG_PLOT_H_
