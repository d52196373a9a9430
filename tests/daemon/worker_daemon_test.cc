// The worker daemon against a scripted scheduler that assigns one job: what the daemon says
// back (AssignmentRejected or JobFinished) and what it leaves in the job's folder.
#include "worker/daemon/worker_daemon.h"

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>

#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace quantd::daemon {
namespace {

using namespace std::chrono_literals;

// Welcomes the worker, assigns job j-1 (attempt 3) once (when not held), acknowledges every event
// and records the first rejection or finish.
class ScriptedScheduler final : public v1::WorkerService::Service {
 public:
  grpc::Status Connect(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::SchedulerMessage, v1::WorkerMessage>* stream) override {
    v1::WorkerMessage message;
    if (!stream->Read(&message) || !message.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello first");
    }
    v1::SchedulerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_seconds(1);
    stream->Write(welcome);
    while (hold_) std::this_thread::sleep_for(10ms);
    if (!assigned_.exchange(true)) {
      v1::SchedulerMessage assignment;
      assignment.mutable_assignment()->mutable_job()->set_job_id("j-1");
      assignment.mutable_assignment()->mutable_job()->set_attempt(3);
      stream->Write(assignment);
    }
    while (stream->Read(&message)) {
      if (message.has_events()) {
        v1::SchedulerMessage ack;
        ack.mutable_ack()->set_job_id(message.events().job_id());
        ack.mutable_ack()->set_worker_sequence(message.events().first_worker_sequence() +
                                               message.events().events_size() - 1);
        ack.mutable_ack()->set_attempt(message.events().attempt());
        stream->Write(ack);
      } else if (message.has_rejected() || message.has_finished()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (message.has_rejected() && !rejected_) rejected_ = message.rejected();
        if (message.has_finished() && !finished_) finished_ = message.finished();
        done_.notify_all();
        if (message.has_finished()) {
          v1::SchedulerMessage ack;
          ack.mutable_ack()->set_job_id(message.finished().job_id());
          ack.mutable_ack()->set_attempt(message.finished().attempt());
          stream->Write(ack);
        }
      }
    }
    return grpc::Status::OK;
  }

  // Waits for the job's rejection or finish.
  bool WaitDone() {
    std::unique_lock<std::mutex> lock(mu_);
    return done_.wait_for(lock, 30s, [this] { return rejected_ || finished_; });
  }

  std::atomic<bool> hold_{false};  // true: the assignment waits
  std::atomic<bool> assigned_{false};
  std::mutex mu_;
  std::condition_variable done_;
  std::optional<v1::AssignmentRejected> rejected_;
  std::optional<v1::JobFinished> finished_;
};

class WorkerDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&scheduler_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    work_dir_ = ::testing::TempDir() + "/worker_daemon_" + info->name();
    std::filesystem::remove_all(work_dir_);
    job_dir_ = work_dir_ + "/j-1";
  }
  void TearDown() override {
    if (daemon_ != nullptr) daemon_->Stop();
    server_->Shutdown();
  }

  // A daemon whose job runs the fake job `mode` (tests/runner/fake_job_main.cc); not started.
  WorkerDaemon& Make(const std::string& mode) {
    DaemonOptions options;
    options.link.scheduler_address = "127.0.0.1:" + std::to_string(port_);
    options.link.worker_id = "w1";
    options.link.min_backoff = 20ms;
    options.link.max_backoff = 200ms;
    options.work_dir = work_dir_;
    options.job_command = {FAKE_JOB_PATH, mode, "2"};
    daemon_ = std::make_unique<WorkerDaemon>(options);
    return *daemon_;
  }

  // Expects the assignment rejected with a reason containing `reason`, and no finish.
  void ExpectRejected(const std::string& reason) {
    ASSERT_TRUE(scheduler_.WaitDone()) << "the daemon neither rejected nor finished the job";
    std::this_thread::sleep_for(200ms);  // a finish would follow the rejection
    std::lock_guard<std::mutex> lock(scheduler_.mu_);
    EXPECT_FALSE(scheduler_.finished_.has_value()) << scheduler_.finished_->DebugString();
    ASSERT_TRUE(scheduler_.rejected_.has_value());
    EXPECT_EQ(scheduler_.rejected_->job_id(), "j-1");
    EXPECT_EQ(scheduler_.rejected_->attempt(), 3);
    EXPECT_NE(scheduler_.rejected_->reason().find(reason), std::string::npos)
        << scheduler_.rejected_->reason();
    EXPECT_EQ(daemon_->running_jobs(), 0);
  }

  v1::JobFinished ExpectFinished() {
    EXPECT_TRUE(scheduler_.WaitDone());
    std::lock_guard<std::mutex> lock(scheduler_.mu_);
    EXPECT_FALSE(scheduler_.rejected_.has_value()) << scheduler_.rejected_->reason();
    return scheduler_.finished_.value_or(v1::JobFinished());
  }

  void WriteCheckpoint() {
    std::filesystem::create_directories(job_dir_ + "/train");
    std::ofstream(job_dir_ + "/train/finetune.pt") << "weights";
  }

  ScriptedScheduler scheduler_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::string work_dir_;
  std::string job_dir_;
  std::unique_ptr<WorkerDaemon> daemon_;
};

// The work dir deleted and replaced by a file after the start: the worker's trouble, so the
// scheduler gets the job back to place elsewhere instead of a FAILED job.
TEST_F(WorkerDaemonTest, WorkDirReplacedByAFileRejectsTheAssignment) {
  scheduler_.hold_ = true;
  ASSERT_TRUE(Make("succeed").Start().ok());
  std::filesystem::remove_all(work_dir_);
  std::ofstream(work_dir_) << "not a folder";
  scheduler_.hold_ = false;
  ExpectRejected("Not a directory");
}

// A full disk: job.pb cannot be written (here it links to /dev/full, whose writes fail with
// ENOSPC) instead of being left empty for the job to fail on.
TEST_F(WorkerDaemonTest, UnwritableJobFileRejectsTheAssignment) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  std::filesystem::create_directories(job_dir_);
  std::filesystem::create_symlink("/dev/full", job_dir_ + "/job.pb");
  ASSERT_TRUE(Make("succeed").Start().ok());
  ExpectRejected("cannot write " + job_dir_ + "/job.pb: No space left on device");
}

// The job process cannot be started (its log file cannot be opened).
TEST_F(WorkerDaemonTest, JobProcessThatCannotStartRejectsTheAssignment) {
  std::filesystem::create_directories(job_dir_ + "/job.log");  // a folder: open() fails
  ASSERT_TRUE(Make("succeed").Start().ok());
  ExpectRejected("job.log");
}

TEST_F(WorkerDaemonTest, SucceededJobLosesItsCheckpointsOnly) {
  WriteCheckpoint();
  ASSERT_TRUE(Make("succeed").Start().ok());
  EXPECT_EQ(ExpectFinished().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_FALSE(std::filesystem::exists(job_dir_ + "/train"));
  EXPECT_TRUE(std::filesystem::exists(job_dir_ + "/job.log"));
  EXPECT_TRUE(std::filesystem::exists(job_dir_ + "/job.pb"));
  EXPECT_TRUE(std::filesystem::exists(job_dir_ + "/job.json"));
}

TEST_F(WorkerDaemonTest, FailedJobKeepsItsCheckpoints) {
  WriteCheckpoint();
  ASSERT_TRUE(Make("fail").Start().ok());
  EXPECT_EQ(ExpectFinished().state(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(std::filesystem::exists(job_dir_ + "/train/finetune.pt"));
}

}  // namespace
}  // namespace quantd::daemon
