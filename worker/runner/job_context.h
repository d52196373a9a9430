// What a running job talks to: where its events go and whether it should stop.
// The pipeline's RunJob(spec, EventSink&, CancellationToken&) takes both.
#ifndef QUANTD_WORKER_RUNNER_JOB_CONTEXT_H_
#define QUANTD_WORKER_RUNNER_JOB_CONTEXT_H_

#include <atomic>

#include "absl/status/status.h"
#include "quantd/v1/job.pb.h"

namespace quantd {

// Receives a job's events in order. Implementations say whether they are thread-safe.
class EventSink {
 public:
  virtual ~EventSink() = default;
  // A failed Emit means the events can no longer be delivered; the job should stop.
  virtual absl::Status Emit(const v1::JobEvent& event) = 0;
};

// Set once when the job should stop; checked by the job between steps.
// Thread-safe and async-signal-safe (a SIGTERM handler may call Cancel).
class CancellationToken {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
  static_assert(std::atomic<bool>::is_always_lock_free);
};

}  // namespace quantd

#endif  // QUANTD_WORKER_RUNNER_JOB_CONTEXT_H_
