// Runs one job in a child process and turns what happens to it into the job's outcome.
//
// The child is started with fork+exec in its own process group, with "--event_fd=3"
// appended to its argv: it writes framed JobEvents (event_pipe.h) to fd 3 and its
// stdout/stderr go to the job's log file. Child exit codes: kChildSucceeded,
// kChildFailed (after sending a state_change to FAILED with the failure), kChildCancelled.
//
// Outcome rules: exit 0 -> SUCCEEDED (with the child's JobResult event); a failure the child
// reported -> FAILED with it; any other exit or a signal -> FAILED, reason INTERNAL with the
// signal or exit code and the last log lines; after RequestCancel -> CANCELLED unless the
// child had already succeeded; exit kChildCancelled without RequestCancel (the child was sent
// SIGTERM by someone else, e.g. systemd stopping the worker's unit) -> CANCELLED too. Cancel sends
// SIGTERM to the process group, then SIGKILL after the grace period. The child is always reaped: no
// zombie survives Run().
//
// The child gets SIGKILL when the thread that called Start() exits (PR_SET_PDEATHSIG), so a
// worker killed with -9 takes its jobs down; call Start() from a thread that outlives the job.
//
// Thread safety: Run() on one thread; RequestCancel() from any thread.
#ifndef QUANTD_WORKER_RUNNER_JOB_PROCESS_H_
#define QUANTD_WORKER_RUNNER_JOB_PROCESS_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantd/v1/job.pb.h"

namespace quantd::runner {

inline constexpr int kChildSucceeded = 0;
inline constexpr int kChildFailed = 1;
inline constexpr int kChildCancelled = 3;
inline constexpr int kChildEventFd = 3;

struct JobProcessOptions {
  // Program and arguments; "--event_fd=3" is appended.
  std::vector<std::string> argv;
  // The child's stdout and stderr are appended here.
  std::string log_path;
  // Time between SIGTERM and SIGKILL on cancel.
  std::chrono::milliseconds cancel_grace{10000};
  // Log lines attached to a crash's failure message.
  int log_tail_lines = 20;
};

struct JobOutcome {
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  v1::Failure failure;
  v1::JobResult result;
  // Exit code when the child exited, -1 otherwise; signal number when it was killed.
  int exit_code = -1;
  int signal = 0;
};

class JobProcess {
 public:
  // Forks and execs the child. INTERNAL when the pipe, fork or log file fails; a failed
  // exec shows up as exit code 127 with the reason in the log.
  static absl::StatusOr<std::unique_ptr<JobProcess>> Start(const JobProcessOptions& options);

  ~JobProcess();
  JobProcess(const JobProcess&) = delete;
  JobProcess& operator=(const JobProcess&) = delete;

  // Forwards each event to `on_event` in order until the child has exited and the pipe is
  // drained; returns the outcome. Call once.
  JobOutcome Run(const std::function<void(v1::JobEvent)>& on_event);

  // Asks the child to stop (SIGTERM now, SIGKILL after the grace period).
  void RequestCancel() { cancel_requested_ = true; }

  pid_t pid() const { return pid_; }

 private:
  JobProcess(const JobProcessOptions& options, pid_t pid, int event_fd);

  JobProcessOptions options_;
  pid_t pid_;
  int event_fd_;
  bool reaped_ = false;
  std::atomic<bool> cancel_requested_{false};
};

// The last `lines` lines of the file at `path` (empty when it cannot be read).
std::string ReadLogTail(const std::string& path, int lines);

}  // namespace quantd::runner

#endif  // QUANTD_WORKER_RUNNER_JOB_PROCESS_H_
