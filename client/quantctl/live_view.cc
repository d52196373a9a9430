#include "client/quantctl/live_view.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/format/event_format.h"

namespace quantd::quantctl {
namespace {

constexpr int kCurvePoints = 60;

std::string SeriesName(const v1::LossPoint& loss) {
  std::string name = format::ShortName(loss.phase());
  if (loss.block() >= 0) absl::StrAppend(&name, " block ", loss.block());
  if (!loss.split().empty()) absl::StrAppend(&name, " ", loss.split());
  return name;
}

std::string Duration(double seconds) {
  if (seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, s % 3600 / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace

LiveView::LiveView(std::ostream& out, const std::string& job_id, int width)
    : out_(out), job_id_(job_id), width_(std::max(40, width)) {}

std::string LiveView::Sparkline(const std::vector<double>& values, int width) {
  static const char* const kBlocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  std::vector<double> shown;
  const size_t start = values.size() > static_cast<size_t>(width) ? values.size() - width : 0;
  for (size_t i = start; i < values.size(); ++i) {
    if (std::isfinite(values[i])) shown.push_back(values[i]);
  }
  if (shown.empty()) return "";
  const auto [low, high] = std::minmax_element(shown.begin(), shown.end());
  std::string line;
  for (double v : shown) {
    const double t = *high > *low ? (v - *low) / (*high - *low) : 0.5;
    line += kBlocks[std::clamp(static_cast<int>(t * 7.0 + 0.5), 0, 7)];
  }
  return line;
}

std::string LiveView::MetricsTable(const std::map<std::string, double>& metrics) {
  // measure/name/variant metrics: perplexities, then zero-shot accuracies.
  const std::vector<std::string> kMeasures = {"ppl", "acc", "acc_norm"};
  std::map<std::pair<size_t, std::string>, std::map<std::string, double>> rows;
  std::vector<std::string> variants;
  std::vector<std::pair<std::string, double>> others;
  for (const auto& [raw_name, value] : metrics) {
    const std::string name = format::Printable(raw_name);  // names come from workers
    const std::vector<std::string> parts = absl::StrSplit(name, '/');
    const auto measure = std::find(kMeasures.begin(), kMeasures.end(), parts[0]);
    if (parts.size() == 3 && measure != kMeasures.end()) {
      rows[{measure - kMeasures.begin(), parts[1]}][parts[2]] = value;
      if (std::find(variants.begin(), variants.end(), parts[2]) == variants.end()) {
        variants.push_back(parts[2]);
      }
    } else {
      others.emplace_back(name, value);
    }
  }
  // Full precision first, then the quantized result, then the rest.
  std::stable_sort(variants.begin(), variants.end(), [](const auto& a, const auto& b) {
    auto rank = [](const std::string& v) { return v == "fp" ? 0 : v == "quantized" ? 1 : 2; };
    return rank(a) < rank(b);
  });
  std::string out;
  if (!rows.empty()) {
    auto label = [&](const std::pair<size_t, std::string>& row) {
      return kMeasures[row.first] + " " + row.second;
    };
    int label_width = 7;
    for (const auto& [row, values] : rows) {
      label_width = std::max(label_width, static_cast<int>(label(row).size()));
    }
    absl::StrAppend(&out, absl::StrFormat("%-*s", label_width, "measure"));
    for (const auto& variant : variants) {
      absl::StrAppend(&out, absl::StrFormat("  %*s", std::max<int>(12, variant.size()), variant));
    }
    absl::StrAppend(&out, "\n");
    for (const auto& [row, values] : rows) {
      absl::StrAppend(&out, absl::StrFormat("%-*s", label_width, label(row)));
      for (const auto& variant : variants) {
        const int width = std::max<int>(12, variant.size());
        auto it = values.find(variant);
        const std::string cell = it == values.end() ? "-"
                                 : row.first == 0   ? absl::StrFormat("%.4f", it->second)
                                                    : absl::StrFormat("%.2f%%", 100 * it->second);
        absl::StrAppend(&out, absl::StrFormat("  %*s", width, cell));
      }
      absl::StrAppend(&out, "\n");
    }
  }
  for (const auto& [name, value] : others) {
    absl::StrAppend(&out, absl::StrFormat("%-40s %12.6g\n", name, value));
  }
  return out;
}

void LiveView::Scroll(const std::string& line) {
  if (drawn_lines_ > 0) out_ << "\x1b[" << drawn_lines_ << "F\x1b[J";
  drawn_lines_ = 0;
  out_ << line << "\n";
  Redraw(true);
}

void LiveView::Update(const v1::JobEvent& event) {
  ++events_;
  switch (event.kind_case()) {
    case v1::JobEvent::kStateChange:
      state_ = event.state_change().to();
      Scroll(format::FormatEventLine(event));
      return;
    case v1::JobEvent::kPhaseChange:
      phase_ = event.phase_change().phase();
      Scroll(format::FormatEventLine(event));
      return;
    case v1::JobEvent::kLog:
    case v1::JobEvent::kArtifact:
      Scroll(format::FormatEventLine(event));
      return;
    case v1::JobEvent::kProgress:
      progress_ = event.progress();
      break;
    case v1::JobEvent::kLoss: {
      const std::string series = SeriesName(event.loss());
      if (series != loss_series_) {
        loss_series_ = series;
        losses_.clear();
      }
      losses_.push_back(event.loss().loss());
      last_loss_ = event.loss();
      break;
    }
    case v1::JobEvent::kMetric:
      metrics_[event.metric().name()] = event.metric().value();
      break;
    case v1::JobEvent::kResult:
      for (const auto& [name, value] : event.result().metrics()) metrics_[name] = value;
      break;
    case v1::JobEvent::KIND_NOT_SET:
      break;
  }
  Redraw(false);
}

void LiveView::Redraw(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  std::vector<std::string> lines;
  lines.push_back(absl::StrFormat("\x1b[1m%s\x1b[0m  %s  phase %s  (%d events)",
                                  format::Printable(job_id_), format::ShortName(state_),
                                  format::ShortName(phase_), events_));
  const int bar_width = std::max(10, width_ - 30);
  const int filled = static_cast<int>(progress_.fraction() * bar_width + 0.5);
  std::string bar;
  for (int i = 0; i < bar_width; ++i) bar += i < filled ? "█" : "░";
  lines.push_back(absl::StrFormat("%s %5.1f%%  eta %s", bar, 100 * progress_.fraction(),
                                  Duration(progress_.eta_seconds())));
  if (!progress_.detail().empty()) lines.push_back("  " + format::Printable(progress_.detail()));
  if (!losses_.empty()) {
    std::string loss = absl::StrFormat("loss %s step %d: %.6g", format::Printable(loss_series_),
                                       last_loss_.step(), last_loss_.loss());
    std::vector<std::pair<std::string, double>> parts(last_loss_.components().begin(),
                                                      last_loss_.components().end());
    std::sort(parts.begin(), parts.end());
    for (const auto& [name, value] : parts)
      absl::StrAppend(&loss, absl::StrFormat("  %s %.4g", format::Printable(name), value));
    if (last_loss_.learning_rate() > 0) {
      absl::StrAppend(&loss, absl::StrFormat("  lr %.3g", last_loss_.learning_rate()));
    }
    lines.push_back(loss);
    lines.push_back("  " + Sparkline(losses_, std::min(kCurvePoints, width_ - 4)));
  }
  if (drawn_lines_ > 0) out_ << "\x1b[" << drawn_lines_ << "F\x1b[J";
  for (const auto& line : lines) out_ << line << "\n";
  drawn_lines_ = static_cast<int>(lines.size());
  out_.flush();
}

void LiveView::Finish() {
  Redraw(true);
  if (!metrics_.empty()) out_ << "\n" << MetricsTable(metrics_);
  out_.flush();
}

}  // namespace quantd::quantctl
