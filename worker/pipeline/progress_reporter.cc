#include "worker/pipeline/progress_reporter.h"

namespace quantd::pipeline {

ProgressReporter::ProgressReporter(EventSink& sink, double start_fraction, double end_fraction,
                                   std::chrono::milliseconds min_interval)
    : sink_(sink),
      start_fraction_(start_fraction),
      end_fraction_(end_fraction),
      min_interval_(min_interval),
      started_(std::chrono::steady_clock::now()) {}

absl::Status ProgressReporter::Update(int64_t done, int64_t total, const std::string& detail) {
  const auto now = std::chrono::steady_clock::now();
  const bool last = done >= total;
  if (sent_any_ && !last && now - last_sent_ < min_interval_) return absl::OkStatus();
  sent_any_ = true;
  last_sent_ = now;
  const double phase_fraction = total > 0 ? static_cast<double>(done) / total : 1.0;
  v1::JobEvent event;
  auto* progress = event.mutable_progress();
  progress->set_fraction(start_fraction_ + (end_fraction_ - start_fraction_) * phase_fraction);
  const double elapsed = std::chrono::duration<double>(now - started_).count();
  // Remaining time of this phase, scaled to the rest of the job by its share of it.
  if (done > 0 && end_fraction_ > start_fraction_) {
    const double phase_left = elapsed * (total - done) / done;
    const double job_left_share = (1.0 - end_fraction_) / (end_fraction_ - start_fraction_);
    const double per_phase_total = elapsed * total / done;
    progress->set_eta_seconds(phase_left + job_left_share * per_phase_total);
  } else {
    progress->set_eta_seconds(-1);
  }
  progress->set_detail(detail);
  return sink_.Emit(event);
}

}  // namespace quantd::pipeline
