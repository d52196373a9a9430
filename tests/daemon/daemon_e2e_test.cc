// The worker daemon (worker/daemon: scheduler link + a child process per job) against a real
// quantd on loopback, with the fake job process of tests/runner.
#include <unistd.h>

#include <fstream>
#include <memory>

#include "gtest/gtest.h"
#include "tests/server/harness.h"
#include "tests/server/quantd_fixture.h"
#include "tests/server/test_worker_link.h"
#include "worker/daemon/worker_daemon.h"

namespace quantd {
namespace {

using testing::QuantdProcess;
using testing::Watcher;

constexpr absl::Duration kWait = absl::Seconds(30);

class DaemonE2eTest : public testing::QuantdFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(MakeScratch("quantd_daemon_e2e", testing::kAliceAndWorkerTokens));
  }
  void StartQuantd(std::vector<std::string> extra) {
    extra.insert(extra.begin(), "--store_sync=normal");
    StartQuantdProcess(extra);
  }
  // A daemon whose jobs run the fake job `mode` (see tests/runner/fake_job_main.cc).
  daemon::DaemonOptions Options(const std::string& worker_id, const std::string& mode) {
    daemon::DaemonOptions options;
    options.link = testing::TestWorkerLink(process_->address(), worker_id);
    options.link.heartbeat_interval = link::LinkOptions().heartbeat_interval;
    options.link.hostname = "node1";
    options.link.version = "test";
    options.work_dir = dir_ + "/" + worker_id;
    options.job_command = {FAKE_JOB_PATH, mode, "0"};
    options.cancel_grace = std::chrono::milliseconds(5000);
    return options;
  }
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
