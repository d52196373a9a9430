// Real quantd and quantd-worker processes for end-to-end tests: start with arguments and
// extra environment, output to files, SIGKILL or SIGTERM, reap. Waits take deadlines.
#ifndef QUANTD_TESTS_E2E_PROCESSES_H_
#define QUANTD_TESTS_E2E_PROCESSES_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
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

  // The exit code once it exits within `timeout` (128+signal when killed), else -1.
  int WaitExit(std::chrono::milliseconds timeout);
  void Kill();                                        // SIGKILL and reap
  bool Terminate(std::chrono::milliseconds timeout);  // SIGTERM; true when it exited in time

 private:
  pid_t pid_ = -1;
  std::string output_path_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

// Runs `argv` to completion (at most `timeout`); its exit code and combined output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& output_path,
                         std::chrono::milliseconds timeout = std::chrono::seconds(120),
                         const std::map<std::string, std::string>& extra_env = {});

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// Polls `process`'s output until `pattern` (an ECMAScript regex with one capture group) is
// found or `timeout` passes; the first group's text, or nullopt.
std::optional<std::string> WaitForOutput(const Process& process, const std::string& pattern,
                                         std::chrono::milliseconds timeout);

// True when no process `pid` exists (exited and reaped by its parent).
bool ProcessGone(pid_t pid);

}  // namespace quantd::e2e

#endif  // QUANTD_TESTS_E2E_PROCESSES_H_
