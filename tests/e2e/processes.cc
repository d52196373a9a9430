#include "tests/e2e/processes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace quantd::e2e {

absl::StatusOr<std::unique_ptr<Process>> Process::Start(
    const std::vector<std::string>& argv, const std::string& output_path,
    const std::map<std::string, std::string>& extra_env) {
  std::vector<std::string> args = argv;
  std::vector<char*> raw;
  for (auto& arg : args) raw.push_back(arg.data());
  raw.push_back(nullptr);
  const int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) return absl::InternalError("cannot open " + output_path);
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    for (const auto& [name, value] : extra_env) ::setenv(name.c_str(), value.c_str(), 1);
    ::execv(raw[0], raw.data());
    ::_exit(127);
  }
  ::close(out);
  auto process = std::unique_ptr<Process>(new Process());
  process->pid_ = pid;
  process->output_path_ = output_path;
  return process;
}

Process::~Process() { Kill(); }

std::string Process::Output() const {
  std::ifstream in(output_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int Process::WaitExit(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_code_;
  int status = 0;
  const bool exited = WaitFor(
      [&] {
        if (::waitpid(pid_, &status, WNOHANG) == pid_) reaped_ = true;
        return reaped_;
      },
      timeout);
  if (!exited) return -1;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& output_path,
                         std::chrono::milliseconds timeout,
                         const std::map<std::string, std::string>& extra_env) {
  ::unlink(output_path.c_str());
  CommandResult result;
  auto process = Process::Start(argv, output_path, extra_env);
  if (!process.ok()) return result;
  result.exit_code = (*process)->WaitExit(timeout);
  result.output = (*process)->Output();
  return result;
}

void Process::Kill() {
  if (reaped_ || pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  reaped_ = true;
}

bool Process::Terminate(std::chrono::milliseconds timeout) {
  if (reaped_) return true;
  ::kill(pid_, SIGTERM);
  const bool exited = WaitFor(
      [this] {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) reaped_ = true;
        return reaped_;
      },
      timeout);
  if (!exited) Kill();
  return exited;
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

bool ProcessGone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

std::optional<std::string> WaitForOutput(const Process& process, const std::string& pattern,
                                         std::chrono::milliseconds timeout) {
  const std::regex regex(pattern);
  std::optional<std::string> found;
  WaitFor(
      [&] {
        const std::string output = process.Output();
        std::smatch match;
        if (!std::regex_search(output, match, regex)) return false;
        found = match[1].str();
        return true;
      },
      timeout);
  return found;
}

}  // namespace quantd::e2e
