// The worker's real SchedulerLink and EventOutbox (worker/link) against a real quantd:
// assignment, acknowledged events, a scheduler killed with SIGKILL and restarted on the same
// port, re-attach with resend, and the finish.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "gtest/gtest.h"
#include "tests/server/harness.h"
#include "tests/server/quantd_fixture.h"
#include "tests/server/test_worker_link.h"
#include "worker/link/event_outbox.h"
#include "worker/link/scheduler_link.h"

namespace quantd {
namespace {

using testing::QuantdProcess;
using testing::Watcher;

constexpr absl::Duration kWait = absl::Seconds(30);

class WorkerLinkE2eTest : public testing::QuantdFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(MakeScratch("quantd_link_e2e", testing::kAliceAndWorkerTokens));
    std::filesystem::create_directories(dir_ + "/spill");
    std::filesystem::create_directories(dir_ + "/spill2");
    port_ = testing::FreePort();
    ASSERT_NE(port_, 0);
  }
  // `log`: the file (in dir_) that gets quantd's stderr.
  void StartQuantd(const std::string& log = "quantd.log") {
    StartQuantdProcess({"--listen=127.0.0.1:" + std::to_string(port_)}, log);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Worker node1-gpu0 of testing::TestWorkerLink.
  link::LinkOptions WorkerOptions() const {
    return testing::TestWorkerLink(address(), "node1-gpu0");
  }

  // Adds `count` loss events for `job` to the outbox.
  void AddLosses(link::EventOutbox& outbox, const std::string& job, int first, int count) {
    for (int i = first; i < first + count; ++i) {
      v1::JobEvent event;
      event.mutable_loss()->set_step(i);
      event.mutable_loss()->set_loss(1.0 / (i + 1));
      outbox.Add(job, event);
    }
  }

  // Submits testing::MinimalSpec() as alice over real gRPC; returns the job id ("" on failure,
  // with a test failure recorded).
  std::string SubmitMinimalJob() {
    auto stub = v1::QuantizeService::NewStub(
        grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
    v1::SubmitJobRequest request;
    *request.mutable_spec() = testing::MinimalSpec();
    v1::SubmitJobResponse response;
    EXPECT_TRUE(stub->SubmitJob(testing::Context("alice-token").get(), request, &response).ok());
    return response.job().job_id();
  }

  int port_ = 0;
};

TEST_F(WorkerLinkE2eTest, EventsSurviveSchedulerKillAndFinishArrives) {
  StartQuantd();
  link::EventOutbox outbox(10000, dir_ + "/spill");
  absl::Mutex mu;
  std::vector<std::string> assigned;
  link::LinkOptions options = WorkerOptions();
  options.hostname = "node1";
  options.version = "test";
  link::LinkCallbacks callbacks;
  callbacks.on_assignment = [&](const v1::Assignment& assignment) {
    absl::MutexLock lock(&mu);
    assigned.push_back(assignment.job().job_id());
  };
  callbacks.running_jobs = [&] {
    absl::MutexLock lock(&mu);
    std::vector<v1::RunningJob> running;
    for (const std::string& id : assigned) running.emplace_back().set_job_id(id);
    return running;
  };
  link::SchedulerLink worker(options, callbacks, &outbox);
  worker.Start();

  const std::string job = SubmitMinimalJob();
  ASSERT_FALSE(job.empty());
  {
    absl::MutexLock lock(&mu);
    auto got = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !assigned.empty(); };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&got), kWait)) << "no assignment";
    ASSERT_EQ(assigned[0], job);
  }

  // 30 events: QUEUED, ASSIGNED, RUNNING + 30 = sequence 33.
  AddLosses(outbox, job, 0, 30);
  worker.Notify();
  std::vector<v1::JobEvent> seen;
  {
    Watcher watcher(address(), "alice-token", job, 0);
    ASSERT_TRUE(watcher.WaitForSequence(33, kWait));
    process_->Kill();
    ASSERT_TRUE(watcher.WaitDone(kWait).has_value());
    seen = watcher.events();
  }
  // Produced while the scheduler is down; the link resends them after re-attaching.
  AddLosses(outbox, job, 30, 20);
  worker.Notify();
  StartQuantd();

  Watcher resumed(address(), "alice-token", job, seen.back().sequence());
  ASSERT_TRUE(resumed.WaitForSequence(53, kWait)) << "events after the restart did not arrive";
  v1::JobFinished finished;
  finished.set_job_id(job);
  finished.set_state(v1::JOB_STATE_SUCCEEDED);
  worker.Finish(finished);
  auto status = resumed.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->error_message();
  worker.Stop();

  std::vector<v1::JobEvent> all = seen;
  for (const auto& event : resumed.events()) all.push_back(event);
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i].sequence(), int64_t(i + 1));
  int losses = 0;
  for (const auto& event : all) losses += event.has_loss();
  EXPECT_EQ(losses, 50);
  ASSERT_TRUE(all.back().has_state_change());
  EXPECT_EQ(all.back().state_change().to(), v1::JOB_STATE_SUCCEEDED);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Jobs whose finish quantd recorded are not named as running after a reconnect (they were,
// and quantd counted them as stale Hello running jobs and stale finishes); a finish made
// while quantd was down is still delivered after the restart.
TEST_F(WorkerLinkE2eTest, RecordedFinishesAreNotReportedAgainAfterReconnect) {
  StartQuantd();
  link::EventOutbox outbox(10000, dir_ + "/spill");
  absl::Mutex mu;
  std::vector<v1::Assignment> assigned;
  std::set<std::string> running;
  link::LinkOptions options = WorkerOptions();
  link::LinkCallbacks callbacks;
  callbacks.on_assignment = [&](const v1::Assignment& assignment) {
    outbox.StartAttempt(assignment.job().job_id(), assignment.job().attempt());
    absl::MutexLock lock(&mu);
    assigned.push_back(assignment);
    running.insert(assignment.job().job_id());
  };
  callbacks.running_jobs = [&] {
    absl::MutexLock lock(&mu);
    std::vector<v1::RunningJob> jobs;
    for (const std::string& id : running) {
      v1::RunningJob& job = jobs.emplace_back();
      job.set_job_id(id);
      job.set_attempt(0);
    }
    return jobs;
  };
  link::SchedulerLink worker(options, callbacks, &outbox);
  worker.Start();

  // Submits a job and waits for its assignment; the job runs until Finish.
  auto run = [&](int number) -> std::string {
    const std::string job = SubmitMinimalJob();
    absl::MutexLock lock(&mu);
    auto got = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return static_cast<int>(assigned.size()) >= number;
    };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&got), kWait)) << "no assignment";
    return job;
  };
  auto finish = [&](const std::string& job) {
    {
      absl::MutexLock lock(&mu);
      running.erase(job);
    }
    v1::JobFinished finished;
    finished.set_job_id(job);
    finished.set_state(v1::JOB_STATE_SUCCEEDED);
    finished.set_attempt(0);
    worker.Finish(finished);
  };
  auto wait_succeeded = [&](const std::string& job) {
    Watcher watcher(address(), "alice-token", job, 0);
    auto status = watcher.WaitDone(kWait);
    ASSERT_TRUE(status.has_value()) << job << " did not end";
    ASSERT_FALSE(watcher.events().empty());
    EXPECT_EQ(watcher.events().back().state_change().to(), v1::JOB_STATE_SUCCEEDED) << job;
  };
  auto wait_sessions = [&](int sessions) {
    const absl::Time deadline = absl::Now() + kWait;
    while (!(worker.connected() && worker.sessions() >= sessions) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_TRUE(worker.connected() && worker.sessions() >= sessions) << "no reconnect";
  };

  // A: events and a finish quantd records in the first session.
  const std::string a = run(1);
  AddLosses(outbox, a, 0, 5);
  worker.Notify();
  finish(a);
  wait_succeeded(a);
  // B: ends while quantd is down; its finish is delivered after the restart.
  const std::string b = run(2);
  AddLosses(outbox, b, 0, 5);
  worker.Notify();
  {
    Watcher watcher(address(), "alice-token", b, 0);
    ASSERT_TRUE(watcher.WaitForSequence(8, kWait));  // QUEUED, ASSIGNED, RUNNING + 5
  }
  process_->Kill();
  finish(b);
  StartQuantd("quantd2.log");
  wait_sessions(2);
  wait_succeeded(b);
  // A third job runs through after B's finish, so quantd has handled all the link sent.
  const std::string c = run(3);
  finish(c);
  wait_succeeded(c);

  process_->Kill();
  StartQuantd("quantd3.log");
  wait_sessions(3);
  const std::string d = run(4);  // as above: everything sent before it was handled
  finish(d);
  wait_succeeded(d);
  auto scraped = testing::HttpGet(process_->metrics_port(), "/metrics");
  ASSERT_TRUE(scraped.ok()) << scraped.status();
  worker.Stop();

  for (const std::string log : {"quantd2.log", "quantd3.log"}) {
    const std::string text = ReadFile(dir_ + "/" + log);
    EXPECT_EQ(text.find("stale"), std::string::npos) << log << ":\n" << text;
    EXPECT_EQ(text.find("not running on worker"), std::string::npos) << log << ":\n" << text;
  }
  EXPECT_NE(ReadFile(dir_ + "/quantd3.log")
                .find("worker node1-gpu0 connected (1 devices, 0 running jobs)"),
            std::string::npos)
      << "a finished job was named as running";
  for (const std::string kind : {"hello", "finished", "events", "rejected"}) {
    const std::string series = "quantd_stale_worker_messages_total{kind=\"" + kind + "\"} ";
    const size_t at = scraped->find(series);
    if (at == std::string::npos) continue;
    EXPECT_EQ(scraped->substr(at + series.size(), 2), "0\n") << series;
  }
}

