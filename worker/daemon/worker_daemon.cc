#include "worker/daemon/worker_daemon.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/common/fd_write.h"
#include "proto/spec/spec_file.h"
#include "spdlog/spdlog.h"

namespace quantd::daemon {
namespace {

absl::Status CannotWrite(const std::string& path, int error) {
  return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(error)));
}

// Replaces the file at `path` with `data`, checking every write and the close.
absl::Status WriteFileChecked(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return CannotWrite(path, errno);
  int error = WriteAll(fd, data.data(), data.size());
  if (::close(fd) != 0 && error == 0) error = errno;
  return error == 0 ? absl::OkStatus() : CannotWrite(path, error);
}

}  // namespace

WorkerDaemon::WorkerDaemon(DaemonOptions options)
    : options_(std::move(options)),
      outbox_(options_.outbox_memory_events, options_.work_dir + "/outbox") {
  link::LinkCallbacks callbacks;
  callbacks.on_assignment = [this](const v1::Assignment& a) { OnAssignment(a); };
  callbacks.on_cancellation = [this](const v1::Cancellation& c) { OnCancel(c.job_id()); };
  callbacks.on_stop_job = [this](const std::string& job_id) { OnStopJob(job_id); };
  callbacks.running_jobs = [this] { return RunningJobs(); };
  link::LinkOptions link_options = options_.link;
  // Device figures go to the scheduler (Hello, heartbeats) and to /metrics.
  link_options.devices = [this, discover = options_.link.devices] {
    std::vector<v1::Device> devices = discover ? discover() : std::vector<v1::Device>{};
    metrics_.SetDevices(devices);
    metrics_.SetConnected(link_ != nullptr && link_->connected());
    return devices;
  };
  link_ = std::make_unique<link::SchedulerLink>(link_options, callbacks, &outbox_);
}

WorkerDaemon::~WorkerDaemon() { Stop(); }

absl::Status WorkerDaemon::Start() {
  std::error_code error;
  std::filesystem::create_directories(options_.work_dir, error);
  if (error) {
    return absl::FailedPreconditionError("cannot create --work_dir " + options_.work_dir + ": " +
                                         error.message());
  }
  if (!options_.metrics_address.empty()) {
    if (auto status = metrics_.Serve(options_.metrics_address); !status.ok()) return status;
  }
  link_->Start();
  return absl::OkStatus();
}

void WorkerDaemon::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    // Before any finish below: the scheduler must not hand the requeued jobs back to us.
    link_->SetDraining(true);
    for (auto& [id, job] : jobs_) {
      job.cancel_requested = true;
      if (job.process != nullptr) job.process->RequestCancel();
    }
  }
  // Job threads remove themselves from jobs_ and park their std::thread in
  // finished_threads_; wait for all of them.
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& thread : finished_threads_) threads.push_back(std::move(thread));
      finished_threads_.clear();
      if (jobs_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& thread : threads) thread.join();
  // Give the link a moment to deliver the last events and finishes before closing.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline) {
    bool pending = false;
    for (const auto& id : outbox_.jobs()) pending |= outbox_.acked(id) < outbox_.last(id);
    if (!pending || !link_->connected()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  link_->Stop();
}

int WorkerDaemon::running_jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(jobs_.size());
}

std::vector<v1::RunningJob> WorkerDaemon::RunningJobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::RunningJob> running;
  for (const auto& [id, job] : jobs_) {
    v1::RunningJob& out = running.emplace_back();
    out.set_job_id(id);
    out.set_attempt(job.next_attempt.has_value() ? job.next_attempt->job().attempt() : job.attempt);
  }
  return running;
}

void WorkerDaemon::OnAssignment(const v1::Assignment& assignment) {
  const std::string job_id = assignment.job().job_id();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& thread : finished_threads_) thread.join();  // they only have to return
  finished_threads_.clear();
  if (stopping_) return;
  if (auto it = jobs_.find(job_id); it != jobs_.end()) {
    // A repeated assignment after re-attach is ignored; a new attempt waits for the old one.
    if (it->second.abandoned) {
      spdlog::info("job {}: attempt {} waits for the previous attempt to stop", job_id,
                   assignment.job().attempt());
      it->second.next_attempt = assignment;
    }
    return;
  }
  StartAssignmentLocked(assignment);
}

void WorkerDaemon::StartAssignmentLocked(const v1::Assignment& assignment) {
  const std::string job_id = assignment.job().job_id();
  const std::string dir = options_.work_dir + "/" + job_id;
  const std::string job_path = dir + "/job.pb";
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  absl::Status prepared = error ? absl::InternalError(absl::StrCat("cannot create the job folder ",
                                                                   dir, ": ", error.message()))
                                : absl::OkStatus();
  // job.pb is what the job process reads; job.json is the same for people.
  if (prepared.ok()) prepared = WriteFileChecked(job_path, assignment.SerializeAsString());
  if (prepared.ok()) prepared = WriteFileChecked(dir + "/job.json", ToJson(assignment, true));
  if (!prepared.ok()) {
    RejectLocked(job_id, assignment.job().attempt(), prepared);
    return;
  }

  runner::JobProcessOptions process_options;
  process_options.argv = options_.job_command;
  for (const std::string& extra :
       {std::string("--job"), job_path, std::string("--work_dir"), dir}) {
    process_options.argv.push_back(extra);
  }
  process_options.log_path = dir + "/job.log";
  process_options.cancel_grace = options_.cancel_grace;
  process_options.log_tail_lines = options_.failure_log_lines;
  const int32_t attempt = assignment.job().attempt();
  // Before the job's thread exists: every event of this attempt carries the attempt.
  outbox_.StartAttempt(job_id, attempt);
  RunningJob& job = jobs_[job_id];
  job.attempt = attempt;
  // The job's own thread forks the child: the child's parent-death signal is tied to the
  // forking thread, so it must live exactly as long as the job.
  job.thread = std::thread(&WorkerDaemon::RunJob, this, job_id, attempt, process_options);
}

