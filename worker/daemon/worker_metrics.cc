#include "worker/daemon/worker_metrics.h"

#include "absl/strings/ascii.h"
#include "client/format/event_format.h"
#include "prometheus/text_serializer.h"

namespace quantd::daemon {

WorkerMetrics::WorkerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      device_memory_(prometheus::BuildGauge()
                         .Name("quantd_worker_device_memory_bytes")
                         .Help("Memory of each device offered to the scheduler")
                         .Register(*registry_)),
      connected_(prometheus::BuildGauge()
                     .Name("quantd_worker_scheduler_connected")
                     .Help("1 while the Connect stream to the scheduler is up")
                     .Register(*registry_)
                     .Add({})),
      running_(prometheus::BuildGauge()
                   .Name("quantd_worker_jobs_running")
                   .Help("Jobs whose process is running")
                   .Register(*registry_)
                   .Add({})),
      in_phase_(prometheus::BuildGauge()
                    .Name("quantd_worker_jobs_in_phase")
                    .Help("Running jobs by current phase")
                    .Register(*registry_)),
      finished_(prometheus::BuildCounter()
                    .Name("quantd_worker_jobs_finished_total")
                    .Help("Jobs whose process ended, by outcome")
                    .Register(*registry_)),
      events_(prometheus::BuildCounter()
                  .Name("quantd_worker_job_events_total")
                  .Help("Events received from job processes")
                  .Register(*registry_)
                  .Add({})),
      steps_(prometheus::BuildCounter()
                 .Name("quantd_worker_steps_total")
                 .Help("Training steps done (train loss points of prefix training and fine-tuning)")
                 .Register(*registry_)
                 .Add({})),
      step_duration_(prometheus::BuildHistogram()
                         .Name("quantd_worker_step_duration_seconds")
                         .Help("Time between consecutive training steps of a job's block "
                               "(prefix training or fine-tuning)")
                         .Register(*registry_)
                         .Add({}, prometheus::Histogram::BucketBoundaries{
                                      0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100})) {}

WorkerMetrics::~WorkerMetrics() = default;

absl::Status WorkerMetrics::Serve(const std::string& address) {
  auto http = std::make_unique<MetricsHttpServer>([this] { return Text(); });
  if (auto status = http->Start(address); !status.ok()) return status;
  http_ = std::move(http);
  return absl::OkStatus();
}

int WorkerMetrics::port() const { return http_ == nullptr ? 0 : http_->port(); }

std::string WorkerMetrics::Text() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void WorkerMetrics::SetDevices(const std::vector<v1::Device>& devices) {
  for (const auto& device : devices) {
    device_memory_.Add({{"device", device.id()}, {"kind", "total"}})
        .Set(static_cast<double>(device.total_memory_bytes()));
    device_memory_.Add({{"device", device.id()}, {"kind", "free"}})
        .Set(static_cast<double>(device.free_memory_bytes()));
  }
}

void WorkerMetrics::SetConnected(bool connected) { connected_.Set(connected ? 1 : 0); }

void WorkerMetrics::SetPhaseLocked(JobState& job, const std::string& phase) {
  if (!job.phase.empty()) in_phase_.Add({{"phase", job.phase}}).Decrement();
  job.phase = phase;
  if (!phase.empty()) in_phase_.Add({{"phase", phase}}).Increment();
}

void WorkerMetrics::OnJobStarted(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (jobs_.emplace(job_id, JobState{}).second) running_.Increment();
}

void WorkerMetrics::OnJobEvent(const std::string& job_id, const v1::JobEvent& event) {
  events_.Increment();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  JobState& job = it->second;
  if (event.has_phase_change()) {
    SetPhaseLocked(job, format::ShortName(event.phase_change().phase()));
    job.has_step = false;  // the gap across phases is no step
  }
  // Only training steps: evaluation loss points come in bursts, and the gap before a block's
  // first step is that block's set-up, not a step.
  const bool training_step = event.has_loss() && event.loss().split() == "train" &&
                             (event.loss().phase() == v1::PHASE_FINETUNE ||
                              event.loss().phase() == v1::PHASE_TRAIN_PREFIX);
  if (training_step) {
    steps_.Increment();
    const auto now = std::chrono::steady_clock::now();
    if (job.has_step && job.step_block == event.loss().block()) {
      step_duration_.Observe(std::chrono::duration<double>(now - job.last_step).count());
    }
    job.last_step = now;
    job.step_block = event.loss().block();
    job.has_step = true;
  }
}

void WorkerMetrics::OnJobFinished(const std::string& job_id, v1::JobState state) {
  finished_.Add({{"outcome", absl::AsciiStrToLower(format::ShortName(state))}}).Increment();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  SetPhaseLocked(it->second, "");
  jobs_.erase(it);
  running_.Decrement();
}

}  // namespace quantd::daemon
