#include "client/plot/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/format/event_format.h"

namespace quantd::plot {
namespace {

constexpr int kWidth = 960;
constexpr int kPanelHeight = 380;
constexpr int kLeft = 80, kRight = 250, kTop = 50, kBottom = 50;
constexpr size_t kLegendChars = 32;
const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
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

std::string Text(double x, double y, const std::string& text, const std::string& extra = "") {
  return absl::StrFormat("<text x=\"%.1f\" y=\"%.1f\" %s>%s</text>\n", x, y, extra, Escape(text));
}

std::string Number(double value) { return absl::StrFormat("%.4g", value); }

struct Series {
  std::string name;
  std::vector<double> values;
};

// A series per (phase, block, split), in order of first appearance.
std::vector<Series> LossSeries(const v1::JobMetrics& metrics) {
  std::vector<Series> series;
  std::map<std::string, size_t> index;
  for (const auto& point : metrics.loss()) {
    std::string name = format::ShortName(point.phase());
    if (point.block() >= 0) absl::StrAppend(&name, " block ", point.block());
    if (!point.split().empty()) absl::StrAppend(&name, " ", point.split());
    auto [it, added] = index.emplace(name, series.size());
    if (added) series.push_back({name, {}});
    series[it->second].values.push_back(point.loss());
  }
  return series;
}

// Frame, grid, ticks and axis titles of a panel; returns the data-to-pixel mapping.
struct Frame {
  double x0, x1, y0, y1;  // data ranges
  double top;             // panel's top pixel
  double X(double x) const { return kLeft + (x - x0) / (x1 - x0) * (kWidth - kLeft - kRight); }
  double Y(double y) const {
    return top + kTop + (y1 - y) / (y1 - y0) * (kPanelHeight - kTop - kBottom);
  }
};

std::string DrawFrame(const Frame& f, const std::vector<double>& x_ticks,
                      const std::vector<double>& y_ticks, const std::string& title,
                      const std::string& x_label, const std::string& y_label) {
  std::string svg;
  const double bottom = f.top + kPanelHeight - kBottom;
  svg += Text(kWidth / 2.0 - kRight / 2.0, f.top + 28, title,
              "text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\"");
  for (double y : y_ticks) {
    svg +=
        absl::StrFormat("<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n",
                        kLeft, f.Y(y), kWidth - kRight, f.Y(y));
    svg += Text(kLeft - 8, f.Y(y) + 4, Number(y), "text-anchor=\"end\" font-size=\"12\"");
  }
  for (double x : x_ticks) {
    svg += Text(f.X(x), bottom + 18, Number(x), "text-anchor=\"middle\" font-size=\"12\"");
  }
  svg += absl::StrFormat(
      "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n",
      kLeft, f.top + kTop, kWidth - kLeft - kRight, kPanelHeight - kTop - kBottom);
  svg += Text(kLeft + (kWidth - kLeft - kRight) / 2.0, bottom + 40, x_label,
              "text-anchor=\"middle\" font-size=\"13\"");
  svg += absl::StrFormat(
      "<text x=\"20\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 20 %.1f)\">%s</text>\n",
      f.top + kPanelHeight / 2.0, f.top + kPanelHeight / 2.0, Escape(y_label));
  return svg;
}

std::string LossPanel(const v1::JobMetrics& metrics, double top) {
  const std::vector<Series> series = LossSeries(metrics);
  size_t longest = 0;
  double low = INFINITY, high = -INFINITY;
  for (const auto& s : series) {
    longest = std::max(longest, s.values.size());
    for (double v : s.values) {
      if (std::isfinite(v)) {
        low = std::min(low, v);
        high = std::max(high, v);
      }
    }
  }
  if (series.empty() || !std::isfinite(low)) {
    return Text(kWidth / 2.0, top + kPanelHeight / 2.0, "no loss points recorded",
                "text-anchor=\"middle\" font-size=\"15\" fill=\"#666\"");
  }
  const std::vector<double> y_ticks = NiceTicks(low, high, 6);
  const std::vector<double> x_ticks = NiceTicks(0, std::max<double>(1, longest - 1), 8);
  Frame frame{x_ticks.front(), x_ticks.back(), y_ticks.front(), y_ticks.back(), top};
  std::string svg = DrawFrame(frame, x_ticks, y_ticks, "Loss curves", "step", "loss");
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kColors[i % 10];
    std::string points;
    for (size_t j = 0; j < series[i].values.size(); ++j) {
      if (!std::isfinite(series[i].values[j])) continue;
      absl::StrAppend(&points, absl::StrFormat("%.1f,%.1f ", frame.X(static_cast<double>(j)),
                                               frame.Y(series[i].values[j])));
    }
    svg += absl::StrFormat(
        "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"/>\n", points,
        color);
    const double legend_y = top + kTop + 10 + 20.0 * static_cast<double>(i);
    if (legend_y < top + kPanelHeight - 20) {
      svg += absl::StrFormat(
          "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>\n",
          kWidth - kRight + 15, legend_y, kWidth - kRight + 40, legend_y, color);
      std::string label = series[i].name;
      if (label.size() > kLegendChars) label = label.substr(0, kLegendChars - 3) + "...";
      svg += Text(kWidth - kRight + 46, legend_y + 4, label, "font-size=\"12\"");
    }
  }
  return svg;
}

// A panel of bars: one group per dataset or task, one bar per variant.
struct BarChart {
  std::string measure;  // the metrics "<measure>/<group>/<variant>" it draws
  std::string title;
  std::string group_label;
  std::string value_label;
  double scale;              // drawn value = metric value * scale
  int decimals;              // of the label above each bar
  std::string nothing_text;  // when there is no such metric
};

// "<measure>/<group>/<variant>" -> value per group; later metrics of the same name supersede.
std::map<std::string, std::map<std::string, double>> Groups(const v1::JobMetrics& metrics,
                                                            const std::string& measure,
                                                            std::vector<std::string>* variants) {
  std::map<std::string, std::map<std::string, double>> groups;
  for (const auto& metric : metrics.metrics()) {
    const std::vector<std::string> parts = absl::StrSplit(metric.name(), '/');
    if (parts.size() != 3 || parts[0] != measure) continue;
    groups[parts[1]][parts[2]] = metric.value();
    if (std::find(variants->begin(), variants->end(), parts[2]) == variants->end()) {
      variants->push_back(parts[2]);
    }
  }
  return groups;
}

std::string BarPanel(const v1::JobMetrics& metrics, const BarChart& chart, double top) {
  std::vector<std::string> variants;
  const auto groups = Groups(metrics, chart.measure, &variants);
  if (groups.empty()) {
    return Text(kWidth / 2.0, top + kPanelHeight / 2.0, chart.nothing_text,
                "text-anchor=\"middle\" font-size=\"15\" fill=\"#666\"");
  }
  double high = 0;
  for (const auto& [group, values] : groups) {
    for (const auto& [variant, value] : values) high = std::max(high, value * chart.scale);
  }
  const std::vector<double> y_ticks = NiceTicks(0, high, 6);
  const double count = static_cast<double>(groups.size());
  Frame frame{0, count, 0, y_ticks.back(), top};
  std::string svg =
      DrawFrame(frame, {}, y_ticks, chart.title, chart.group_label, chart.value_label);
  const double group_width = (kWidth - kLeft - kRight) / count;
  const double bar = std::min(90.0, group_width * 0.8 / static_cast<double>(variants.size()));
  double g = 0;
  for (const auto& [group, values] : groups) {
    const double start = kLeft + (g + 0.5) * group_width - bar * variants.size() / 2.0;
    for (size_t v = 0; v < variants.size(); ++v) {
      auto it = values.find(variants[v]);
      if (it == values.end()) continue;
      const double value = it->second * chart.scale;
      const double x = start + bar * static_cast<double>(v);
      svg += absl::StrFormat(
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x,
          frame.Y(value), bar * 0.9, frame.Y(0) - frame.Y(value), kColors[v % 10]);
      svg +=
          Text(x + bar * 0.45, frame.Y(value) - 5, absl::StrFormat("%.*f", chart.decimals, value),
               "text-anchor=\"middle\" font-size=\"11\"");
    }
    svg += Text(kLeft + (g + 0.5) * group_width, frame.Y(0) + 18, group,
                "text-anchor=\"middle\" font-size=\"12\"");
    g += 1;
  }
  for (size_t v = 0; v < variants.size(); ++v) {
    const double legend_y = top + kTop + 10 + 20.0 * static_cast<double>(v);
    svg += absl::StrFormat("<rect x=\"%d\" y=\"%.1f\" width=\"20\" height=\"12\" fill=\"%s\"/>\n",
                           kWidth - kRight + 15, legend_y - 8, kColors[v % 10]);
    svg += Text(kWidth - kRight + 42, legend_y + 3, variants[v], "font-size=\"12\"");
  }
  return svg;
}

const BarChart kPerplexities = {"ppl", "Perplexity (lower is better)", "dataset", "perplexity", 1.0,
                                3,     "no perplexities recorded"};
const BarChart kAccuracies = {"acc",
                              "Zero-shot accuracy (higher is better)",
                              "task",
                              "accuracy (%)",
                              100.0,
                              1,
                              "no accuracies recorded"};

}  // namespace

std::vector<double> NiceTicks(double low, double high, int target_count) {
  if (!(high > low)) {
    const double pad = std::max(std::abs(low) * 0.1, 1.0);
    low -= pad;
    high += pad;
  }
  const double raw = (high - low) / std::max(1, target_count - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  }
  std::vector<double> ticks;
  for (double t = std::floor(low / step) * step; t < high + step * 0.999; t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  if (ticks.size() < 2) ticks.push_back(ticks.back() + step);
  return ticks;
}

std::string RenderJobSvg(const v1::JobMetrics& metrics, const std::string& title) {
  std::vector<std::string> unused;
  const bool accuracies = !Groups(metrics, "acc", &unused).empty();
  const int height = (accuracies ? 3 : 2) * kPanelHeight + 60;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      kWidth, height, kWidth, height);
  svg += Text(kWidth / 2.0, 30, title, "text-anchor=\"middle\" font-size=\"20\"");
  svg += LossPanel(metrics, 40);
  svg += BarPanel(metrics, kPerplexities, 40 + kPanelHeight);
  if (accuracies) svg += BarPanel(metrics, kAccuracies, 40 + 2 * kPanelHeight);
  svg += "</svg>\n";
  return svg;
}

}  // namespace quantd::plot
