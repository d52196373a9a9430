// The long-running `quantd-worker connect` process: keeps the scheduler link open, runs
// each assigned job in its own child process (runner/job_process.h), forwards the child's
// events through the acknowledged outbox, and reports each job's end.
//
// A job's files live in <work_dir>/<job_id>/: job.pb (the Assignment, binary), job.json (the
// same for people), job.log (the child's output) and whatever the pipeline writes. The child is
// started as job_command + ["--job", <job.pb>, "--work_dir", <dir>] (+ "--event_fd=3").
// When that folder cannot be prepared (job.pb or job.json cannot be written: a full disk, a
// work_dir replaced by a file) or the job process cannot be started (log file, pipe, fork), the
// trouble is this worker's, not the job's: the assignment is rejected (AssignmentRejected with
// the reason, e.g. "cannot write <dir>/job.pb: No space left on device"), an error is logged,
// and the scheduler places the job on another worker.
// After a job SUCCEEDED its training checkpoints (<dir>/train/) are removed; job.log, job.pb,
// job.json and the other files stay. A failed or cancelled job keeps them for its next attempt.
//
// Thread-safety: Start/Stop from one thread; the rest is internal.
#ifndef QUANTD_WORKER_DAEMON_WORKER_DAEMON_H_
#define QUANTD_WORKER_DAEMON_WORKER_DAEMON_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "worker/daemon/worker_metrics.h"
#include "worker/link/event_outbox.h"
#include "worker/link/scheduler_link.h"
#include "worker/runner/job_process.h"

namespace quantd::daemon {

struct DaemonOptions {
  link::LinkOptions link;
  std::string work_dir;
  // The job process command, e.g. {"/usr/bin/quantd-worker", "exec-job"}.
  std::vector<std::string> job_command;
  std::chrono::milliseconds cancel_grace{10000};
  size_t outbox_memory_events = 100000;
  // Lines of the job log shipped as log events when a job fails.
  int failure_log_lines = 20;
  // Where /metrics is served ("127.0.0.1:9465"; port 0 picks one); empty = not served.
  std::string metrics_address;
};

class WorkerDaemon {
 public:
  explicit WorkerDaemon(DaemonOptions options);
  ~WorkerDaemon();

  // Starts the link (and /metrics). UNAVAILABLE when the metrics port cannot be bound.
  absl::Status Start();
  // Stops taking jobs (heartbeats say draining), cancels the running ones, waits for them,
  // reports them CANCELLED ("the worker is shutting down"; the scheduler requeues a job that
  // no user cancelled) and closes the link once the scheduler has handled those finishes.
  void Stop();

  int running_jobs() const;
  link::SchedulerLink& scheduler_link() { return *link_; }
  WorkerMetrics& metrics() { return metrics_; }

 private:
  struct RunningJob {
    std::unique_ptr<runner::JobProcess> process;  // null until the job's thread started it
    // The Job.attempt of the assignment this process runs; named in its finish and Hellos.
    int32_t attempt = 0;
    bool cancel_requested = false;
    // The scheduler asked for the cancel (a user cancelled the job).
    bool cancelled_by_scheduler = false;
    // The scheduler refused this attempt back after a reconnect (Welcome.stop_jobs): it has
    // requeued the job, so this process is stopped and neither its events nor its outcome are
    // reported (they would be taken for the next attempt's).
    bool abandoned = false;
    // A new attempt of the same job assigned while the abandoned one is still stopping; it
    // starts when that process has exited.
    std::optional<v1::Assignment> next_attempt;
    std::thread thread;
  };

  void OnAssignment(const v1::Assignment& assignment);
  // Prepares the job's folder and starts its thread. Caller holds mu_.
  void StartAssignmentLocked(const v1::Assignment& assignment);
  // Rejects the assignment for this worker's trouble `why` and logs an error. Caller holds mu_.
  void RejectLocked(const std::string& job_id, int32_t attempt, const absl::Status& why);
  void OnCancel(const std::string& job_id);
  void OnStopJob(const std::string& job_id);
  // The job's thread: starts the child, forwards its events, reports the outcome.
  void RunJob(const std::string& job_id, int32_t attempt,
              runner::JobProcessOptions process_options);
  // For Hello: each job with the attempt it runs (the waiting next attempt, when there is
  // one: that is the attempt this worker will report on).
  std::vector<v1::RunningJob> RunningJobs() const;

  const DaemonOptions options_;
  WorkerMetrics metrics_;
  link::EventOutbox outbox_;
  std::unique_ptr<link::SchedulerLink> link_;
  mutable std::mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, RunningJob> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> finished_threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace quantd::daemon

#endif  // QUANTD_WORKER_DAEMON_WORKER_DAEMON_H_
