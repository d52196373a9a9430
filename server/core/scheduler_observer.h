// SchedulerObserver: what the scheduler reports for metrics. Calls happen on the
// scheduler's threads, possibly with its lock held: implementations must be quick and
// must not call back into the scheduler. Thread-safe implementations required.
#ifndef QUANTD_SERVER_CORE_SCHEDULER_OBSERVER_H_
#define QUANTD_SERVER_CORE_SCHEDULER_OBSERVER_H_

#include <cstdint>

#include "absl/time/time.h"
#include "quantd/v1/job.pb.h"

namespace quantd {

// The worker messages that name an attempt (worker_service.proto, "Attempts").
enum class WorkerMessageKind { kEvents, kFinished, kRejected, kHello };

class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void OnSubmitted() {}
  // A job left the queue for a worker after waiting `wait`.
  virtual void OnAssigned(absl::Duration wait) { (void)wait; }
  // A job reached a terminal state; `run_time` is zero when it never started.
  virtual void OnFinished(v1::JobState state, absl::Duration run_time) {
    (void)state;
    (void)run_time;
  }
  virtual void OnEventsIngested(int64_t count) { (void)count; }
  // A job went back to the queue: its worker was lost, or (`stopped_by_worker`) the worker
  // stopped it itself, e.g. while shutting down.
  virtual void OnRequeued(bool stopped_by_worker) { (void)stopped_by_worker; }
  // A worker message about a stale attempt of a job was dropped (for kHello: a running job
  // of a Hello was told to stop).
  virtual void OnStaleWorkerMessage(WorkerMessageKind kind) { (void)kind; }
};

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_SCHEDULER_OBSERVER_H_
