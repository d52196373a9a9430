#include "worker/runner/job_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "worker/runner/event_pipe.h"

namespace quantd::runner {
namespace {

std::string ErrnoText(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

bool IsReportedFailure(const v1::JobEvent& event) {
  return event.has_state_change() && event.state_change().to() == v1::JOB_STATE_FAILED &&
         event.state_change().has_failure();
}

}  // namespace

std::string ReadLogTail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > lines) tail.pop_front();
  }
  std::string out;
  for (const auto& l : tail) absl::StrAppend(&out, l, "\n");
  return out;
}

absl::StatusOr<std::unique_ptr<JobProcess>> JobProcess::Start(const JobProcessOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("job process needs a program");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError(ErrnoText("pipe"));
  const int log_fd =
      ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(ErrnoText(("open log " + options.log_path).c_str()));
  }
  std::vector<std::string> argv = options.argv;
  argv.push_back(absl::StrCat("--event_fd=", kChildEventFd));
  std::vector<char*> raw_argv;
  for (auto& arg : argv) raw_argv.push_back(arg.data());
  raw_argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    ::close(log_fd);
    return absl::InternalError(ErrnoText("fork"));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a worker killed with -9 takes its job down too
    ::dup2(fds[1], kChildEventFd);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::execv(raw_argv[0], raw_argv.data());
    const char message[] = "quantd-worker: exec of the job process failed\n";
    (void)!::write(STDERR_FILENO, message, sizeof(message) - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so the group exists before any kill
  ::close(fds[1]);
  ::close(log_fd);
  ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  return std::unique_ptr<JobProcess>(new JobProcess(options, pid, fds[0]));
}

JobProcess::JobProcess(const JobProcessOptions& options, pid_t pid, int event_fd)
    : options_(options), pid_(pid), event_fd_(event_fd) {}

JobProcess::~JobProcess() {
  if (!reaped_) {
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (event_fd_ >= 0) ::close(event_fd_);
}

JobOutcome JobProcess::Run(const std::function<void(v1::JobEvent)>& on_event) {
  using Clock = std::chrono::steady_clock;
  EventPipeReader reader;
  std::vector<v1::JobEvent> events;
  bool pipe_open = true;
  bool pipe_corrupt = false;
  bool term_sent = false;
  Clock::time_point kill_at;
  int wait_status = 0;
  JobOutcome outcome;
  bool reported_failure = false;

  auto drain = [&](int timeout_ms) {
    pollfd pfd{event_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return;
    char buffer[1 << 16];
    while (true) {
      const ssize_t n = ::read(event_fd_, buffer, sizeof(buffer));
      if (n > 0) {
        if (pipe_corrupt) continue;
        events.clear();
        if (!reader.Feed(buffer, static_cast<size_t>(n), &events).ok()) {
          pipe_corrupt = true;  // keep reading so the child never blocks, forward nothing
          continue;
        }
        for (auto& event : events) {
          if (IsReportedFailure(event)) {
            reported_failure = true;
            outcome.failure = event.state_change().failure();
            continue;  // the final state change is the worker's to report
          }
          if (event.has_result()) outcome.result = event.result();
          on_event(std::move(event));
        }
        continue;
      }
      if (n == 0) pipe_open = false;
      break;  // EAGAIN or EOF
    }
  };

  while (!reaped_) {
    if (cancel_requested_ && !term_sent) {
      ::kill(-pid_, SIGTERM);
      term_sent = true;
      kill_at = Clock::now() + options_.cancel_grace;
    }
    if (term_sent && Clock::now() >= kill_at) ::kill(-pid_, SIGKILL);
    if (pipe_open) {
      drain(50);
    } else {
      ::usleep(20000);
    }
    const pid_t done = ::waitpid(pid_, &wait_status, WNOHANG);
    if (done == pid_ || (done < 0 && errno == ECHILD)) reaped_ = true;
  }
  // Kill anything the child left behind in its group, then take what is still in the pipe.
  ::kill(-pid_, SIGKILL);
  if (pipe_open) drain(0);

  const std::string tail = ReadLogTail(options_.log_path, options_.log_tail_lines);
  if (WIFEXITED(wait_status)) {
    outcome.exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    outcome.signal = WTERMSIG(wait_status);
  }
  if (outcome.exit_code == kChildSucceeded && !pipe_corrupt) {
    outcome.state = v1::JOB_STATE_SUCCEEDED;
    outcome.failure.Clear();
  } else if (cancel_requested_) {
    outcome.state = v1::JOB_STATE_CANCELLED;
    outcome.failure.set_reason(v1::FAILURE_REASON_CANCELLED);
    outcome.failure.set_message("cancelled");
  } else if (outcome.exit_code == kChildCancelled && !pipe_corrupt) {
    // A SIGTERM that did not come from us, e.g. systemd stopping the worker's whole unit.
    outcome.state = v1::JOB_STATE_CANCELLED;
    outcome.failure.set_reason(v1::FAILURE_REASON_CANCELLED);
    outcome.failure.set_message("the job process was stopped from outside the worker");
  } else if (reported_failure && outcome.exit_code == kChildFailed) {
    outcome.state = v1::JOB_STATE_FAILED;
  } else {
    outcome.state = v1::JOB_STATE_FAILED;
    outcome.failure.set_reason(v1::FAILURE_REASON_INTERNAL);
    std::string what;
    if (pipe_corrupt) {
      what = "job process sent corrupt events";
    } else if (outcome.signal != 0) {
      what = absl::StrCat("job process killed by signal ", outcome.signal, " (",
                          ::strsignal(outcome.signal), ")");
      if (outcome.signal == SIGKILL) what += "; the kernel may have run out of memory";
    } else {
      what = absl::StrCat("job process exited with code ", outcome.exit_code);
    }
    outcome.failure.set_message(tail.empty() ? what : what + "; last log lines:\n" + tail);
  }
  return outcome;
}

}  // namespace quantd::runner
