// The worker daemon (worker/daemon: scheduler link + a child process per job) against a real
// quantd on loopback, with the fake job process of tests/runner.
#include <unistd.h>

#include <fstream>
#include <memory>

#include "gtest/gtest.h"
#include "tests/server/harness.h"
#include "worker/daemon/worker_daemon.h"

namespace quantd {
namespace {

using testing::QuantdProcess;
using testing::Watcher;

constexpr absl::Duration kWait = absl::Seconds(30);

class DaemonE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/quantd_daemon_e2e_" + std::to_string(getpid());
    std::string command = "rm -rf '" + dir_ + "' && mkdir -p '" + dir_ + "'";
    ASSERT_EQ(std::system(command.c_str()), 0);
    std::ofstream(dir_ + "/tokens") << "alice-token alice user\nworker-token workers worker\n";
  }
  void TearDown() override {
    if (HasFailure()) {
      std::ifstream log(dir_ + "/quantd.log");
      std::cerr << "---- quantd.log ----\n" << log.rdbuf() << "\n";
    }
    process_.reset();
    std::string command = "rm -rf '" + dir_ + "'";
    (void)std::system(command.c_str());
  }
  void StartQuantd(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--db=" + dir_ + "/quantd.db",
                                     "--tokens_file=" + dir_ + "/tokens", "--store_sync=normal",
                                     "--shutdown_grace=1s"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = QuantdProcess::Start(testing::QuantdBinary(), args, dir_ + "/quantd.log");
    ASSERT_TRUE(process.ok()) << process.status();
    process_ = std::move(*process);
  }
  // A daemon whose jobs run the fake job `mode` (see tests/runner/fake_job_main.cc).
  daemon::DaemonOptions Options(const std::string& worker_id, const std::string& mode) {
    daemon::DaemonOptions options;
    options.link.scheduler_address = process_->address();
    options.link.token = "worker-token";
    options.link.worker_id = worker_id;
    options.link.hostname = "node1";
    options.link.version = "test";
    options.link.devices = [] {
      v1::Device device;
      device.set_id("cuda:0");
      device.set_total_memory_bytes(80LL << 30);
      device.set_free_memory_bytes(80LL << 30);
      return std::vector<v1::Device>{device};
    };
    options.link.min_backoff = std::chrono::milliseconds(20);
    options.link.max_backoff = std::chrono::milliseconds(200);
    options.work_dir = dir_ + "/" + worker_id;
    options.job_command = {FAKE_JOB_PATH, mode, "0"};
    options.cancel_grace = std::chrono::milliseconds(5000);
    return options;
  }

  std::string dir_;
  std::unique_ptr<QuantdProcess> process_;
};

// What `quantd-worker connect` does on SIGTERM: the running job is handed back to the scheduler,
// at once (not after --worker_lost_after), and another worker gets it as the next attempt.
TEST_F(DaemonE2eTest, StoppingTheDaemonRequeuesItsRunningJob) {
  ASSERT_NO_FATAL_FAILURE(StartQuantd({"--worker_lost_after=600s"}));
  auto first = std::make_unique<daemon::WorkerDaemon>(Options("w1", "wait-cancel"));
  ASSERT_TRUE(first->Start().ok());

  auto stub = v1::QuantizeService::NewStub(
      grpc::CreateChannel(process_->address(), grpc::InsecureChannelCredentials()));
  v1::SubmitJobRequest request;
  *request.mutable_spec() = testing::MinimalSpec();
  v1::SubmitJobResponse response;
  ASSERT_TRUE(stub->SubmitJob(testing::Context("alice-token").get(), request, &response).ok());
  const std::string job_id = response.job().job_id();
  Watcher watcher(process_->address(), "alice-token", job_id, 0);
  // QUEUED, ASSIGNED, RUNNING, then the fake job's first progress event.
  ASSERT_TRUE(watcher.WaitForSequence(4, kWait)) << "the job did not start";

  first->Stop();
  daemon::WorkerDaemon second(Options("w2", "succeed"));
  ASSERT_TRUE(second.Start().ok());
  auto status = watcher.WaitDone(kWait);
  ASSERT_TRUE(status.has_value()) << "the stopped job did not run again";
  EXPECT_TRUE(status->ok()) << status->error_message();
  std::vector<std::pair<v1::JobState, std::string>> states;  // (to, worker)
  for (const v1::JobEvent& event : watcher.events()) {
    if (!event.has_state_change()) continue;
    const v1::StateChange& change = event.state_change();
    states.emplace_back(change.to(), change.worker_id());
    if (change.from() == v1::JOB_STATE_RUNNING && change.to() == v1::JOB_STATE_QUEUED) {
      EXPECT_EQ(change.failure().reason(), v1::FAILURE_REASON_WORKER_LOST);
      EXPECT_EQ(change.failure().message(),
                "worker w1 stopped the job: the worker is shutting down");
    }
  }
  using State = std::pair<v1::JobState, std::string>;
  EXPECT_EQ(states, (std::vector<State>{{v1::JOB_STATE_QUEUED, ""},
                                        {v1::JOB_STATE_ASSIGNED, "w1"},
                                        {v1::JOB_STATE_RUNNING, "w1"},
                                        {v1::JOB_STATE_QUEUED, "w1"},
                                        {v1::JOB_STATE_ASSIGNED, "w2"},
                                        {v1::JOB_STATE_RUNNING, "w2"},
                                        {v1::JOB_STATE_SUCCEEDED, "w2"}}));
  v1::GetJobRequest get;
  get.set_job_id(job_id);
  v1::Job job;
  ASSERT_TRUE(stub->GetJob(testing::Context("alice-token").get(), get, &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_EQ(job.worker_id(), "w2");
  second.Stop();
}

}  // namespace
}  // namespace quantd
