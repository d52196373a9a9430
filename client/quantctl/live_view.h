// The live terminal view of `quantctl watch` when stdout is a terminal: state, phase, a
// progress bar with ETA, the latest loss with its components, and a small loss curve,
// redrawn in place as events arrive; logs and state changes scroll above it. At the end,
// a table of the job's metrics (perplexity per dataset and variant side by side).
#ifndef QUANTD_CLIENT_QUANTCTL_LIVE_VIEW_H_
#define QUANTD_CLIENT_QUANTCTL_LIVE_VIEW_H_

#include <chrono>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "quantd/v1/job.pb.h"

namespace quantd::quantctl {

class LiveView {
 public:
  // `width` is the terminal width in columns.
  LiveView(std::ostream& out, const std::string& job_id, int width);

  void Update(const v1::JobEvent& event);
  // Final redraw and the metrics table.
  void Finish();

  // A one-line curve of `values` in `width` cells using the eight block characters.
  static std::string Sparkline(const std::vector<double>& values, int width);
  // Perplexities as a dataset x variant table, then every other metric.
  static std::string MetricsTable(const std::map<std::string, double>& metrics);

 private:
  void Redraw(bool force);
  void Scroll(const std::string& line);

  std::ostream& out_;
  const std::string job_id_;
  const int width_;
  int drawn_lines_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
  v1::JobState state_ = v1::JOB_STATE_UNSPECIFIED;
  v1::Phase phase_ = v1::PHASE_UNSPECIFIED;
  v1::Progress progress_;
  v1::LossPoint last_loss_;
  std::string loss_series_;
  std::vector<double> losses_;
  std::map<std::string, double> metrics_;
  int64_t events_ = 0;
};

}  // namespace quantd::quantctl

#endif  // QUANTD_CLIENT_QUANTCTL_LIVE_VIEW_H_
