// quantd over real gRPC on loopback: a real quantd process, scripted fake workers and
// watchers. Waits are on events with deadlines.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/job_state.h"
#include "tests/server/harness.h"
#include "tests/server/quantd_fixture.h"

namespace quantd {
namespace {

using testing::FakeWorker;
using ::testing::HasSubstr;
using testing::QuantdProcess;
using testing::Watcher;

constexpr absl::Duration kWait = absl::Seconds(20);

class IntegrationTest : public testing::QuantdFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(MakeScratch("quantd_it",
                                        "# token name role\n"
                                        "alice-token alice user\n"
                                        "bob-token bob user\n"
                                        "root-token root admin\n"
                                        "worker-token workers worker\n"));
  }

  void StartQuantd(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), "--store_sync=normal");
    StartQuantdProcess(extra);
    if (process_ == nullptr) return;
    channel_ = grpc::CreateChannel(process_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::QuantizeService::NewStub(channel_);
  }

  // Submits a job as alice that `worker` takes and reports two events of, acknowledged.
  void SubmitAndStart(FakeWorker& worker, v1::Job* job) {
    ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), job).ok());
    ASSERT_TRUE(worker.TakeAssignment(kWait).has_value());
    ASSERT_TRUE(worker.SendEvents(job->job_id(), 1, 2));
    ASSERT_TRUE(worker.WaitAck(job->job_id(), 2, kWait));
  }

  grpc::Status Submit(const std::string& token, const v1::JobSpec& spec, v1::Job* job,
                      const std::string& request_id = "") {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    v1::SubmitJobResponse response;
    grpc::Status status = stub_->SubmitJob(testing::Context(token).get(), request, &response);
    if (job != nullptr) *job = response.job();
    return status;
  }
  grpc::Status Get(const std::string& token, const std::string& job_id, v1::Job* job) {
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    return stub_->GetJob(testing::Context(token).get(), request, job);
  }
  grpc::Status Cancel(const std::string& token, const std::string& job_id, v1::Job* job) {
    v1::CancelJobRequest request;
    request.set_job_id(job_id);
    request.set_reason("test");
    return stub_->CancelJob(testing::Context(token).get(), request, job);
  }
  std::unique_ptr<FakeWorker> Worker(const std::string& id) {
    auto worker = std::make_unique<FakeWorker>(process_->address(), "worker-token", id);
    worker->Connect();
    return worker;
  }
  // Runs another quantd with the test's tokens and `args` to its end (killed after 20 s, as
  // `timeout` does: exit code 124); its exit code. Its log goes to <dir>/<log>.
  int RunOtherQuantd(const std::vector<std::string>& args, const std::string& log) {
    std::string command = "timeout 20 '" + testing::QuantdBinary() + "' --tokens_file='" + dir_ +
                          "/tokens' --store_sync=normal";
    for (const std::string& arg : args) command += " '" + arg + "'";
    command += " >/dev/null 2>'" + dir_ + "/" + log + "'";
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::string ReadLog(const std::string& log) {
    std::ifstream in(dir_ + "/" + log);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  // The sequences must be first, first+1, ... with nothing missing or repeated.
  static void ExpectContiguous(const std::vector<v1::JobEvent>& events, int64_t first) {
    for (size_t i = 0; i < events.size(); ++i) {
      ASSERT_EQ(events[i].sequence(), first + static_cast<int64_t>(i)) << "at index " << i;
    }
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::QuantizeService::Stub> stub_;
};

TEST_F(IntegrationTest, SubmitAssignEventsWatchFromTheMiddleSucceeds) {
  StartQuantd();
  auto worker = Worker("node1-gpu0");
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  EXPECT_EQ(job.owner(), "alice");
  auto assignment = worker->TakeAssignment(kWait);
  ASSERT_TRUE(assignment.has_value());
  ASSERT_EQ(assignment->job().job_id(), job.job_id());
  EXPECT_EQ(assignment->device_ids_size(), 1);

  ASSERT_TRUE(worker->SendEvents(job.job_id(), 1, 10));
  ASSERT_TRUE(worker->WaitAck(job.job_id(), 10, kWait));
  // QUEUED, ASSIGNED, RUNNING, then 10 losses: 13 events. Watch from the middle.
  Watcher watcher(process_->address(), "alice-token", job.job_id(), 7);
  ASSERT_TRUE(watcher.WaitForSequence(13, kWait));
  ASSERT_TRUE(worker->SendEvents(job.job_id(), 11, 10));
  ASSERT_TRUE(worker->SendFinished(job.job_id(), v1::JOB_STATE_SUCCEEDED));
  auto status = watcher.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->error_message();
  const auto events = watcher.events();
  ASSERT_EQ(events.size(), 24u - 7u);
  ExpectContiguous(events, 8);
  EXPECT_EQ(events.back().state_change().to(), v1::JOB_STATE_SUCCEEDED);

  v1::Job done;
  ASSERT_TRUE(Get("alice-token", job.job_id(), &done).ok());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.last_sequence(), 24);
  EXPECT_DOUBLE_EQ(done.result().metrics().at("ppl/test/quantized"), 6.2);

  v1::GetJobMetricsRequest metrics_request;
  metrics_request.set_job_id(job.job_id());
  v1::JobMetrics metrics;
  ASSERT_TRUE(
      stub_->GetJobMetrics(testing::Context("alice-token").get(), metrics_request, &metrics).ok());
  EXPECT_EQ(metrics.loss_size(), 20);

  v1::ListJobsRequest list;
  list.add_states(v1::JOB_STATE_SUCCEEDED);
  v1::ListJobsResponse listed;
  ASSERT_TRUE(stub_->ListJobs(testing::Context("alice-token").get(), list, &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).job_id(), job.job_id());

  // A finished job's watch replays and ends.
  Watcher late(process_->address(), "alice-token", job.job_id(), 20);
  ASSERT_TRUE(late.WaitDone(kWait).has_value());
  EXPECT_EQ(late.events().size(), 4u);

  auto scraped = testing::HttpGet(process_->metrics_port(), "/metrics");
  ASSERT_TRUE(scraped.ok()) << scraped.status();
  EXPECT_THAT(*scraped, HasSubstr("quantd_jobs_submitted_total 1"));
  EXPECT_THAT(*scraped, HasSubstr("quantd_jobs_finished_total{outcome=\"succeeded\"} 1"));
  EXPECT_THAT(*scraped, HasSubstr("quantd_events_ingested_total 20"));
  EXPECT_THAT(*scraped, HasSubstr("quantd_workers_connected 1"));
  EXPECT_THAT(*scraped, HasSubstr("quantd_jobs{state=\"succeeded\"} 1"));
}

TEST_F(IntegrationTest, CancelRunningJobWaitsForTheWorker) {
  StartQuantd();
  auto worker = Worker("w1");
  v1::Job job;
  ASSERT_NO_FATAL_FAILURE(SubmitAndStart(*worker, &job));
  Watcher watcher(process_->address(), "alice-token", job.job_id(), 0);

  v1::Job cancelling;
  ASSERT_TRUE(Cancel("alice-token", job.job_id(), &cancelling).ok());
  EXPECT_EQ(cancelling.state(), v1::JOB_STATE_CANCELLING);
  auto cancellation =
      worker->Take([](const v1::SchedulerMessage& m) { return m.has_cancellation(); }, kWait);
  ASSERT_TRUE(cancellation.has_value());
  EXPECT_EQ(cancellation->cancellation().job_id(), job.job_id());
  EXPECT_EQ(cancellation->cancellation().reason(), "cancelled by alice: test");
  v1::WorkerMessage finished;  // what quantd-worker reports for a cancelled job process
  finished.mutable_finished()->set_job_id(job.job_id());
  finished.mutable_finished()->set_state(v1::JOB_STATE_CANCELLED);
  finished.mutable_finished()->mutable_failure()->set_reason(v1::FAILURE_REASON_CANCELLED);
  finished.mutable_finished()->mutable_failure()->set_message("cancelled");
  ASSERT_TRUE(worker->Send(finished));
  ASSERT_TRUE(watcher.WaitDone(kWait).has_value());
  v1::Job cancelled;
  ASSERT_TRUE(Get("alice-token", job.job_id(), &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(cancelled.failure().reason(), v1::FAILURE_REASON_CANCELLED);
  // Who cancelled it and why, as for a queued job (the worker reports a bare "cancelled").
  EXPECT_EQ(cancelled.failure().message(), "cancelled by alice: test");
  EXPECT_EQ(watcher.events().back().state_change().to(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(watcher.events().back().state_change().failure().message(), "cancelled by alice: test");
  ExpectContiguous(watcher.events(), 1);

  // A queued job (no free worker) is cancelled at once.
  v1::Job queued;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &queued).ok());
  ASSERT_TRUE(worker->TakeAssignment(kWait).has_value());
  v1::Job waiting;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &waiting).ok());
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(waiting.pending_reason(), "all workers busy");
  v1::Job result;
  ASSERT_TRUE(Cancel("alice-token", waiting.job_id(), &result).ok());
  EXPECT_EQ(result.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(result.failure().message(), "cancelled by alice: test");
}

TEST_F(IntegrationTest, VanishedWorkerIsLostAndSecondWorkerFinishes) {
  StartQuantd({"--heartbeat_interval=1s", "--worker_lost_after=2s"});
  auto first = Worker("w1");
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  ASSERT_TRUE(first->TakeAssignment(kWait).has_value());
  ASSERT_TRUE(first->SendEvents(job.job_id(), 1, 5));
  ASSERT_TRUE(first->WaitAck(job.job_id(), 5, kWait));
  Watcher watcher(process_->address(), "alice-token", job.job_id(), 0);
  first->Vanish();

  auto second = Worker("w2");
  // The second worker heartbeats (as real workers do) while the first one is being lost.
  std::optional<v1::Assignment> assignment;
  const absl::Time deadline = absl::Now() + kWait;
  while (!assignment.has_value() && absl::Now() < deadline) {
    ASSERT_TRUE(second->SendHeartbeat());
    assignment = second->TakeAssignment(absl::Milliseconds(200));
  }
  ASSERT_TRUE(assignment.has_value()) << "job was not requeued";
  EXPECT_EQ(assignment->job().job_id(), job.job_id());
  EXPECT_EQ(assignment->job().attempt(), 1);
  ASSERT_TRUE(second->SendEvents(job.job_id(), 1, 5));
  ASSERT_TRUE(second->SendFinished(job.job_id(), v1::JOB_STATE_SUCCEEDED));
  auto status = watcher.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok());
  const auto events = watcher.events();
  ExpectContiguous(events, 1);
  bool saw_lost = false;
  for (const auto& event : events) {
    if (event.has_state_change() && event.state_change().to() == v1::JOB_STATE_QUEUED &&
        event.state_change().failure().reason() == v1::FAILURE_REASON_WORKER_LOST) {
      saw_lost = true;
    }
  }
  EXPECT_TRUE(saw_lost);
  EXPECT_EQ(events.back().state_change().to(), v1::JOB_STATE_SUCCEEDED);
}

// A worker that stops (SIGTERM) cancels its job processes and reports CANCELLED for jobs that
// nobody cancelled: the scheduler requeues them, as when a worker is lost, for another worker.
TEST_F(IntegrationTest, JobStoppedByItsWorkerIsRequeued) {
  StartQuantd();
  auto first = Worker("w1");
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  ASSERT_TRUE(first->TakeAssignment(kWait).has_value());
  ASSERT_TRUE(first->SendEvents(job.job_id(), 1, 2, nullptr, 0));
  ASSERT_TRUE(first->WaitAck(job.job_id(), 2, kWait));
  Watcher watcher(process_->address(), "alice-token", job.job_id(), 0);

  v1::WorkerMessage draining;
  draining.mutable_heartbeat()->set_draining(true);
  ASSERT_TRUE(first->Send(draining));
  v1::WorkerMessage stopped;
  stopped.mutable_finished()->set_job_id(job.job_id());
  stopped.mutable_finished()->set_attempt(0);
  stopped.mutable_finished()->set_state(v1::JOB_STATE_CANCELLED);
  stopped.mutable_finished()->mutable_failure()->set_message("the worker is shutting down");
  ASSERT_TRUE(first->Send(stopped));

  auto second = Worker("w2");
  auto assignment = second->TakeAssignment(kWait);
  ASSERT_TRUE(assignment.has_value()) << "the job was not requeued";
  EXPECT_EQ(assignment->job().job_id(), job.job_id());
  EXPECT_EQ(assignment->job().attempt(), 1);
  ASSERT_TRUE(second->SendEvents(job.job_id(), 1, 2, nullptr, 1));
  ASSERT_TRUE(second->SendFinished(job.job_id(), v1::JOB_STATE_SUCCEEDED, 1));
  auto status = watcher.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->error_message();
  const auto events = watcher.events();
  ExpectContiguous(events, 1);
  std::vector<v1::JobState> states;
  for (const auto& event : events) {
    if (!event.has_state_change()) continue;
    states.push_back(event.state_change().to());
    if (event.state_change().to() == v1::JOB_STATE_QUEUED && event.state_change().from() != 0) {
      EXPECT_EQ(event.state_change().failure().reason(), v1::FAILURE_REASON_WORKER_LOST);
      EXPECT_EQ(event.state_change().failure().message(),
                "worker w1 stopped the job: the worker is shutting down");
    }
  }
  EXPECT_THAT(states, ::testing::ElementsAre(v1::JOB_STATE_QUEUED, v1::JOB_STATE_ASSIGNED,
                                             v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED,
                                             v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_RUNNING,
                                             v1::JOB_STATE_SUCCEEDED));
  EXPECT_FALSE(first->TakeAssignment(absl::ZeroDuration()).has_value())
      << "a draining worker got the job back";
}

// A requeued job reads as queued (no phase, progress, ETA, detail or worker of the attempt
// that lost its worker; attempt and history kept), and GetJobMetrics returns the current
// attempt's loss points and metrics only.
TEST_F(IntegrationTest, RequeuedJobReadsAsQueuedAndMetricsAreTheCurrentAttempts) {
  StartQuantd();
  auto first = Worker("w1");
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  ASSERT_TRUE(first->TakeAssignment(kWait).has_value());
  // Attempt 0 on w1: a phase, progress with an ETA, 3 loss points and a metric.
  auto attempt_events = [](double loss_offset) {
    return [loss_offset](int64_t sequence, v1::JobEvent* event) {
      if (sequence == 1) {
        event->mutable_phase_change()->set_phase(v1::PHASE_FINETUNE);
        event->mutable_phase_change()->set_detail("fine-tuning block 1");
      } else if (sequence == 2) {
        event->mutable_progress()->set_fraction(0.4);
        event->mutable_progress()->set_eta_seconds(95);
        event->mutable_progress()->set_detail("fine-tuning block 1 step 23");
      } else if (sequence == 3) {
        event->mutable_metric()->set_name("ppl/fp");
        event->mutable_metric()->set_value(loss_offset + 9);
      } else {
        v1::LossPoint* loss = event->mutable_loss();
        loss->set_phase(v1::PHASE_FINETUNE);
        loss->set_block(1);
        loss->set_step(sequence - 4);
        loss->set_split("train");
        loss->set_loss(loss_offset + sequence);
      }
    };
  };
  ASSERT_TRUE(first->SendEvents(job.job_id(), 1, 6, attempt_events(0), 0));
  ASSERT_TRUE(first->WaitAck(job.job_id(), 6, kWait));
  v1::Job running;
  ASSERT_TRUE(Get("alice-token", job.job_id(), &running).ok());
  ASSERT_EQ(running.phase(), v1::PHASE_FINETUNE);
  ASSERT_EQ(running.worker_id(), "w1");

  // w1 stops the job (and takes no new ones): requeued as attempt 1, nobody to run it.
  v1::WorkerMessage draining;
  draining.mutable_heartbeat()->set_draining(true);
  ASSERT_TRUE(first->Send(draining));
  ASSERT_TRUE(first->SendFinished(job.job_id(), v1::JOB_STATE_CANCELLED, 0));
  v1::Job queued;
  const absl::Time deadline = absl::Now() + kWait;
  while (absl::Now() < deadline) {
    ASSERT_TRUE(Get("alice-token", job.job_id(), &queued).ok());
    if (queued.state() == v1::JOB_STATE_QUEUED) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(queued.attempt(), 1);
  EXPECT_EQ(queued.phase(), v1::PHASE_UNSPECIFIED);
  EXPECT_EQ(queued.progress().fraction(), 0);
  EXPECT_LT(queued.progress().eta_seconds(), 0) << "an ETA of the lost attempt";
  EXPECT_EQ(queued.progress().detail(), "");
  EXPECT_EQ(queued.worker_id(), "");
  EXPECT_EQ(queued.last_sequence(), 10);  // history kept: 4 state changes + 6 events

  // Attempt 1 on w2 reports the same (phase, block, step, split) keys with other values.
  auto second = Worker("w2");
  auto assignment = second->TakeAssignment(kWait);
  ASSERT_TRUE(assignment.has_value());
  ASSERT_EQ(assignment->job().attempt(), 1);
  ASSERT_TRUE(second->SendEvents(job.job_id(), 1, 5, attempt_events(100), 1));
  ASSERT_TRUE(second->SendFinished(job.job_id(), v1::JOB_STATE_SUCCEEDED, 1));
  Watcher watcher(process_->address(), "alice-token", job.job_id(), 0);
  ASSERT_TRUE(watcher.WaitDone(kWait).has_value());

  v1::GetJobMetricsRequest request;
  request.set_job_id(job.job_id());
  v1::JobMetrics metrics;
  ASSERT_TRUE(stub_->GetJobMetrics(testing::Context("alice-token").get(), request, &metrics).ok());
  ASSERT_EQ(metrics.loss_size(), 2) << metrics.DebugString();
  for (const v1::LossPoint& loss : metrics.loss()) EXPECT_GT(loss.loss(), 100) << "attempt 0's";
  ASSERT_EQ(metrics.metrics_size(), 1) << metrics.DebugString();
  EXPECT_EQ(metrics.metrics(0).value(), 109);
}

// Attempts: w1 runs a job as attempt 0, then comes back on a new stream without it (as a
// worker restarted or cut off would): the job is requeued and, w1 being free, assigned to it
// again as attempt 1. What w1 then says about attempt 0 must not touch attempt 1.
class StaleAttemptTest : public IntegrationTest {
 protected:
  void RunAttemptZeroThenRequeue() {
    StartQuantd();
    first_ = Worker("w1");
    ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job_).ok());
    auto assignment = first_->TakeAssignment(kWait);
    ASSERT_TRUE(assignment.has_value());
    ASSERT_EQ(assignment->job().attempt(), 0);
    ASSERT_TRUE(first_->SendEvents(job_.job_id(), 1, 3, nullptr, 0));
    ASSERT_TRUE(first_->WaitAck(job_.job_id(), 3, kWait));
    second_ = Worker("w1");
    auto again = second_->TakeAssignment(kWait);
    ASSERT_TRUE(again.has_value());
    ASSERT_EQ(again->job().job_id(), job_.job_id());
    ASSERT_EQ(again->job().attempt(), 1);
  }
  v1::Job Current() {
    v1::Job job;
    EXPECT_TRUE(Get("alice-token", job_.job_id(), &job).ok());
    return job;
  }
  std::string Scrape() {
    auto text = testing::HttpGet(process_->metrics_port(), "/metrics");
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : "";
  }
  static std::string Stale(const std::string& kind, int count) {
    return "quantd_stale_worker_messages_total{kind=\"" + kind + "\"} " + std::to_string(count);
  }

  v1::Job job_;
  std::unique_ptr<FakeWorker> first_;
  std::unique_ptr<FakeWorker> second_;
};