void WorkerDaemon::RejectLocked(const std::string& job_id, int32_t attempt,
                                const absl::Status& why) {
  spdlog::error("job {}: rejected, this worker cannot run jobs: {}", job_id,
                std::string(why.message()));
  v1::AssignmentRejected rejected;
  rejected.set_job_id(job_id);
  rejected.set_attempt(attempt);
  rejected.set_reason(absl::StrCat("cannot start the job process: ", why.message()));
  link_->Reject(rejected);
}

void WorkerDaemon::OnCancel(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  spdlog::info("job {}: cancelling", job_id);
  it->second.cancel_requested = true;
  it->second.cancelled_by_scheduler = true;
  if (it->second.process != nullptr) it->second.process->RequestCancel();
}

void WorkerDaemon::OnStopJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return;
  spdlog::info("job {}: the scheduler did not take this attempt back; stopping it", job_id);
  it->second.abandoned = true;
  it->second.cancel_requested = true;
  // Refused too when it was the attempt this worker reported (RunningJobs()).
  it->second.next_attempt.reset();
  if (it->second.process != nullptr) it->second.process->RequestCancel();
  outbox_.Forget(job_id);
}

void WorkerDaemon::RunJob(const std::string& job_id, int32_t attempt,
                          runner::JobProcessOptions process_options) {
  auto started = runner::JobProcess::Start(process_options);
  runner::JobProcess* process = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RunningJob& job = jobs_[job_id];
    if (started.ok()) {
      job.process = std::move(*started);
      process = job.process.get();
      if (job.cancel_requested || stopping_) process->RequestCancel();
    }
  }
  runner::JobOutcome outcome;
  if (process == nullptr) {
    outcome.state = v1::JOB_STATE_FAILED;  // only shows in the log of an abandoned attempt
  } else {
    spdlog::info("job {}: started (pid {})", job_id, process->pid());
    metrics_.OnJobStarted(job_id);
    outcome = process->Run([&](v1::JobEvent event) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (jobs_[job_id].abandoned) return;
      }
      event.set_job_id(job_id);
      metrics_.OnJobEvent(job_id, event);
      outbox_.Add(job_id, event);
      link_->Notify();
    });
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    RunningJob& job = jobs_[job_id];
    if (job.abandoned) {
      spdlog::info("job {}: stopped attempt ended ({}), not reported", job_id,
                   v1::JobState_Name(outcome.state));
      metrics_.OnJobFinished(job_id, outcome.state);
      outbox_.Forget(job_id);
      std::optional<v1::Assignment> next = std::move(job.next_attempt);
      finished_threads_.push_back(std::move(job.thread));
      jobs_.erase(job_id);
      if (next.has_value() && !stopping_) StartAssignmentLocked(*next);
      return;
    }
    if (process == nullptr) {
      // The log file, pipe or fork failed: this worker's trouble, not the job's.
      RejectLocked(job_id, attempt, started.status());
      outbox_.Forget(job_id);
      finished_threads_.push_back(std::move(job.thread));
      jobs_.erase(job_id);
      return;
    }
    if (outcome.state == v1::JOB_STATE_CANCELLED && stopping_ && !job.cancelled_by_scheduler) {
      outcome.failure.set_message("the worker is shutting down");
    }
  }
  const std::string& log_path = process_options.log_path;
  if (outcome.state == v1::JOB_STATE_FAILED && process != nullptr) {
    // Ship the end of the job's log so the failure can be read without shell access.
    const std::string tail = runner::ReadLogTail(log_path, options_.failure_log_lines);
    for (absl::string_view line : absl::StrSplit(tail, '\n', absl::SkipEmpty())) {
      v1::JobEvent event;
      event.set_job_id(job_id);
      event.mutable_log()->set_level("error");
      event.mutable_log()->set_message(std::string(line));
      outbox_.Add(job_id, event);
    }
  }
  if (outcome.state == v1::JOB_STATE_SUCCEEDED) {
    // Checkpoints only serve a rerun of an unfinished job; they are about the model's size.
    const std::string train_dir = std::filesystem::path(log_path).parent_path() / "train";
    std::error_code error;
    std::filesystem::remove_all(train_dir, error);
    if (error) spdlog::warn("job {}: cannot remove {}: {}", job_id, train_dir, error.message());
  }
  spdlog::info("job {}: ended {}", job_id, v1::JobState_Name(outcome.state));
  metrics_.OnJobFinished(job_id, outcome.state);
  v1::JobFinished finished;
  finished.set_job_id(job_id);
  finished.set_state(outcome.state);
  finished.set_attempt(attempt);
  *finished.mutable_failure() = outcome.failure;
  *finished.mutable_result() = outcome.result;
  link_->Finish(finished);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  finished_threads_.push_back(std::move(it->second.thread));
  jobs_.erase(it);
}

}  // namespace quantd::daemon
