// Real quantd and quantd-worker processes for end-to-end tests: start with arguments and
// extra environment, output to files, SIGKILL or SIGTERM, reap. Waits take deadlines.
#ifndef QUANTD_TESTS_E2E_PROCESSES_H_
#define QUANTD_TESTS_E2E_PROCESSES_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace quantd::e2e {

class Process {
 public:
  // stdout and stderr both go to `output_path`.
  static absl::StatusOr<std::unique_ptr<Process>> Start(
      const std::vector<std::string>& argv, const std::string& output_path,
      const std::map<std::string, std::string>& extra_env = {});
  ~Process();  // SIGKILL when still running

  pid_t pid() const { return pid_; }
  const std::string& output_path() const { return output_path_; }
  std::string Output() const;

  void Kill();                                       // SIGKILL and reap
  bool Terminate(std::chrono::milliseconds timeout);  // SIGTERM; true when it exited in time

 private:
  pid_t pid_ = -1;
  std::string output_path_;
  bool reaped_ = false;
};

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// True when no process `pid` exists (exited and reaped by its parent).
bool ProcessGone(pid_t pid);

}  // namespace quantd::e2e

#endif  // QUANTD_TESTS_E2E_PROCESSES_H_
