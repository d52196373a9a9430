// Prometheus metrics of one quantd-worker (names quantd_worker_*, base units, no job ids
// as labels), served on the worker's own HTTP port:
//   quantd_worker_device_memory_bytes{device,kind="total"|"free"}  gauge
//   quantd_worker_scheduler_connected                                gauge (0/1)
//   quantd_worker_jobs_running                                       gauge
//   quantd_worker_jobs_in_phase{phase}                               gauge
//   quantd_worker_jobs_finished_total{outcome="succeeded"|"failed"|"cancelled"}  counter
//   quantd_worker_job_events_total                                   counter
//   quantd_worker_steps_total                                        counter (training steps:
//                                                                    "train" loss points of
//                                                                    prefix training and
//                                                                    fine-tuning)
//   quantd_worker_step_duration_seconds                              histogram (between two
//                                                                    such steps of one block)
// Thread-safe.
#ifndef QUANTD_WORKER_DAEMON_WORKER_METRICS_H_
#define QUANTD_WORKER_DAEMON_WORKER_METRICS_H_

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "quantd/v1/worker_service.pb.h"
#include "worker/daemon/metrics_http_server.h"

namespace quantd::daemon {

class WorkerMetrics {
 public:
  WorkerMetrics();
  ~WorkerMetrics();

  // HTTP /metrics on `address` (port 0 picks one); UNAVAILABLE when it cannot listen.
  absl::Status Serve(const std::string& address);
  int port() const;
  std::string Text() const;

  void SetDevices(const std::vector<v1::Device>& devices);
  void SetConnected(bool connected);
  void OnJobStarted(const std::string& job_id);
  void OnJobEvent(const std::string& job_id, const v1::JobEvent& event);
  void OnJobFinished(const std::string& job_id, v1::JobState state);

 private:
  struct JobState {
    std::string phase;
    std::chrono::steady_clock::time_point last_step{};
    int step_block = 0;  // the block of the last step (-1: the prefix)
    bool has_step = false;
  };
  void SetPhaseLocked(JobState& job, const std::string& phase) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& device_memory_;
  prometheus::Gauge& connected_;
  prometheus::Gauge& running_;
  prometheus::Family<prometheus::Gauge>& in_phase_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Counter& events_;
  prometheus::Counter& steps_;
  prometheus::Histogram& step_duration_;
  std::unique_ptr<MetricsHttpServer> http_;
  mutable std::mutex mu_;
  std::map<std::string, JobState> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace quantd::daemon

#endif  // QUANTD_WORKER_DAEMON_WORKER_METRICS_H_