// A worker with a wrong token is told why on both sides: the link reports (and logs) the
// UNAUTHENTICATED status of each try, quantd logs the refused connection without the token.
TEST_F(WorkerLinkE2eTest, RejectedTokenIsReportedOnBothSides) {
  StartQuantd();
  link::EventOutbox outbox(100, dir_ + "/spill");
  link::LinkOptions options = WorkerOptions();
  options.token = "not-a-worker-token";
  absl::Mutex mu;
  std::vector<grpc::Status> ends;
  link::LinkCallbacks callbacks;
  callbacks.on_session_end = [&](const grpc::Status& status) {
    absl::MutexLock lock(&mu);
    ends.push_back(status);
  };
  link::SchedulerLink worker(options, callbacks, &outbox);
  worker.Start();
  {
    absl::MutexLock lock(&mu);
    auto two = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return ends.size() >= 2; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&two), kWait)) << "no retry";
    for (const grpc::Status& status : ends) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
      EXPECT_EQ(status.error_message(), "unknown token");
    }
  }
  EXPECT_FALSE(worker.connected());
  worker.Stop();

  process_.reset();
  std::ifstream in(dir_ + "/quantd.log");
  std::stringstream log;
  log << in.rdbuf();
  EXPECT_NE(log.str().find("refused a worker connection from"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("unknown token"), std::string::npos) << log.str();
  EXPECT_EQ(log.str().find("not-a-worker-token"), std::string::npos) << log.str();
}

