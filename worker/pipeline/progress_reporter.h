// Turns "step k of n in this phase" into Progress events with an ETA, at most one every
// `min_interval` (plus the first and the last), so watchers see steady progress without
// an event per tiny step.
#ifndef QUANTD_WORKER_PIPELINE_PROGRESS_REPORTER_H_
#define QUANTD_WORKER_PIPELINE_PROGRESS_REPORTER_H_

#include <chrono>
#include <string>

#include "worker/runner/job_context.h"

namespace quantd::pipeline {

class ProgressReporter {
 public:
  // The phase spans [start_fraction, end_fraction] of the whole job.
  ProgressReporter(EventSink& sink, double start_fraction, double end_fraction,
                   std::chrono::milliseconds min_interval = std::chrono::milliseconds(1000));

  // `done` of `total` steps are finished. Emits when due; returns the sink's status.
  absl::Status Update(int64_t done, int64_t total, const std::string& detail);

 private:
  EventSink& sink_;
  const double start_fraction_;
  const double end_fraction_;
  const std::chrono::milliseconds min_interval_;
  const std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_sent_{};
  bool sent_any_ = false;
};

}  // namespace quantd::pipeline

#endif  // QUANTD_WORKER_PIPELINE_PROGRESS_REPORTER_H_
