#include "server/metrics/metrics.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"
#include "server/core/job_state.h"

namespace quantd {

// Builds the scrape-time gauge families from the snapshot source.
class Metrics::GaugeCollector : public prometheus::Collectable {
 public:
  void SetSource(std::function<GaugeSnapshot()> source) {
    absl::MutexLock lock(&mu_);
    source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::function<GaugeSnapshot()> source;
    {
      absl::MutexLock lock(&mu_);
      source = source_;
    }
    if (!source) return {};
    const GaugeSnapshot snapshot = source();
    std::vector<prometheus::MetricFamily> families;

    prometheus::MetricFamily jobs{
        "quantd_jobs", "Jobs by state.", prometheus::MetricType::Gauge, {}};
    for (int state = v1::JOB_STATE_QUEUED; state <= v1::JOB_STATE_CANCELLED; ++state) {
      prometheus::ClientMetric metric;
      metric.label.push_back(
          {"state", absl::AsciiStrToLower(StateName(static_cast<v1::JobState>(state)))});
      auto it = snapshot.scheduler.jobs_by_state.find(static_cast<v1::JobState>(state));
      metric.gauge.value = it == snapshot.scheduler.jobs_by_state.end() ? 0 : it->second;
      jobs.metric.push_back(std::move(metric));
    }
    families.push_back(std::move(jobs));
    families.push_back(Single("quantd_workers_connected", "Workers with an open stream.",
                              snapshot.scheduler.workers_connected));
    prometheus::MetricFamily devices{
        "quantd_devices", "Devices of connected workers.", prometheus::MetricType::Gauge, {}};
    for (const auto& [state, value] :
         {std::pair<std::string, int64_t>{"busy", snapshot.scheduler.devices_busy},
          {"free", snapshot.scheduler.devices_total - snapshot.scheduler.devices_busy}}) {
      prometheus::ClientMetric metric;
      metric.label.push_back({"state", state});
      metric.gauge.value = static_cast<double>(value);
      devices.metric.push_back(std::move(metric));
    }
    families.push_back(std::move(devices));
    families.push_back(Single("quantd_watchers", "Open WatchJob streams.", snapshot.watchers));
    return families;
  }

 private:
  static prometheus::MetricFamily Single(const std::string& name, const std::string& help,
                                         int64_t value) {
    prometheus::MetricFamily family{name, help, prometheus::MetricType::Gauge, {}};
    prometheus::ClientMetric metric;
    metric.gauge.value = static_cast<double>(value);
    family.metric.push_back(std::move(metric));
    return family;
  }

