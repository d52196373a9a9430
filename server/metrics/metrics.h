// Prometheus metrics of quantd (names quantd_*, base units, no job ids as labels).
//
// Metrics is the SchedulerObserver (counters and histograms updated as things happen) and
// also collects gauges at scrape time from a snapshot function (jobs by state, workers,
// devices, watchers). Serve it with Exposer (HTTP /metrics) or render it with Text().
// Thread-safe.
#ifndef QUANTD_SERVER_METRICS_METRICS_H_
#define QUANTD_SERVER_METRICS_METRICS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/core/scheduler.h"
#include "server/core/scheduler_observer.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace quantd {

struct GaugeSnapshot {
  SchedulerStats scheduler;
  int64_t watchers = 0;
};

class Metrics : public SchedulerObserver {
 public:
  Metrics();
  ~Metrics() override;

  // Where scrape-time gauges come from; set once before serving. Must be thread-safe.
  void SetSnapshotSource(std::function<GaugeSnapshot()> source);

  // Starts the HTTP endpoint on `address` ("0.0.0.0:9090"; port 0 picks one) with
  // kHttpThreads threads; a connection that sends no complete request within
  // kHttpRequestTimeout is dropped, so slow or half-open clients cannot block scrapes.
  absl::Status Serve(const std::string& address);
  static constexpr int kHttpThreads = 8;
  static constexpr absl::Duration kHttpRequestTimeout = absl::Seconds(5);
  // The port Serve() bound, 0 when not serving.
  int port() const;

  // The exposition text (what /metrics returns).
  std::string Text() const;

  // SchedulerObserver
  void OnSubmitted() override;
  void OnAssigned(absl::Duration wait) override;
  void OnFinished(v1::JobState state, absl::Duration run_time) override;
  void OnEventsIngested(int64_t count) override;
  void OnRequeued(bool stopped_by_worker) override;
  void OnStaleWorkerMessage(WorkerMessageKind kind) override;

  // From the store's writer thread.
  void OnStoreCommit(absl::Duration latency, int batches, int events);

 private:
  class GaugeCollector;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<GaugeCollector> gauges_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Counter* submitted_;
  prometheus::Counter* requeued_lost_;
  prometheus::Counter* requeued_stopped_;
  prometheus::Counter* events_ingested_;
  prometheus::Counter* succeeded_;
  prometheus::Counter* failed_;
  prometheus::Counter* cancelled_;
  prometheus::Counter* stale_events_;
  prometheus::Counter* stale_finished_;
  prometheus::Counter* stale_rejected_;
  prometheus::Counter* stale_hello_;
  prometheus::Histogram* queue_wait_;
  prometheus::Histogram* run_time_;
  prometheus::Histogram* store_commit_;
  prometheus::Histogram* store_batch_events_;
};

}  // namespace quantd

#endif  // QUANTD_SERVER_METRICS_METRICS_H_