TEST_F(StaleAttemptTest, StaleFinishDoesNotEndTheNewAttempt) {
  ASSERT_NO_FATAL_FAILURE(RunAttemptZeroThenRequeue());
  Watcher watcher(process_->address(), "alice-token", job_.job_id(), 0);
  ASSERT_TRUE(second_->SendFinished(job_.job_id(), v1::JOB_STATE_SUCCEEDED, 0));
  // One stream's messages are handled in order: once this batch is acknowledged, the stale
  // finish before it was handled too.
  ASSERT_TRUE(second_->SendEvents(job_.job_id(), 1, 2, nullptr, 1));
  ASSERT_TRUE(second_->WaitAck(job_.job_id(), 2, kWait)) << "the job was ended by the stale finish";
  v1::Job running = Current();
  EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.attempt(), 1);
  EXPECT_THAT(Scrape(), HasSubstr(Stale("finished", 1)));

  ASSERT_TRUE(second_->SendFinished(job_.job_id(), v1::JOB_STATE_SUCCEEDED, 1));
  auto status = watcher.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->error_message();
  const auto events = watcher.events();
  ExpectContiguous(events, 1);
  int terminal = 0;
  for (const auto& event : events) {
    terminal += event.has_state_change() && IsTerminal(event.state_change().to());
  }
  EXPECT_EQ(terminal, 1);
  EXPECT_EQ(events.back().state_change().to(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(StaleAttemptTest, StaleEventsAreAcknowledgedButNotStored) {
  ASSERT_NO_FATAL_FAILURE(RunAttemptZeroThenRequeue());
  const v1::Job before = Current();
  ASSERT_EQ(before.state(), v1::JOB_STATE_ASSIGNED);
  ASSERT_TRUE(second_->SendEvents(job_.job_id(), 4, 5, nullptr, 0));
  auto ack = second_->Take([](const v1::SchedulerMessage& m) { return m.has_ack(); }, kWait);
  ASSERT_TRUE(ack.has_value()) << "stale events must be acknowledged, or the worker resends them";
  EXPECT_EQ(ack->ack().worker_sequence(), 8);
  ASSERT_TRUE(ack->ack().has_attempt());
  EXPECT_EQ(ack->ack().attempt(), 0);
  const v1::Job after = Current();
  EXPECT_EQ(after.last_sequence(), before.last_sequence());
  EXPECT_EQ(after.state(), v1::JOB_STATE_ASSIGNED);
  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr(Stale("events", 1)));
  EXPECT_THAT(text, HasSubstr("quantd_events_ingested_total 3"));
}

TEST_F(StaleAttemptTest, HelloWithStaleRunningJobGetsItInStopJobs) {
  ASSERT_NO_FATAL_FAILURE(RunAttemptZeroThenRequeue());
  // w1 reconnects once more and names attempt 0, although the scheduler gave it attempt 1.
  FakeWorker third(process_->address(), "worker-token", "w1");
  v1::RunningJob running;
  running.set_job_id(job_.job_id());
  running.set_acked_sequence(3);
  running.set_attempt(0);
  third.Connect({running});
  auto welcome = third.Take([](const v1::SchedulerMessage& m) { return m.has_welcome(); }, kWait);
  ASSERT_TRUE(welcome.has_value());
  EXPECT_EQ(welcome->welcome().reattached_size(), 0);
  ASSERT_EQ(welcome->welcome().stop_jobs_size(), 1);
  EXPECT_EQ(welcome->welcome().stop_jobs(0), job_.job_id());
  // It did not name attempt 1 either, so that one is requeued and comes back as attempt 2.
  auto assignment = third.TakeAssignment(kWait);
  ASSERT_TRUE(assignment.has_value());
  EXPECT_EQ(assignment->job().attempt(), 2);
  EXPECT_THAT(Scrape(), HasSubstr(Stale("hello", 1)));
}

TEST_F(StaleAttemptTest, MessagesWithoutAttemptWorkAsBefore) {
  ASSERT_NO_FATAL_FAILURE(RunAttemptZeroThenRequeue());
  Watcher watcher(process_->address(), "alice-token", job_.job_id(), 0);
  ASSERT_TRUE(second_->SendEvents(job_.job_id(), 1, 2));
  ASSERT_TRUE(second_->WaitAck(job_.job_id(), 2, kWait));
  EXPECT_EQ(Current().state(), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(second_->SendFinished(job_.job_id(), v1::JOB_STATE_SUCCEEDED));
  auto status = watcher.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(watcher.events().back().state_change().to(), v1::JOB_STATE_SUCCEEDED);
  const std::string text = Scrape();
  for (const char* kind : {"events", "finished", "rejected", "hello"}) {
    EXPECT_THAT(text, HasSubstr(Stale(kind, 0)));
  }
  EXPECT_THAT(text, HasSubstr("quantd_events_ingested_total 5"));
}

TEST_F(IntegrationTest, SigkillAndRestartKeepJobEventsAndWatchersResume) {
  StartQuantd({"--store_sync=full"});
  v1::Job job;
  std::vector<v1::JobEvent> seen;
  {
    auto worker = Worker("w1");
    ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job, "req-kill").ok());
    ASSERT_TRUE(worker->TakeAssignment(kWait).has_value());
    ASSERT_TRUE(worker->SendEvents(job.job_id(), 1, 50));
    ASSERT_TRUE(worker->WaitAck(job.job_id(), 50, kWait));
    Watcher watcher(process_->address(), "alice-token", job.job_id(), 0);
    ASSERT_TRUE(watcher.WaitForSequence(53, kWait));
    process_->Kill();
    ASSERT_TRUE(watcher.WaitDone(kWait).has_value());
    seen = watcher.events();
    ASSERT_GE(seen.size(), 53u);
    ExpectContiguous(seen, 1);
  }
  StartQuantd({"--store_sync=full"});
  v1::Job recovered;
  ASSERT_TRUE(Get("alice-token", job.job_id(), &recovered).ok());
  EXPECT_EQ(recovered.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(recovered.last_sequence(), 53);
  EXPECT_EQ(recovered.spec().model().path(), "/models/tiny-llama");
  // The idempotency key survived too.
  v1::Job again;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &again, "req-kill").ok());
  EXPECT_EQ(again.job_id(), job.job_id());

  Watcher resumed(process_->address(), "alice-token", job.job_id(), seen.back().sequence());
  FakeWorker worker(process_->address(), "worker-token", "w1");
  v1::RunningJob running;
  running.set_job_id(job.job_id());
  running.set_acked_sequence(50);
  worker.Connect({running});
  auto welcome = worker.Take([](const v1::SchedulerMessage& m) { return m.has_welcome(); }, kWait);
  ASSERT_TRUE(welcome.has_value());
  ASSERT_EQ(welcome->welcome().reattached_size(), 1);
  EXPECT_EQ(welcome->welcome().reattached(0).acked_sequence(), 50);
  // Resending 48..60: only 51..60 are new.
  ASSERT_TRUE(worker.SendEvents(job.job_id(), 48, 13));
  ASSERT_TRUE(worker.SendFinished(job.job_id(), v1::JOB_STATE_SUCCEEDED));
  auto status = resumed.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->error_message();
  std::vector<v1::JobEvent> all = seen;
  for (const auto& event : resumed.events()) all.push_back(event);
  ExpectContiguous(all, 1);
  EXPECT_EQ(all.size(), 53u + 10u + 1u);
  EXPECT_EQ(all.back().state_change().to(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(IntegrationTest, SlowWatcherIsEndedWithResourceExhaustedAndResumes) {
  StartQuantd({"--watch_buffer=16"});
  auto worker = Worker("w1");
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  ASSERT_TRUE(worker->TakeAssignment(kWait).has_value());
  ASSERT_TRUE(worker->SendEvents(job.job_id(), 1, 1));
  ASSERT_TRUE(worker->WaitAck(job.job_id(), 1, kWait));
  Watcher slow(process_->address(), "alice-token", job.job_id(), 0);
  ASSERT_TRUE(slow.WaitForSequence(4, kWait));
  slow.Pause();
  // ~4 MiB of log lines: far more than the transport's windows plus 16 buffered events.
  const std::string line(2000, 'x');
  constexpr int kEvents = 2000;
  for (int first = 2; first < 2 + kEvents; first += 100) {
    ASSERT_TRUE(worker->SendEvents(job.job_id(), first, 100, [&](int64_t, v1::JobEvent* event) {
      event->mutable_log()->set_message(line);
    }));
  }
  ASSERT_TRUE(worker->WaitAck(job.job_id(), 1 + kEvents, kWait));
  slow.Resume();
  auto status = slow.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status->error_message();
  const int64_t last = slow.last_sequence();
  EXPECT_LT(last, 4 + kEvents);
  ExpectContiguous(slow.events(), 1);

  Watcher resumed(process_->address(), "alice-token", job.job_id(), last);
  ASSERT_TRUE(worker->SendFinished(job.job_id(), v1::JOB_STATE_SUCCEEDED));
  auto end = resumed.WaitDone(kWait);
  ASSERT_TRUE(end.has_value());
  EXPECT_TRUE(end->ok()) << end->error_message();
  ExpectContiguous(resumed.events(), last + 1);
  EXPECT_EQ(resumed.events().back().state_change().to(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(IntegrationTest, BurstOfUnacknowledgedBatchesIsStoredCompletely) {
  StartQuantd();
  auto worker = Worker("w1");
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  ASSERT_TRUE(worker->TakeAssignment(kWait).has_value());
  // Far more batches than quantd keeps uncommitted per stream before it stops reading.
  constexpr int kBatches = 400;
  constexpr int kPerBatch = 10;
  for (int b = 0; b < kBatches; ++b) {
    ASSERT_TRUE(worker->SendEvents(job.job_id(), 1 + b * kPerBatch, kPerBatch));
  }
  ASSERT_TRUE(worker->WaitAck(job.job_id(), kBatches * kPerBatch, kWait));
  v1::Job stored;
  ASSERT_TRUE(Get("alice-token", job.job_id(), &stored).ok());
  EXPECT_EQ(stored.last_sequence(), 3 + kBatches * kPerBatch);
}

TEST_F(IntegrationTest, AuthenticationAndOwnership) {
  StartQuantd();
  v1::Job job;
  EXPECT_EQ(Submit("", testing::MinimalSpec(), &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Submit("wrong-token", testing::MinimalSpec(), &job).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A known token without the permission is PERMISSION_DENIED, and the message says why.
  grpc::Status worker_as_user = Submit("worker-token", testing::MinimalSpec(), &job);
  EXPECT_EQ(worker_as_user.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(worker_as_user.error_message(), "a worker token cannot call QuantizeService");
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());

  v1::Job seen;
  EXPECT_EQ(Get("bob-token", job.job_id(), &seen).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Cancel("bob-token", job.job_id(), &seen).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  Watcher denied(process_->address(), "bob-token", job.job_id(), 0);
  auto status = denied.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Get("alice-token", "j-999999", &seen).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Get("root-token", job.job_id(), &seen).ok());

  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_TRUE(stub_->ListJobs(testing::Context("bob-token").get(), list, &listed).ok());
  EXPECT_EQ(listed.jobs_size(), 0);
  list.set_owner("alice");
  EXPECT_EQ(stub_->ListJobs(testing::Context("bob-token").get(), list, &listed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Workers need a worker token: a user's is known but not allowed, an unknown one is unknown.
  FakeWorker intruder(process_->address(), "alice-token", "w-bad");
  intruder.Connect();
  grpc::Status user_as_worker = intruder.Finish(kWait);
  EXPECT_EQ(user_as_worker.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(user_as_worker.error_message(), "WorkerService needs a worker token");
  FakeWorker stranger(process_->address(), "wrong-token", "w-bad");
  stranger.Connect();
  EXPECT_EQ(stranger.Finish(kWait).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// A 15 MB spec, a 100 kB job id (whose NOT_FOUND echo broke gRPC's metadata limit) and
// unknown states are INVALID_ARGUMENT, over real gRPC.
TEST_F(IntegrationTest, OversizedAndUnknownArgumentsAreInvalid) {
  StartQuantd();
  v1::JobSpec big = testing::MinimalSpec();
  for (int i = 0; i < 100000; ++i) {
    (*big.mutable_labels())["label-" + std::to_string(i)] = "value";
  }
  v1::Job job;
  grpc::Status status = Submit("alice-token", big, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("the limit is 16384"));

  const std::string long_id(100000, 'j');
  v1::Job seen;
  status = Get("alice-token", long_id, &seen);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("job_id"));
  EXPECT_EQ(Cancel("alice-token", long_id, &seen).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Watcher watcher(process_->address(), "alice-token", long_id, 0);
  auto watched = watcher.WaitDone(kWait);
  ASSERT_TRUE(watched.has_value());
  EXPECT_EQ(watched->error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GetJobMetricsRequest metrics_request;
  metrics_request.set_job_id(long_id);
  v1::JobMetrics metrics;
  EXPECT_EQ(stub_->GetJobMetrics(testing::Context("alice-token").get(), metrics_request, &metrics)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  cancel.set_reason(std::string(2000, 'r'));
  EXPECT_EQ(stub_->CancelJob(testing::Context("alice-token").get(), cancel, &seen).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::ListJobsRequest list;
  list.add_states(static_cast<v1::JobState>(99));
  v1::ListJobsResponse listed;
  status = stub_->ListJobs(testing::Context("alice-token").get(), list, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("99"));
}

// A worker sequence near INT64_MAX overflowed quantd's counter, after which every batch of
// the job was acknowledged and silently dropped. Now the stream is ended with the reason.
TEST_F(IntegrationTest, AbsurdWorkerSequenceEndsTheStream) {
  StartQuantd();
  auto worker = Worker("w1");
  v1::Job job;
  SubmitAndStart(*worker, &job);
  auto log_line = [](int64_t, v1::JobEvent* event) { event->mutable_log()->set_message("x"); };
  ASSERT_TRUE(worker->SendEvents(job.job_id(), INT64_MAX - 1, 1, log_line));
  grpc::Status status = worker->Finish(kWait);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("first_worker_sequence"));
  // The job's events are the ones before, and the worker's resend goes on from there.
  auto again = std::make_unique<FakeWorker>(process_->address(), "worker-token", "w1");
  v1::RunningJob running;
  running.set_job_id(job.job_id());
  running.set_acked_sequence(2);
  again->Connect({running});
  ASSERT_TRUE(again->SendEvents(job.job_id(), 3, 2));
  EXPECT_TRUE(again->WaitAck(job.job_id(), 4, kWait));
}

// Two half-open HTTP requests used to hold both of civetweb's threads for its 30 s timeout.
TEST_F(IntegrationTest, HalfOpenMetricsRequestsDoNotBlockScrapes) {
  StartQuantd();
  std::vector<int> half_open;
  for (int i = 0; i < 3; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(process_->metrics_port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    const std::string partial = "GET /metrics HTTP/1.1\r\n";  // no blank line: never ends
    ASSERT_EQ(write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
    half_open.push_back(fd);
  }
  const absl::Time start = absl::Now();
  auto scraped = testing::HttpGet(process_->metrics_port(), "/metrics");  // 5 s read timeout
  const absl::Duration took = absl::Now() - start;
  for (int fd : half_open) close(fd);
  ASSERT_TRUE(scraped.ok()) << scraped.status() << " after " << took;
  EXPECT_THAT(*scraped, HasSubstr("quantd_workers_connected"));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST_F(IntegrationTest, BadRequestsGetTheRightCodes) {
  StartQuantd();
  v1::JobSpec spec = testing::MinimalSpec();
  spec.mutable_quant()->set_wbits(9);
  v1::Job job;
  grpc::Status status = Submit("alice-token", spec, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("quant.wbits"));
  spec = testing::MinimalSpec();
  spec.mutable_model()->clear_path();
  status = Submit("alice-token", spec, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("model.path"));

  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job, "req-1").ok());
  v1::JobSpec other = testing::MinimalSpec();
  other.set_priority(4);
  EXPECT_EQ(Submit("alice-token", other, nullptr, "req-1").error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  v1::ListJobsRequest list;
  list.set_page_token("not-a-token");
  v1::ListJobsResponse listed;
  EXPECT_EQ(stub_->ListJobs(testing::Context("alice-token").get(), list, &listed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  Watcher negative(process_->address(), "alice-token", job.job_id(), -1);
  auto watch_status = negative.WaitDone(kWait);
  ASSERT_TRUE(watch_status.has_value());
  EXPECT_EQ(watch_status->error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // A Hello without a worker id is refused.
  FakeWorker rude(process_->address(), "worker-token", "");
  rude.Connect();
  EXPECT_EQ(rude.Finish(kWait).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(IntegrationTest, ServesTlsWhenGivenACertificate) {
  const std::string make_cert =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost -keyout '" +
      dir_ + "/key.pem' -out '" + dir_ + "/cert.pem' >/dev/null 2>&1";
  if (std::system(make_cert.c_str()) != 0) GTEST_SKIP() << "openssl cannot make a certificate";
  StartQuantd({"--tls_cert=" + dir_ + "/cert.pem", "--tls_key=" + dir_ + "/key.pem"});
  std::ifstream cert_file(dir_ + "/cert.pem");
  std::stringstream cert;
  cert << cert_file.rdbuf();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = cert.str();
  auto secure = v1::QuantizeService::NewStub(grpc::CreateChannel(
      "localhost:" + std::to_string(process_->port()), grpc::SslCredentials(ssl)));
  v1::SubmitJobRequest request;
  *request.mutable_spec() = testing::MinimalSpec();
  v1::SubmitJobResponse response;
  grpc::Status status =
      secure->SubmitJob(testing::Context("alice-token").get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  // A plaintext client cannot talk to it.
  v1::Job job;
  EXPECT_FALSE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
}

// `quantd --help` lists quantd's own flags (it printed "No flags matched").
TEST_F(IntegrationTest, HelpListsTheFlags) {
  const std::string command =
      "'" + testing::QuantdBinary() + "' --help >'" + dir_ + "/help.out' 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);  // absl's exit code after usage
  const std::string help = ReadLog("help.out");
  EXPECT_EQ(help.find("No flags matched"), std::string::npos) << help;
  for (const char* flag : {"--listen", "--db", "--tokens_file", "--reattach_grace",
                           "--max_requeues", "--log_format"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag << " missing from:\n" << help;
  }
}

TEST_F(IntegrationTest, SigtermShutsDownCleanly) {
  StartQuantd();
  auto health = testing::HealthStatus(process_->address(), "");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 1) << "SERVING";
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  Watcher watcher(process_->address(), "alice-token", job.job_id(), 0);
  ASSERT_TRUE(watcher.WaitForSequence(1, kWait));
  EXPECT_EQ(process_->Terminate(kWait), 0);
  EXPECT_TRUE(watcher.WaitDone(kWait).has_value());
}

// gRPC servers set SO_REUSEPORT by default: a second quantd on the same address would share
// it, and clients would reach either one at random. It must refuse to start instead.
TEST_F(IntegrationTest, SecondQuantdOnTheSameAddressesFailsToStart) {
  StartQuantd();
  const std::string listen = "--listen=" + process_->address();
  EXPECT_EQ(RunOtherQuantd({"--db=" + dir_ + "/other.db", listen, "--metrics_listen=127.0.0.1:0"},
                           "grpc.log"),
            2);
  EXPECT_THAT(ReadLog("grpc.log"), HasSubstr("cannot listen on " + process_->address()));
  EXPECT_EQ(
      RunOtherQuantd({"--db=" + dir_ + "/other.db", "--listen=127.0.0.1:0",
                      "--metrics_listen=127.0.0.1:" + std::to_string(process_->metrics_port())},
                     "metrics.log"),
      2);
  EXPECT_THAT(ReadLog("metrics.log"), HasSubstr("metrics: cannot listen on"));
  // The first one still answers every call.
  v1::Job job;
  EXPECT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
}

// A second quantd on the same --db would start, then abort on its first write: it must refuse
// to start, naming the file.
TEST_F(IntegrationTest, SecondQuantdOnTheSameDatabaseFailsToStart) {
  StartQuantd();
  v1::Job job;
  ASSERT_TRUE(Submit("alice-token", testing::MinimalSpec(), &job).ok());
  EXPECT_EQ(RunOtherQuantd({"--db=" + dir_ + "/quantd.db", "--listen=127.0.0.1:0",
                            "--metrics_listen=127.0.0.1:0"},
                           "db.log"),
            2);
  EXPECT_THAT(ReadLog("db.log"), HasSubstr(dir_ + "/quantd.db is in use by another quantd"));
  // The first one goes on as if nothing happened.
  v1::Job second;
  EXPECT_TRUE(Submit("alice-token", testing::MinimalSpec(), &second).ok());
  EXPECT_EQ(second.job_id(), "j-000002");
}

// A watch that asks for events after a sequence the job has not reached would skip that job's
// terminal event and never end: it is refused. Up to the last event it works (and ends).
TEST_F(IntegrationTest, WatchAfterTheLastEventIsOutOfRange) {
  StartQuantd();
  auto worker = Worker("w1");
  v1::Job job;
  ASSERT_NO_FATAL_FAILURE(SubmitAndStart(*worker, &job));  // QUEUED, ASSIGNED, RUNNING + 2: 5

  Watcher beyond(process_->address(), "alice-token", job.job_id(), 6);
  auto status = beyond.WaitDone(kWait);
  ASSERT_TRUE(status.has_value()) << "the watch beyond the last event did not end";
  EXPECT_EQ(status->error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(status->error_message(), HasSubstr("after_sequence 6"));
  EXPECT_THAT(status->error_message(), HasSubstr("last event is #5"));

  Watcher at_last(process_->address(), "alice-token", job.job_id(), 5);
  ASSERT_TRUE(worker->SendFinished(job.job_id(), v1::JOB_STATE_SUCCEEDED));
  status = at_last.WaitDone(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->ok()) << status->error_message();
  ASSERT_EQ(at_last.events().size(), 1u);
  EXPECT_EQ(at_last.events()[0].state_change().to(), v1::JOB_STATE_SUCCEEDED);

  Watcher after_end(process_->address(), "alice-token", job.job_id(), 7);
  status = after_end.WaitDone(kWait);
  ASSERT_TRUE(status.has_value()) << "the watch beyond the end did not end";
  EXPECT_EQ(status->error_code(), grpc::StatusCode::OUT_OF_RANGE);
}

}  // namespace
}  // namespace quantd