// Two worker processes started with the same worker_id (two links with different
// instance_ids): the second is refused with ALREADY_EXISTS and backs off; the first keeps
// its stream and its running job. quantd used to let them replace each other ~19 times a
// second, requeuing the job on every turn until it failed WORKER_LOST.
TEST_F(WorkerLinkE2eTest, SecondWorkerWithTheSameIdIsRefusedAndTheJobRunsOn) {
  StartQuantd();
  absl::Mutex mu;
  std::vector<std::string> assigned;
  std::vector<grpc::Status> first_ends;
  std::vector<grpc::Status> second_ends;
  link::EventOutbox first_outbox(1000, dir_ + "/spill");
  link::LinkOptions first_options = WorkerOptions();
  first_options.instance_id = "process-a";
  link::LinkCallbacks first_callbacks;
  first_callbacks.on_assignment = [&](const v1::Assignment& assignment) {
    absl::MutexLock lock(&mu);
    assigned.push_back(assignment.job().job_id());
  };
  first_callbacks.running_jobs = [&] {
    absl::MutexLock lock(&mu);
    std::vector<v1::RunningJob> running;
    for (const std::string& id : assigned) running.emplace_back().set_job_id(id);
    return running;
  };
  first_callbacks.on_session_end = [&](const grpc::Status& status) {
    absl::MutexLock lock(&mu);
    first_ends.push_back(status);
  };
  link::SchedulerLink first(first_options, first_callbacks, &first_outbox);
  first.Start();

  const std::string job = SubmitMinimalJob();
  ASSERT_FALSE(job.empty());
  {
    absl::MutexLock lock(&mu);
    auto got = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !assigned.empty(); };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&got), kWait)) << "no assignment";
  }
  AddLosses(first_outbox, job, 0, 1);
  first.Notify();

  link::EventOutbox second_outbox(1000, dir_ + "/spill2");
  link::LinkOptions second_options = WorkerOptions();
  second_options.instance_id = "process-b";
  link::LinkCallbacks second_callbacks;
  second_callbacks.on_session_end = [&](const grpc::Status& status) {
    absl::MutexLock lock(&mu);
    second_ends.push_back(status);
  };
  link::SchedulerLink second(second_options, second_callbacks, &second_outbox);
  second.Start();
  {
    absl::MutexLock lock(&mu);
    auto refused = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return second_ends.size() >= 3; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&refused), kWait)) << "no refusals";
  }
  absl::SleepFor(absl::Seconds(1));
  second.Stop();
  {
    absl::MutexLock lock(&mu);
    for (const grpc::Status& status : second_ends) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << status.error_message();
      EXPECT_EQ(status.error_message().rfind("worker id node1-gpu0 is in use by another live "
                                             "worker (from ipv4:127.0.0.1:",
                                             0),
                0u)
          << status.error_message();
    }
    EXPECT_TRUE(first_ends.empty()) << first_ends[0].error_message();
  }
  EXPECT_EQ(first.sessions(), 1);
  EXPECT_TRUE(first.connected());
  EXPECT_EQ(second.sessions(), 0);

  auto stub = v1::QuantizeService::NewStub(
      grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
  v1::GetJobRequest get;
  get.set_job_id(job);
  v1::Job state;
  ASSERT_TRUE(stub->GetJob(testing::Context("alice-token").get(), get, &state).ok());
  EXPECT_EQ(state.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(state.attempt(), 0);
  EXPECT_EQ(state.worker_id(), "node1-gpu0");
  v1::JobFinished finished;
  finished.set_job_id(job);
  finished.set_state(v1::JOB_STATE_SUCCEEDED);
  Watcher watcher(address(), "alice-token", job, 0);
  first.Finish(finished);
  ASSERT_TRUE(watcher.WaitDone(kWait).has_value());
  ASSERT_TRUE(stub->GetJob(testing::Context("alice-token").get(), get, &state).ok());
  EXPECT_EQ(state.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(state.attempt(), 0);
  first.Stop();

  process_.reset();
  const std::string log = ReadFile(dir_ + "/quantd.log");
  EXPECT_NE(log.find("is in use by the live worker from"), std::string::npos) << log;
  EXPECT_EQ(log.find("replaces the live one"), std::string::npos) << log;
  EXPECT_EQ(log.find("reconnected without the job"), std::string::npos) << log;
}

}  // namespace
}  // namespace quantd
