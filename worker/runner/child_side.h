// The job process's end of the pipe (see job_process.h).
#ifndef QUANTD_WORKER_RUNNER_CHILD_SIDE_H_
#define QUANTD_WORKER_RUNNER_CHILD_SIDE_H_

#include <mutex>

#include "worker/runner/job_context.h"

namespace quantd::runner {

// Writes framed events to the event fd. An event without `time` is stamped with the
// current time as it is emitted (JobEvent.time: when it happened, by the worker's clock).
// Thread-safe. Does not own the fd.
class PipeEventSink : public EventSink {
 public:
  explicit PipeEventSink(int fd) : fd_(fd) {}
  absl::Status Emit(const v1::JobEvent& event) override;

 private:
  std::mutex mutex_;
  int fd_;
};

// Makes SIGTERM and SIGINT cancel `token` (which must outlive the process's use of it).
void CancelOnTermination(CancellationToken* token);

// Reports a failure as the child's last event and returns kChildFailed, the exit code.
int ReportFailureAndExitCode(EventSink& sink, v1::FailureReason reason, const std::string& message);

}  // namespace quantd::runner

#endif  // QUANTD_WORKER_RUNNER_CHILD_SIDE_H_