  mutable absl::Mutex mu_;
  std::function<GaugeSnapshot()> source_ ABSL_GUARDED_BY(mu_);
};

namespace {

prometheus::Histogram::BucketBoundaries DurationBuckets() {
  // 1 s .. ~3 days, roughly x3 apart: queue waits and job run times.
  return {1, 3, 10, 30, 60, 180, 600, 1800, 3600, 10800, 36000, 86400, 259200};
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      gauges_(std::make_shared<GaugeCollector>()) {
  submitted_ = &prometheus::BuildCounter()
                    .Name("quantd_jobs_submitted_total")
                    .Help("Jobs submitted (deduplicated submissions not counted).")
                    .Register(*registry_)
                    .Add({});
  auto& finished = prometheus::BuildCounter()
                       .Name("quantd_jobs_finished_total")
                       .Help("Jobs that reached a terminal state, by outcome.")
                       .Register(*registry_);
  succeeded_ = &finished.Add({{"outcome", "succeeded"}});
  failed_ = &finished.Add({{"outcome", "failed"}});
  cancelled_ = &finished.Add({{"outcome", "cancelled"}});
  auto& requeued = prometheus::BuildCounter()
                       .Name("quantd_jobs_requeued_total")
                       .Help(
                           "Jobs put back in the queue: their worker was lost "
                           "(reason=\"lost\") or stopped them, e.g. shutting down "
                           "(reason=\"stopped\").")
                       .Register(*registry_);
  requeued_lost_ = &requeued.Add({{"reason", "lost"}});
  requeued_stopped_ = &requeued.Add({{"reason", "stopped"}});
  events_ingested_ = &prometheus::BuildCounter()
                          .Name("quantd_events_ingested_total")
                          .Help("Job events received from workers and stored.")
                          .Register(*registry_)
                          .Add({});
  auto& stale = prometheus::BuildCounter()
                    .Name("quantd_stale_worker_messages_total")
                    .Help(
                        "Worker messages about an attempt the scheduler gave up on, dropped, "
                        "by message kind (hello: a running job told to stop).")
                    .Register(*registry_);
  stale_events_ = &stale.Add({{"kind", "events"}});
  stale_finished_ = &stale.Add({{"kind", "finished"}});
  stale_rejected_ = &stale.Add({{"kind", "rejected"}});
  stale_hello_ = &stale.Add({{"kind", "hello"}});
  queue_wait_ = &prometheus::BuildHistogram()
                     .Name("quantd_job_queue_wait_seconds")
                     .Help("Time from queueing to assignment.")
                     .Register(*registry_)
                     .Add({}, DurationBuckets());
  run_time_ = &prometheus::BuildHistogram()
                   .Name("quantd_job_run_seconds")
                   .Help("Time from start to the terminal state of jobs that started.")
                   .Register(*registry_)
                   .Add({}, DurationBuckets());
  store_commit_ = &prometheus::BuildHistogram()
                       .Name("quantd_store_write_seconds")
                       .Help("Latency of one store transaction (group commit).")
                       .Register(*registry_)
                       .Add({}, LatencyBuckets());
  store_batch_events_ =
      &prometheus::BuildHistogram()
           .Name("quantd_store_events_per_commit")
           .Help("Events written by one store transaction.")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{1, 4, 16, 64, 256, 1024, 4096, 16384});
}

Metrics::~Metrics() = default;

void Metrics::SetSnapshotSource(std::function<GaugeSnapshot()> source) {
  gauges_->SetSource(std::move(source));
}

absl::Status Metrics::Serve(const std::string& address) {
  try {
    // civetweb's options; the address-only constructor leaves 2 threads and a 30 s timeout.
    exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", address, "num_threads", std::to_string(kHttpThreads),
        "request_timeout_ms", std::to_string(absl::ToInt64Milliseconds(kHttpRequestTimeout))});
  } catch (const std::exception& e) {
    return absl::UnavailableError("metrics: cannot listen on " + address + ": " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(gauges_);
  return absl::OkStatus();
}

int Metrics::port() const {
  if (exposer_ == nullptr) return 0;
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

std::string Metrics::Text() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (auto& family : gauges_->Collect()) families.push_back(std::move(family));
  return prometheus::TextSerializer().Serialize(families);
}

void Metrics::OnSubmitted() { submitted_->Increment(); }

void Metrics::OnAssigned(absl::Duration wait) { queue_wait_->Observe(absl::ToDoubleSeconds(wait)); }

void Metrics::OnFinished(v1::JobState state, absl::Duration run_time) {
  if (state == v1::JOB_STATE_SUCCEEDED) succeeded_->Increment();
  if (state == v1::JOB_STATE_FAILED) failed_->Increment();
  if (state == v1::JOB_STATE_CANCELLED) cancelled_->Increment();
  if (run_time > absl::ZeroDuration()) run_time_->Observe(absl::ToDoubleSeconds(run_time));
}

void Metrics::OnEventsIngested(int64_t count) {
  events_ingested_->Increment(static_cast<double>(count));
}

void Metrics::OnRequeued(bool stopped_by_worker) {
  (stopped_by_worker ? requeued_stopped_ : requeued_lost_)->Increment();
}

void Metrics::OnStaleWorkerMessage(WorkerMessageKind kind) {
  switch (kind) {
    case WorkerMessageKind::kEvents:
      stale_events_->Increment();
      break;
    case WorkerMessageKind::kFinished:
      stale_finished_->Increment();
      break;
    case WorkerMessageKind::kRejected:
      stale_rejected_->Increment();
      break;
    case WorkerMessageKind::kHello:
      stale_hello_->Increment();
      break;
  }
}

void Metrics::OnStoreCommit(absl::Duration latency, int /*batches*/, int events) {
  store_commit_->Observe(absl::ToDoubleSeconds(latency));
  store_batch_events_->Observe(events);
}

}  // namespace quantd
