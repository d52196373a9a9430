// Drives the scheduler core with a fake clock, an in-memory store and recording workers.
#include "server/core/scheduler.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/job_state.h"
#include "server/core/limits.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tests/server/fakes.h"

namespace quantd {
namespace {

using testing::FakeClock;
using ::testing::HasSubstr;
using testing::MemoryStore;
using testing::RecordingLink;

constexpr int64_t kGiB = 1024LL * 1024 * 1024;

v1::JobSpec ValidSpec(int priority = 0) {
  v1::JobSpec spec;
  spec.mutable_model()->set_path("/models/tiny");
  spec.mutable_calibration()->set_dataset_path("/data/text.txt");
  spec.set_priority(priority);
  return spec;
}

// Counts the stale worker messages the scheduler dropped, by kind, and the requeues, by cause.
class StaleCounter : public SchedulerObserver {
 public:
  void OnStaleWorkerMessage(WorkerMessageKind kind) override {
    absl::MutexLock lock(&mu_);
    ++counts_[kind];
  }
  void OnRequeued(bool stopped_by_worker) override {
    absl::MutexLock lock(&mu_);
    ++(stopped_by_worker ? requeued_stopped : requeued_lost);
  }
  int requeued_lost = 0;
  int requeued_stopped = 0;
  int count(WorkerMessageKind kind) const {
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(kind);
    return it == counts_.end() ? 0 : it->second;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<WorkerMessageKind, int> counts_;
};

// Collects what spdlog's default logger writes while it lives.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(text_));
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream text_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() { Make(); }

  void Make(SchedulerOptions options = {}) {
    options.heartbeat_interval = absl::Seconds(1);
    options.worker_lost_after = absl::Seconds(3);
    options.reattach_grace = absl::Seconds(10);
    if (options.max_requeues == 0) options.max_requeues = 3;
    scheduler_ = std::make_unique<Scheduler>(options, &clock_, &store_, &bus_, &stale_);
    ASSERT_TRUE(scheduler_->Recover().ok());
  }

  absl::StatusOr<SubmitResult> Submit(const std::string& owner, v1::JobSpec spec,
                                      const std::string& request_id = "") {
    absl::StatusOr<SubmitResult> out = absl::UnknownError("callback not called");
    scheduler_->Submit(Caller{owner, false}, std::move(spec), request_id,
                       [&](absl::StatusOr<SubmitResult> r) { out = std::move(r); });
    return out;
  }
  std::string SubmitOk(const std::string& owner, v1::JobSpec spec = ValidSpec()) {
    auto result = Submit(owner, std::move(spec));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->job.job_id() : "";
  }
  absl::StatusOr<v1::Job> Cancel(const std::string& owner, const std::string& job_id) {
    absl::StatusOr<v1::Job> out = absl::UnknownError("callback not called");
    scheduler_->CancelJob(Caller{owner, false}, job_id, "test",
                          [&](absl::StatusOr<v1::Job> r) { out = std::move(r); });
    return out;
  }
  v1::Job Get(const std::string& job_id) {
    auto job = scheduler_->GetJob(Caller{"admin", true}, job_id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::Job();
  }
  RecordingLink* Connect(const std::string& worker_id, int devices = 1, int64_t gib = 80,
                         int max_jobs = 1, std::vector<v1::RunningJob> running = {}) {
    v1::Hello hello;
    hello.set_worker_id(worker_id);
    hello.set_max_jobs(max_jobs);
    for (int i = 0; i < devices; ++i) {
      v1::Device* device = hello.add_devices();
      device->set_id("cuda:" + std::to_string(i));
      device->set_total_memory_bytes(gib * kGiB);
      device->set_free_memory_bytes(gib * kGiB);
    }
    for (const auto& job : running) *hello.add_running_jobs() = job;
    auto link = std::make_unique<RecordingLink>();
    RecordingLink* raw = link.get();
    links_.push_back(std::move(link));
    EXPECT_TRUE(scheduler_->ConnectWorker(hello, raw).ok());
    return raw;
  }
  absl::StatusOr<int64_t> Events(const std::string& worker, RecordingLink* link,
                                 const std::string& job_id, int count, int64_t first,
                                 std::optional<int32_t> attempt = std::nullopt) {
    v1::JobEvents events;
    events.set_job_id(job_id);
    events.set_first_worker_sequence(first);
    if (attempt.has_value()) events.set_attempt(*attempt);
    for (int i = 0; i < count; ++i) {
      v1::LossPoint* loss = events.add_events()->mutable_loss();
      loss->set_step(i);  // not first + i: tests send sequences near INT64_MAX
      loss->set_loss(1.0 / (i + 1));
    }
    absl::StatusOr<int64_t> out = absl::UnknownError("callback not called");
    scheduler_->IngestEvents(worker, link, events,
                             [&](absl::StatusOr<int64_t> r) { out = std::move(r); });
    return out;
  }
  absl::Status Finish(const std::string& worker, RecordingLink* link, const std::string& job_id,
                      v1::JobState state, std::optional<int32_t> attempt = std::nullopt) {
    v1::JobFinished finished;
    finished.set_job_id(job_id);
    finished.set_state(state);
    if (attempt.has_value()) finished.set_attempt(*attempt);
    return scheduler_->FinishJob(worker, link, finished);
  }
  std::vector<v1::JobState> States(const std::string& job_id) {
    std::vector<v1::JobState> states;
    for (const auto& event : store_.AllEvents(job_id)) {
      if (event.has_state_change()) states.push_back(event.state_change().to());
    }
    return states;
  }
  void ExpectContiguous(const std::string& job_id) {
    auto events = store_.AllEvents(job_id);
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
    }
    EXPECT_EQ(Get(job_id).last_sequence(), static_cast<int64_t>(events.size()));
  }

  // Runs `job` on w1 as attempt 0, then lets w1 reconnect without it: the job is requeued
  // and, w1 being free, assigned to it again as attempt 1 on the returned link.
  RecordingLink* RequeueOntoTheSameWorker(const std::string& job) {
    RecordingLink* first = Connect("w1");
    EXPECT_EQ(first->Assignments().size(), 1u);
    EXPECT_TRUE(Events("w1", first, job, 2, 1, 0).ok());
    RecordingLink* second = Connect("w1");
    EXPECT_EQ(second->Assignments().size(), 1u);
    EXPECT_EQ(Get(job).attempt(), 1);
    EXPECT_EQ(Get(job).state(), v1::JOB_STATE_ASSIGNED);
    EXPECT_EQ(Get(job).worker_id(), "w1");
    return second;
  }

  FakeClock clock_;
  StaleCounter stale_;
  MemoryStore store_;
  EventBus bus_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::unique_ptr<RecordingLink>> links_;
};

TEST_F(SchedulerTest, SubmitAppliesDefaultsQueuesAndRecordsEvent) {
  auto result = Submit("alice", ValidSpec());
  ASSERT_TRUE(result.ok()) << result.status();
  const v1::Job& job = result->job;
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.owner(), "alice");
  EXPECT_EQ(job.spec().quant().wbits(), 16);
  EXPECT_EQ(job.spec().calibration().train_size(), 512);
  EXPECT_EQ(job.queue_position(), 0);
  EXPECT_EQ(job.pending_reason(), "no worker connected");
  auto events = store_.AllEvents(job.job_id());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].sequence(), 1);
  EXPECT_EQ(events[0].state_change().from(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(events[0].state_change().to(), v1::JOB_STATE_QUEUED);
}

TEST_F(SchedulerTest, InvalidSpecNamesTheField) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_quant()->set_wbits(9);
  auto result = Submit("alice", spec);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("quant.wbits"));
  spec = ValidSpec();
  spec.mutable_model()->clear_path();
  EXPECT_THAT(std::string(Submit("alice", spec).status().message()), HasSubstr("model.path"));
  EXPECT_EQ(Submit("alice", ValidSpec(), std::string(129, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, SubmitIsIdempotentOnRequestId) {
  auto first = Submit("alice", ValidSpec(), "req-1");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->deduplicated);
  auto again = Submit("alice", ValidSpec(), "req-1");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->deduplicated);
  EXPECT_EQ(again->job.job_id(), first->job.job_id());
  auto other = Submit("alice", ValidSpec(/*priority=*/3), "req-1");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("request_id"));
  auto other_owner = Submit("bob", ValidSpec(), "req-1");
  ASSERT_TRUE(other_owner.ok());
  EXPECT_NE(other_owner->job.job_id(), first->job.job_id());
}

TEST_F(SchedulerTest, PriorityThenFifo) {
  const std::string low1 = SubmitOk("alice", ValidSpec(0));
  const std::string high = SubmitOk("alice", ValidSpec(5));
  const std::string low2 = SubmitOk("alice", ValidSpec(0));
  EXPECT_EQ(Get(high).queue_position(), 0);
  EXPECT_EQ(Get(low1).queue_position(), 1);
  EXPECT_EQ(Get(low2).queue_position(), 2);

  RecordingLink* link = Connect("w1");
  ASSERT_EQ(link->Assignments().size(), 1u);
  EXPECT_EQ(link->Assignments()[0].job().job_id(), high);
  EXPECT_EQ(Get(high).state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(Get(low1).pending_reason(), "all workers busy");
  EXPECT_EQ(Get(low1).queue_position(), 0);

  ASSERT_TRUE(Finish("w1", link, high, v1::JOB_STATE_SUCCEEDED).ok());
  ASSERT_EQ(link->Assignments().size(), 2u);
  EXPECT_EQ(link->Assignments()[1].job().job_id(), low1);
}

TEST_F(SchedulerTest, PerOwnerRunningLimit) {
  SchedulerOptions options;
  options.max_running_per_owner = 1;
  Make(options);
  const std::string a1 = SubmitOk("alice");
  const std::string a2 = SubmitOk("alice");
  const std::string b1 = SubmitOk("bob");
  Connect("w1", /*devices=*/3, 80, /*max_jobs=*/3);
  EXPECT_EQ(Get(a1).state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(Get(a2).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Get(a2).pending_reason(), "owner at limit (1 running)");
  EXPECT_EQ(Get(b1).state(), v1::JOB_STATE_ASSIGNED);
}

TEST_F(SchedulerTest, PlacementByMemoryAndDeviceCount) {
  v1::JobSpec big = ValidSpec();
  big.mutable_resources()->set_min_device_memory_bytes(40 * kGiB);
  const std::string job = SubmitOk("alice", big);
  Connect("small", 1, 24);
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Get(job).pending_reason(), "no worker with a device of >= 40 GiB");
  v1::JobSpec wide = ValidSpec();
  wide.mutable_resources()->set_device_count(2);
  const std::string job2 = SubmitOk("alice", wide);
  EXPECT_EQ(Get(job2).pending_reason(), "no worker with 2 devices");

  RecordingLink* large = Connect("large", 2, 80, 2);
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(Get(job).worker_id(), "large");
  ASSERT_EQ(large->Assignments().size(), 1u);
  EXPECT_EQ(large->Assignments()[0].device_ids_size(), 1);
  // One of its two devices is taken, so the two-device job waits.
  EXPECT_EQ(Get(job2).state(), v1::JOB_STATE_QUEUED);
}

TEST_F(SchedulerTest, FullLifecycleRecordsEveryChange) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  auto ack = Events("w1", link, job, 3, 1);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(*ack, 3);
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(Get(job).has_start_time());
  ASSERT_TRUE(Finish("w1", link, job, v1::JOB_STATE_SUCCEEDED).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(States(job),
            (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_ASSIGNED,
                                       v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}));
  ExpectContiguous(job);
  // A finished job takes no more events.
  EXPECT_EQ(Events("w1", link, job, 1, 4).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerTest, ResentEventsAreDroppedByWorkerSequence) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  ASSERT_TRUE(Events("w1", link, job, 5, 1).ok());
  auto ack = Events("w1", link, job, 4, 3);  // 3..6: only 6 is new
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(*ack, 6);
  int losses = 0;
  for (const auto& event : store_.AllEvents(job)) losses += event.has_loss();
  EXPECT_EQ(losses, 6);
  ExpectContiguous(job);
}

TEST_F(SchedulerTest, EventsFromAnotherWorkerAreRefused) {
  const std::string job = SubmitOk("alice");
  Connect("w1");
  RecordingLink* other = Connect("w2");
  EXPECT_EQ(Events("w2", other, job, 1, 1).status().code(), absl::StatusCode::kFailedPrecondition);
  RecordingLink stranger;
  EXPECT_EQ(Events("w1", &stranger, job, 1, 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerTest, CancelQueuedJobIsImmediate) {
  const std::string job = SubmitOk("alice");
  auto cancelled = Cancel("alice", job);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(cancelled->failure().reason(), v1::FAILURE_REASON_CANCELLED);
  // A finished job: no-op that returns it.
  auto again = Cancel("alice", job);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(States(job).size(), 2u);
}

TEST_F(SchedulerTest, CancelAssignedAndRunningWaitsForTheWorker) {
  const std::string assigned = SubmitOk("alice");
  const std::string running = SubmitOk("alice");
  RecordingLink* link = Connect("w1", 2, 80, 2);
  ASSERT_TRUE(Events("w1", link, running, 1, 1).ok());
  ASSERT_EQ(Get(assigned).state(), v1::JOB_STATE_ASSIGNED);
  ASSERT_EQ(Get(running).state(), v1::JOB_STATE_RUNNING);
  for (const std::string& job : {assigned, running}) {
    auto result = Cancel("alice", job);
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->state(), v1::JOB_STATE_CANCELLING);
  }
  ASSERT_EQ(link->Cancellations().size(), 2u);
  // Cancelling a cancelling job changes nothing.
  EXPECT_EQ(Cancel("alice", running)->state(), v1::JOB_STATE_CANCELLING);
  ASSERT_EQ(link->Cancellations().size(), 2u);
  ASSERT_TRUE(Finish("w1", link, assigned, v1::JOB_STATE_CANCELLED).ok());
  ASSERT_TRUE(Finish("w1", link, running, v1::JOB_STATE_CANCELLED).ok());
  EXPECT_EQ(Get(assigned).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(Get(running).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(States(running).back(), v1::JOB_STATE_CANCELLED);
  ExpectContiguous(running);
}

TEST_F(SchedulerTest, CancelOfFinishedJobsIsANoOp) {
  const std::string succeeded = SubmitOk("alice");
  const std::string failed = SubmitOk("alice");
  RecordingLink* link = Connect("w1", 2, 80, 2);
  ASSERT_TRUE(Finish("w1", link, succeeded, v1::JOB_STATE_SUCCEEDED).ok());
  ASSERT_TRUE(Finish("w1", link, failed, v1::JOB_STATE_FAILED).ok());
  for (const auto& [job, state] :
       {std::pair{succeeded, v1::JOB_STATE_SUCCEEDED}, std::pair{failed, v1::JOB_STATE_FAILED}}) {
    const int64_t before = Get(job).last_sequence();
    auto result = Cancel("alice", job);
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->state(), state);
    EXPECT_EQ(Get(job).last_sequence(), before) << "no event for a no-op";
  }
  EXPECT_TRUE(link->Cancellations().empty());
}

TEST_F(SchedulerTest, OwnerLimitReleasesWhenAJobEnds) {
  SchedulerOptions options;
  options.max_running_per_owner = 1;
  Make(options);
  const std::string first = SubmitOk("alice");
  const std::string second = SubmitOk("alice");
  RecordingLink* link = Connect("w1", 2, 80, 2);
  EXPECT_EQ(Get(second).state(), v1::JOB_STATE_QUEUED);
  ASSERT_TRUE(Finish("w1", link, first, v1::JOB_STATE_SUCCEEDED).ok());
  EXPECT_EQ(Get(second).state(), v1::JOB_STATE_ASSIGNED);
}

TEST_F(SchedulerTest, CancelWhileWorkerIsAwayIsResentOnReattach) {
  const std::string job = SubmitOk("alice");
  RecordingLink* first = Connect("w1");
  ASSERT_TRUE(Events("w1", first, job, 1, 1).ok());
  scheduler_->DisconnectWorker("w1", first);
  ASSERT_EQ(Cancel("alice", job)->state(), v1::JOB_STATE_CANCELLING);
  v1::RunningJob running;
  running.set_job_id(job);
  RecordingLink* second = Connect("w1", 1, 80, 1, {running});
  ASSERT_EQ(second->Cancellations().size(), 1u);
  EXPECT_EQ(second->Cancellations()[0].job_id(), job);
  ASSERT_TRUE(Finish("w1", second, job, v1::JOB_STATE_CANCELLED).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SchedulerTest, CancelOfAnotherOwnersJobIsDenied) {
  const std::string job = SubmitOk("alice");
  EXPECT_EQ(Cancel("bob", job).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Cancel("bob", "j-999999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->GetJob(Caller{"bob", false}, job).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(scheduler_->GetJob(Caller{"root", true}, job).ok());
}

TEST_F(SchedulerTest, WorkerLostByMissedHeartbeatsRequeuesJob) {
  const std::string job = SubmitOk("alice");
  RecordingLink* first = Connect("w1");
  ASSERT_TRUE(Events("w1", first, job, 2, 1).ok());
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(scheduler_->Heartbeat("w1", first, v1::Heartbeat()).ok());
  clock_.Advance(absl::Seconds(2));
  scheduler_->Tick();
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING) << "heartbeat kept it alive";
  clock_.Advance(absl::Seconds(2));
  scheduler_->Tick();
  v1::Job requeued = Get(job);
  EXPECT_EQ(requeued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(requeued.attempt(), 1);
  EXPECT_EQ(first->closed.code(), absl::StatusCode::kDeadlineExceeded);
  const auto events = store_.AllEvents(job);
  ASSERT_TRUE(events.back().has_state_change());
  EXPECT_EQ(events.back().state_change().failure().reason(), v1::FAILURE_REASON_WORKER_LOST);

  RecordingLink* second = Connect("w2");
  ASSERT_EQ(second->Assignments().size(), 1u);
  EXPECT_EQ(second->Assignments()[0].job().attempt(), 1);
  ASSERT_TRUE(Events("w2", second, job, 2, 1).ok());
  ASSERT_TRUE(Finish("w2", second, job, v1::JOB_STATE_SUCCEEDED).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_SUCCEEDED);
  ExpectContiguous(job);
}

TEST_F(SchedulerTest, JobFailsAfterTooManyWorkerLosses) {
  SchedulerOptions options;
  options.max_requeues = 1;
  Make(options);
  const std::string job = SubmitOk("alice");
  for (int i = 0; i < 2; ++i) {
    Connect("w" + std::to_string(i));
    clock_.Advance(absl::Seconds(4));
    scheduler_->Tick();
  }
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Get(job).failure().reason(), v1::FAILURE_REASON_WORKER_LOST);
}

TEST_F(SchedulerTest, CancellingJobOnLostWorkerIsCancelled) {
  const std::string job = SubmitOk("alice");
  Connect("w1");
  ASSERT_EQ(Cancel("alice", job)->state(), v1::JOB_STATE_CANCELLING);
  clock_.Advance(absl::Seconds(4));
  scheduler_->Tick();
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(SchedulerTest, ReconnectReattachesRunningJob) {
  const std::string job = SubmitOk("alice");
  RecordingLink* first = Connect("w1");
  ASSERT_TRUE(Events("w1", first, job, 4, 1).ok());
  scheduler_->DisconnectWorker("w1", first);
  clock_.Advance(absl::Seconds(1));
  scheduler_->Tick();
  v1::RunningJob running;
  running.set_job_id(job);
  running.set_acked_sequence(3);
  RecordingLink* second = Connect("w1", 1, 80, 1, {running});
  ASSERT_TRUE(second->sent[0].has_welcome());
  const v1::Welcome& welcome = second->sent[0].welcome();
  ASSERT_EQ(welcome.reattached_size(), 1);
  EXPECT_EQ(welcome.reattached(0).acked_sequence(), 4);
  EXPECT_EQ(welcome.stop_jobs_size(), 0);
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(scheduler_->Heartbeat("w1", second, v1::Heartbeat()).ok());
  scheduler_->Tick();
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING);
  // The old stream is dead to the scheduler.
  EXPECT_EQ(Finish("w1", first, job, v1::JOB_STATE_SUCCEEDED).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Finish("w1", second, job, v1::JOB_STATE_SUCCEEDED).ok());
}

TEST_F(SchedulerTest, ReconnectWithoutTheJobRequeuesIt_UnknownJobsAreStopped) {
  const std::string job = SubmitOk("alice");
  RecordingLink* first = Connect("w1");
  scheduler_->DisconnectWorker("w1", first);
  v1::RunningJob stranger;
  stranger.set_job_id("j-424242");
  RecordingLink* second = Connect("w1", 1, 80, 1, {stranger});
  const v1::Welcome& welcome = second->sent[0].welcome();
  ASSERT_EQ(welcome.stop_jobs_size(), 1);
  EXPECT_EQ(welcome.stop_jobs(0), "j-424242");
  // The job was requeued and, the worker being free, assigned to it again.
  EXPECT_EQ(Get(job).attempt(), 1);
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_ASSIGNED);
}

TEST_F(SchedulerTest, RecoveryWaitsForReattachThenRequeues) {
  const std::string stays = SubmitOk("alice");
  const std::string lost = SubmitOk("alice");
  RecordingLink* link_a = Connect("wa");
  RecordingLink* link_b = Connect("wb");
  ASSERT_TRUE(Events("wa", link_a, stays, 2, 1).ok());
  ASSERT_TRUE(Events("wb", link_b, lost, 2, 1).ok());

  // "Restart": a new scheduler over the same store.
  Make();
  EXPECT_EQ(Get(stays).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Get(lost).state(), v1::JOB_STATE_RUNNING);
  const std::string fresh = SubmitOk("alice");
  EXPECT_NE(fresh, stays);
  EXPECT_NE(fresh, lost);
  clock_.Advance(absl::Seconds(5));
  scheduler_->Tick();
  v1::RunningJob running;
  running.set_job_id(stays);
  RecordingLink* back = Connect("wa", 1, 80, 1, {running});
  EXPECT_EQ(back->sent[0].welcome().reattached_size(), 1);
  clock_.Advance(absl::Seconds(6));
  ASSERT_TRUE(scheduler_->Heartbeat("wa", back, v1::Heartbeat()).ok());
  scheduler_->Tick();
  EXPECT_EQ(Get(stays).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Get(lost).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Get(lost).attempt(), 1);
  ExpectContiguous(stays);
  ExpectContiguous(lost);
}

TEST_F(SchedulerTest, DrainingWorkerGetsNoNewJobs) {
  RecordingLink* link = Connect("w1");
  v1::Heartbeat heartbeat;
  heartbeat.set_draining(true);
  ASSERT_TRUE(scheduler_->Heartbeat("w1", link, heartbeat).ok());
  const std::string job = SubmitOk("alice");
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_QUEUED);
  heartbeat.set_draining(false);
  ASSERT_TRUE(scheduler_->Heartbeat("w1", link, heartbeat).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_ASSIGNED);
}

TEST_F(SchedulerTest, RejectedAssignmentGoesToAnotherWorker) {
  const std::string job = SubmitOk("alice");
  RecordingLink* first = Connect("w1");
  v1::AssignmentRejected rejected;
  rejected.set_job_id(job);
  rejected.set_reason("not enough memory after all");
  ASSERT_TRUE(scheduler_->RejectAssignment("w1", first, rejected).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_QUEUED);
  RecordingLink* second = Connect("w2");
  EXPECT_EQ(second->Assignments().size(), 1u);
  EXPECT_EQ(Get(job).worker_id(), "w2");
}

TEST_F(SchedulerTest, FinishWithIllegalStateIsInvalid) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  EXPECT_EQ(Finish("w1", link, job, v1::JOB_STATE_RUNNING).code(),
            absl::StatusCode::kInvalidArgument);
  v1::JobFinished failed;
  failed.set_job_id(job);
  failed.set_state(v1::JOB_STATE_FAILED);
  failed.mutable_failure()->set_reason(v1::FAILURE_REASON_OOM);
  failed.mutable_failure()->set_message("CUDA out of memory");
  ASSERT_TRUE(scheduler_->FinishJob("w1", link, failed).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Get(job).failure().reason(), v1::FAILURE_REASON_OOM);
}

TEST_F(SchedulerTest, ListJobsNewestFirstWithPagingAndFilters) {
  std::vector<std::string> alice;
  for (int i = 0; i < 5; ++i) alice.push_back(SubmitOk("alice"));
  SubmitOk("bob");
  ASSERT_TRUE(Cancel("alice", alice[1]).ok());

  ListQuery query;
  query.page_size = 2;
  auto page1 = scheduler_->ListJobs(Caller{"alice", false}, query);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->jobs.size(), 2u);
  EXPECT_EQ(page1->jobs[0].job_id(), alice[4]);
  EXPECT_EQ(page1->jobs[1].job_id(), alice[3]);
  query.page_token = page1->next_page_token;
  auto page2 = scheduler_->ListJobs(Caller{"alice", false}, query);
  ASSERT_TRUE(page2.ok());
  EXPECT_EQ(page2->jobs[0].job_id(), alice[2]);
  query.page_token = page2->next_page_token;
  auto page3 = scheduler_->ListJobs(Caller{"alice", false}, query);
  ASSERT_TRUE(page3.ok());
  ASSERT_EQ(page3->jobs.size(), 1u);
  EXPECT_TRUE(page3->next_page_token.empty());

  ListQuery cancelled;
  cancelled.states = {v1::JOB_STATE_CANCELLED};
  auto only = scheduler_->ListJobs(Caller{"alice", false}, cancelled);
  ASSERT_EQ(only->jobs.size(), 1u);
  EXPECT_EQ(only->jobs[0].job_id(), alice[1]);

  EXPECT_EQ(scheduler_->ListJobs(Caller{"root", true}, ListQuery())->jobs.size(), 6u);
  ListQuery bobs;
  bobs.owner = "bob";
  EXPECT_EQ(scheduler_->ListJobs(Caller{"alice", false}, bobs).status().code(),
            absl::StatusCode::kPermissionDenied);
  ListQuery bad;
  bad.page_token = "garbage!";
  EXPECT_EQ(scheduler_->ListJobs(Caller{"alice", false}, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, MetricsCollectLossAndMetricEvents) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  ASSERT_TRUE(Events("w1", link, job, 3, 1).ok());
  v1::JobEvents metric;
  metric.set_job_id(job);
  metric.set_first_worker_sequence(4);
  v1::Metric* m = metric.add_events()->mutable_metric();
  m->set_name("ppl/fp");
  m->set_value(5.47);
  scheduler_->IngestEvents("w1", link, metric, [](absl::StatusOr<int64_t>) {});
  auto metrics = scheduler_->GetJobMetrics(Caller{"alice", false}, job);
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->loss_size(), 3);
  ASSERT_EQ(metrics->metrics_size(), 1);
  EXPECT_DOUBLE_EQ(metrics->metrics(0).value(), 5.47);
}

TEST_F(SchedulerTest, StatsCountStatesAndDevices) {
  SubmitOk("alice");
  SubmitOk("alice");
  Connect("w1", 2, 80, 1);
  SchedulerStats stats = scheduler_->Stats();
  EXPECT_EQ(stats.jobs_by_state[v1::JOB_STATE_QUEUED], 1);
  EXPECT_EQ(stats.jobs_by_state[v1::JOB_STATE_ASSIGNED], 1);
  EXPECT_EQ(stats.workers_connected, 1);
  EXPECT_EQ(stats.devices_total, 2);
  EXPECT_EQ(stats.devices_busy, 1);
}

TEST_F(SchedulerTest, BadHelloIsInvalid) {
  RecordingLink link;
  v1::Hello hello;
  EXPECT_EQ(scheduler_->ConnectWorker(hello, &link).code(), absl::StatusCode::kInvalidArgument);
  hello.set_worker_id("w");
  EXPECT_EQ(scheduler_->ConnectWorker(hello, &link).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, StaleFinishAfterRequeueDoesNotEndTheNewAttempt) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = RequeueOntoTheSameWorker(job);
  const size_t stored = store_.AllEvents(job).size();
  // The end of attempt 0, reported late on the worker's new stream.
  EXPECT_TRUE(Finish("w1", link, job, v1::JOB_STATE_SUCCEEDED, 0).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(store_.AllEvents(job).size(), stored);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kFinished), 1);
  ASSERT_TRUE(Events("w1", link, job, 2, 1, 1).ok());
  ASSERT_TRUE(Finish("w1", link, job, v1::JOB_STATE_SUCCEEDED, 1).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kFinished), 1);
  ExpectContiguous(job);
}

// Requeues are told apart for dashboards: a worker that was lost, or one that stopped the job
// itself (a planned shutdown), which the "workers lost" alert must not count.
TEST_F(SchedulerTest, RequeuesSayWhetherTheWorkerWasLostOrStoppedTheJob) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = RequeueOntoTheSameWorker(job);  // reconnected without it: lost
  EXPECT_EQ(stale_.requeued_lost, 1);
  EXPECT_EQ(stale_.requeued_stopped, 0);
  ASSERT_TRUE(Events("w1", link, job, 2, 1, 1).ok());
  ASSERT_TRUE(Finish("w1", link, job, v1::JOB_STATE_CANCELLED, 1).ok());  // nobody asked
  const v1::JobState state = Get(job).state();  // back in the queue, or already handed out again
  EXPECT_TRUE(state == v1::JOB_STATE_QUEUED || state == v1::JOB_STATE_ASSIGNED)
      << v1::JobState_Name(state);
  EXPECT_EQ(stale_.requeued_lost, 1);
  EXPECT_EQ(stale_.requeued_stopped, 1);
}

TEST_F(SchedulerTest, StaleEventsAreAcknowledgedButNotStored) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = RequeueOntoTheSameWorker(job);
  const size_t stored = store_.AllEvents(job).size();
  auto ack = Events("w1", link, job, 3, 3, 0);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(*ack, 5) << "the whole stale batch is acknowledged";
  EXPECT_EQ(store_.AllEvents(job).size(), stored);
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_ASSIGNED) << "stale events do not start the job";
  EXPECT_EQ(stale_.count(WorkerMessageKind::kEvents), 1);
  // The current attempt's sequences start again at 1 and are all stored.
  ack = Events("w1", link, job, 2, 1, 1);
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(*ack, 2);
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(store_.AllEvents(job).size(), stored + 3);  // RUNNING + 2 losses
  ExpectContiguous(job);
}

TEST_F(SchedulerTest, StaleRejectionDoesNotRequeue) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = RequeueOntoTheSameWorker(job);
  v1::AssignmentRejected rejected;
  rejected.set_job_id(job);
  rejected.set_reason("late");
  rejected.set_attempt(0);
  EXPECT_TRUE(scheduler_->RejectAssignment("w1", link, rejected).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kRejected), 1);
  rejected.set_attempt(1);
  ASSERT_TRUE(scheduler_->RejectAssignment("w1", link, rejected).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kRejected), 1);
}

TEST_F(SchedulerTest, HelloWithStaleRunningJobIsToldToStopIt) {
  const std::string job = SubmitOk("alice");
  RequeueOntoTheSameWorker(job);
  // w1 reconnects once more, naming attempt 0 although it holds attempt 1.
  v1::RunningJob stale;
  stale.set_job_id(job);
  stale.set_attempt(0);
  RecordingLink* third = Connect("w1", 1, 80, 1, {stale});
  const v1::Welcome& welcome = third->sent[0].welcome();
  EXPECT_EQ(welcome.reattached_size(), 0);
  ASSERT_EQ(welcome.stop_jobs_size(), 1);
  EXPECT_EQ(welcome.stop_jobs(0), job);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kHello), 1);
  // It did not claim attempt 1, so that was requeued (and assigned to it again).
  EXPECT_EQ(Get(job).attempt(), 2);
  ASSERT_EQ(third->Assignments().size(), 1u);
  EXPECT_EQ(third->Assignments()[0].job().attempt(), 2);
  // The current attempt is re-attached, and the Welcome names it.
  v1::RunningJob current;
  current.set_job_id(job);
  current.set_attempt(2);
  RecordingLink* fourth = Connect("w1", 1, 80, 1, {current});
  ASSERT_EQ(fourth->sent[0].welcome().reattached_size(), 1);
  EXPECT_EQ(fourth->sent[0].welcome().reattached(0).attempt(), 2);
  EXPECT_EQ(fourth->sent[0].welcome().stop_jobs_size(), 0);
  EXPECT_EQ(Get(job).attempt(), 2);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kHello), 1);
}

TEST_F(SchedulerTest, MessagesOfAnEndedAttemptAreStaleToo) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  ASSERT_TRUE(Events("w1", link, job, 1, 1, 0).ok());
  ASSERT_TRUE(Finish("w1", link, job, v1::JOB_STATE_FAILED, 0).ok());
  ASSERT_EQ(Get(job).state(), v1::JOB_STATE_FAILED);
  // A repeated finish of the same attempt changes nothing and is no error.
  EXPECT_TRUE(Finish("w1", link, job, v1::JOB_STATE_SUCCEEDED, 0).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kFinished), 1);
}

TEST_F(SchedulerTest, MessagesWithoutAttemptAreHandledAsBefore) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = RequeueOntoTheSameWorker(job);
  // A worker that predates the field cannot be told apart: its events and finish count.
  ASSERT_TRUE(Events("w1", link, job, 2, 1).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(Finish("w1", link, job, v1::JOB_STATE_SUCCEEDED).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_SUCCEEDED);
  // Attempt 0 named explicitly is the first attempt, not "unset".
  const std::string second = SubmitOk("alice");
  ASSERT_TRUE(Events("w1", link, second, 1, 1, 0).ok());
  ASSERT_TRUE(Finish("w1", link, second, v1::JOB_STATE_SUCCEEDED, 0).ok());
  EXPECT_EQ(Get(second).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kEvents), 0);
  EXPECT_EQ(stale_.count(WorkerMessageKind::kFinished), 0);
  // Without the job on the worker, a finish without attempt is still an error.
  EXPECT_EQ(Finish("w1", link, job, v1::JOB_STATE_SUCCEEDED).code(),
            absl::StatusCode::kFailedPrecondition);
}

// ---- limits on what users send (a 15 MB spec made quantd hold ~1.6 GB) ----

TEST_F(SchedulerTest, SpecOverTheSizeLimitIsRefusedNamingSizeAndLimit) {
  v1::JobSpec big = ValidSpec();
  (*big.mutable_labels())["note"] = std::string(kMaxSpecBytes, 'x');
  auto refused = Submit("alice", big);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr(absl::StrCat("spec: ", big.ByteSizeLong(), " bytes")));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(std::to_string(kMaxSpecBytes)));
  v1::JobSpec many = ValidSpec();
  for (int i = 0; i < 10000; ++i) many.mutable_eval()->add_ppl_datasets("/data/x.txt");
  EXPECT_EQ(Submit("alice", many).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler_->ListJobs(Caller{"root", true}, ListQuery())->jobs.size(), 0u);
  // A large but sane spec still goes in.
  v1::JobSpec fine = ValidSpec();
  (*fine.mutable_labels())["note"] = std::string(kMaxSpecBytes / 2, 'x');
  EXPECT_TRUE(Submit("alice", fine).ok());
}

TEST_F(SchedulerTest, LongCancelReasonIsRefusedAndTheJobStays) {
  const std::string job = SubmitOk("alice");
  absl::StatusOr<v1::Job> out = absl::UnknownError("callback not called");
  scheduler_->CancelJob(Caller{"alice", false}, job, std::string(kMaxCancelReasonBytes + 1, 'r'),
                        [&](absl::StatusOr<v1::Job> r) { out = std::move(r); });
  ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("reason"));
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_QUEUED);
  scheduler_->CancelJob(Caller{"alice", false}, job, std::string(kMaxCancelReasonBytes, 'r'),
                        [&](absl::StatusOr<v1::Job> r) { out = std::move(r); });
  EXPECT_TRUE(out.ok()) << out.status();
}

TEST_F(SchedulerTest, OverlongJobIdIsInvalidAndNotEchoed) {
  SubmitOk("alice");
  const std::string id = "j-" + std::string(100000, '9');
  const Caller alice{"alice", false};
  absl::Status get = scheduler_->GetJob(alice, id).status();
  EXPECT_EQ(get.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(get.message().size(), 200u);
  EXPECT_EQ(scheduler_->GetJobMetrics(alice, id).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Cancel("alice", id).status().code(), absl::StatusCode::kInvalidArgument);
  // At the limit it is an id like any other: not found.
  EXPECT_EQ(scheduler_->GetJob(alice, std::string(kMaxJobIdLength, 'j')).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, ListJobsWithAnUnknownStateIsInvalidNamingIt) {
  SubmitOk("alice");
  ListQuery query;
  query.states = {v1::JOB_STATE_QUEUED, static_cast<v1::JobState>(99)};
  auto listed = scheduler_->ListJobs(Caller{"alice", false}, query);
  ASSERT_EQ(listed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(listed.status().message()), HasSubstr("99"));
  query.states = {static_cast<v1::JobState>(-5)};
  EXPECT_THAT(std::string(scheduler_->ListJobs(Caller{"alice", false}, query).status().message()),
              HasSubstr("-5"));
}

// ---- Hello and heartbeat devices ----

TEST_F(SchedulerTest, HelloWithBadDevicesOrMaxJobsIsInvalid) {
  auto hello_with = [](int devices) {
    v1::Hello hello;
    hello.set_worker_id("w");
    for (int i = 0; i < devices; ++i) {
      v1::Device* device = hello.add_devices();
      device->set_id(std::to_string(i));
      device->set_total_memory_bytes(80 * kGiB);
      device->set_free_memory_bytes(80 * kGiB);
    }
    return hello;
  };
  auto refusal = [&](const v1::Hello& hello) {
    RecordingLink link;
    absl::Status status = scheduler_->ConnectWorker(hello, &link);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(link.sent.empty());
    return std::string(status.message());
  };
  v1::Hello duplicate = hello_with(2);
  duplicate.mutable_devices(1)->set_id("0");
  EXPECT_THAT(refusal(duplicate), HasSubstr("\"0\" appears more than once"));
  v1::Hello negative = hello_with(1);
  negative.mutable_devices(0)->set_free_memory_bytes(-1);
  EXPECT_THAT(refusal(negative), HasSubstr("negative memory"));
  negative.mutable_devices(0)->set_free_memory_bytes(0);
  negative.mutable_devices(0)->set_total_memory_bytes(-8);
  EXPECT_THAT(refusal(negative), HasSubstr("negative memory"));
  v1::Hello minus_jobs = hello_with(1);
  minus_jobs.set_max_jobs(-3);
  EXPECT_THAT(refusal(minus_jobs), HasSubstr("hello.max_jobs"));
  EXPECT_THAT(refusal(hello_with(kMaxWorkerDevices + 1)),
              HasSubstr(std::to_string(kMaxWorkerDevices)));
  v1::Hello long_id = hello_with(1);
  long_id.set_worker_id(std::string(kMaxWorkerIdLength + 1, 'w'));
  EXPECT_THAT(refusal(long_id), HasSubstr("hello.worker_id"));
  EXPECT_EQ(scheduler_->Stats().workers_connected, 0);

  // max_jobs 0 means 1; the largest device count is fine.
  RecordingLink link;
  ASSERT_TRUE(scheduler_->ConnectWorker(hello_with(kMaxWorkerDevices), &link).ok());
  SubmitOk("alice");
  SubmitOk("alice");
  EXPECT_EQ(link.Assignments().size(), 1u);
}

TEST_F(SchedulerTest, HeartbeatWithDuplicateDevicesIsInvalidAndKeepsTheOldOnes) {
  RecordingLink* link = Connect("w1", 2);
  v1::Heartbeat heartbeat;
  for (int i = 0; i < 2; ++i) {
    v1::Device* device = heartbeat.add_devices();
    device->set_id("cuda:0");
    device->set_total_memory_bytes(80 * kGiB);
    device->set_free_memory_bytes(80 * kGiB);
  }
  EXPECT_EQ(scheduler_->Heartbeat("w1", link, heartbeat).code(),
            absl::StatusCode::kInvalidArgument);
  v1::JobSpec two = ValidSpec();
  two.mutable_resources()->set_device_count(2);
  const std::string job = SubmitOk("alice", two);
  ASSERT_EQ(link->Assignments().size(), 1u);
  EXPECT_THAT(link->Assignments()[0].device_ids(),
              ::testing::UnorderedElementsAre("cuda:0", "cuda:1"));
}

// ---- worker sequences (2^63-2 made the counter overflow and every later batch vanish) ----

TEST_F(SchedulerTest, OutOfRangeWorkerSequencesAreInvalidAndStoreNothing) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  ASSERT_EQ(*Events("w1", link, job, 2, 1), 2);
  const int64_t last_sequence = Get(job).last_sequence();
  const int64_t max = std::numeric_limits<int64_t>::max();
  for (int64_t first : {max - 1, max, int64_t{-1}, std::numeric_limits<int64_t>::min(),
                        3 + kMaxWorkerSequenceGap + 1}) {
    auto ack = Events("w1", link, job, 3, first);
    EXPECT_EQ(ack.status().code(), absl::StatusCode::kInvalidArgument) << first;
    EXPECT_THAT(std::string(ack.status().message()), HasSubstr("first_worker_sequence"));
  }
  EXPECT_EQ(Get(job).last_sequence(), last_sequence);
  // The legitimate flows still work: a resend, the next batch, a legacy batch (0).
  EXPECT_EQ(*Events("w1", link, job, 3, 1), 3);
  EXPECT_EQ(*Events("w1", link, job, 1, 4), 4);
  EXPECT_EQ(*Events("w1", link, job, 1, 0), 5);
  EXPECT_EQ(Get(job).last_sequence(), last_sequence + 3);
}

TEST_F(SchedulerTest, GapWithinTheLimitIsAcceptedAndLogged) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  ASSERT_TRUE(Events("w1", link, job, 2, 1).ok());
  LogCapture log;
  // Events 3..9 were acknowledged once but lost by the store (e.g. --store_sync=normal).
  EXPECT_EQ(*Events("w1", link, job, 2, 10), 11);
  EXPECT_THAT(log.text(), HasSubstr("3..9 never arrived"));
  EXPECT_EQ(*Events("w1", link, job, 1, 12), 12);
}

TEST_F(SchedulerTest, StaleEventsWithAHugeSequenceAreInvalidNotOverflowed) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = RequeueOntoTheSameWorker(job);
  auto ack = Events("w1", link, job, 3, std::numeric_limits<int64_t>::max() - 1, 0);
  EXPECT_EQ(ack.status().code(), absl::StatusCode::kInvalidArgument);
  ack = Events("w1", link, job, 3, kMaxWorkerSequence, 0);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(*ack, kMaxWorkerSequence + 2);
}

// ---- worker payloads ----

TEST_F(SchedulerTest, MalformedWorkerEventsAreDroppedAndProgressIsSanitised) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  ASSERT_TRUE(Events("w1", link, job, 1, 1).ok());
  const int64_t before = Get(job).last_sequence();
  auto send = [&](int64_t first, const std::vector<v1::JobEvent>& list) {
    v1::JobEvents events;
    events.set_job_id(job);
    events.set_first_worker_sequence(first);
    for (const auto& event : list) *events.add_events() = event;
    absl::StatusOr<int64_t> out = absl::UnknownError("callback not called");
    scheduler_->IngestEvents("w1", link, events,
                             [&](absl::StatusOr<int64_t> r) { out = std::move(r); });
    return out;
  };
  auto progress = [](double fraction, double eta) {
    v1::JobEvent event;
    event.mutable_progress()->set_fraction(fraction);
    event.mutable_progress()->set_eta_seconds(eta);
    return event;
  };
  v1::JobEvent empty;
  v1::JobEvent bad_phase;
  bad_phase.mutable_phase_change()->set_phase(static_cast<v1::Phase>(999));
  v1::JobEvent bad_loss_phase;
  bad_loss_phase.mutable_loss()->set_phase(static_cast<v1::Phase>(-4));
  v1::JobEvent good_phase;
  good_phase.mutable_phase_change()->set_phase(v1::PHASE_CALIBRATE);

  LogCapture log;
  // Dropped events are acknowledged (the worker must not resend them), not stored.
  EXPECT_EQ(*send(2, {empty, bad_phase, bad_loss_phase, good_phase, progress(0.25, 30)}), 6);
  EXPECT_THAT(log.text(), HasSubstr("dropped 3 malformed event(s) from worker w1"));
  EXPECT_THAT(log.text(), HasSubstr("without a kind"));
  EXPECT_EQ(Get(job).last_sequence(), before + 2);
  EXPECT_EQ(Get(job).phase(), v1::PHASE_CALIBRATE);

  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  ASSERT_TRUE(send(7, {progress(nan, nan)}).ok());
  EXPECT_DOUBLE_EQ(Get(job).progress().fraction(), 0.25);  // kept
  EXPECT_EQ(Get(job).progress().eta_seconds(), -1);
  ASSERT_TRUE(send(8, {progress(1e308, inf)}).ok());
  EXPECT_DOUBLE_EQ(Get(job).progress().fraction(), 1.0);
  EXPECT_EQ(Get(job).progress().eta_seconds(), -1);
  ASSERT_TRUE(send(9, {progress(-5, -inf)}).ok());
  EXPECT_DOUBLE_EQ(Get(job).progress().fraction(), 0.0);
  EXPECT_EQ(Get(job).progress().eta_seconds(), -1);
  ASSERT_TRUE(send(10, {progress(0.5, -7)}).ok());
  EXPECT_DOUBLE_EQ(Get(job).progress().fraction(), 0.5);
  EXPECT_EQ(Get(job).progress().eta_seconds(), -1);
  // The stored events carry the sanitised values too.
  for (const auto& event : store_.AllEvents(job)) {
    if (!event.has_progress()) continue;
    EXPECT_TRUE(std::isfinite(event.progress().fraction()));
    EXPECT_GE(event.progress().fraction(), 0.0);
    EXPECT_LE(event.progress().fraction(), 1.0);
    EXPECT_TRUE(std::isfinite(event.progress().eta_seconds()));
  }
  ExpectContiguous(job);
}

// ---- logs that name what happened ----

TEST_F(SchedulerTest, ReplacedLiveConnectionIsLoggedWithBothAddresses) {
  RecordingLink* first = Connect("w1");
  first->peer_address = "ipv4:10.0.0.1:5000";
  v1::Hello hello;
  hello.set_worker_id("w1");
  v1::Device* device = hello.add_devices();
  device->set_id("cuda:0");
  RecordingLink second;
  second.peer_address = "ipv4:10.0.0.2:6000";
  LogCapture log;
  ASSERT_TRUE(scheduler_->ConnectWorker(hello, &second).ok());
  EXPECT_EQ(first->closed.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(log.text(), HasSubstr("worker w1: a new connection from ipv4:10.0.0.2:6000 "
                                    "replaces the live one from ipv4:10.0.0.1:5000"));
  scheduler_->DisconnectWorker("w1", &second);
}

// Two worker processes started with the same --worker_id: replacing the live one made them
// take turns (each reconnected at once) and lost the running job on every turn.
TEST_F(SchedulerTest, SameWorkerIdFromAnotherLiveProcessIsRefused) {
  const std::string job = SubmitOk("alice");
  v1::Hello hello;
  hello.set_worker_id("w1");
  hello.set_instance_id("process-a");
  hello.add_devices()->set_id("cuda:0");
  RecordingLink first;
  first.peer_address = "ipv4:10.0.0.1:5000";
  ASSERT_TRUE(scheduler_->ConnectWorker(hello, &first).ok());
  ASSERT_EQ(first.Assignments().size(), 1u);
  ASSERT_TRUE(Events("w1", &first, job, 2, 1).ok());

  hello.set_instance_id("process-b");
  RecordingLink second;
  second.peer_address = "ipv4:10.0.0.2:6000";
  {
    LogCapture log;
    for (int i = 0; i < 3; ++i) {
      const absl::Status refused = scheduler_->ConnectWorker(hello, &second);
      EXPECT_EQ(refused.code(), absl::StatusCode::kAlreadyExists);
      EXPECT_EQ(refused.message(),
                "worker id w1 is in use by another live worker (from ipv4:10.0.0.1:5000)");
    }
    EXPECT_THAT(log.text(), HasSubstr("[error]"));
    EXPECT_THAT(log.text(), HasSubstr("worker w1: refused a connection from ipv4:10.0.0.2:6000"));
  }
  EXPECT_TRUE(first.closed.ok()) << first.closed;
  EXPECT_TRUE(second.sent.empty());
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(scheduler_->Heartbeat("w1", &first, v1::Heartbeat()).ok());
  scheduler_->Tick();
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Get(job).attempt(), 0);
  ASSERT_TRUE(Finish("w1", &first, job, v1::JOB_STATE_SUCCEEDED).ok());
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_SUCCEEDED);
  scheduler_->DisconnectWorker("w1", &first);
}

// The same process reconnecting (same instance_id) still replaces its old stream, and so does
// another process once the connected one has been silent past the loss timeout.
TEST_F(SchedulerTest, SameWorkerIdReplacesWhenSameProcessOrOldOneSilent) {
  v1::Hello hello;
  hello.set_worker_id("w1");
  hello.set_instance_id("process-a");
  hello.add_devices()->set_id("cuda:0");
  RecordingLink first;
  ASSERT_TRUE(scheduler_->ConnectWorker(hello, &first).ok());
  RecordingLink second;
  ASSERT_TRUE(scheduler_->ConnectWorker(hello, &second).ok());
  EXPECT_EQ(first.closed.code(), absl::StatusCode::kAborted);

  hello.set_instance_id("process-b");
  RecordingLink third;
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(scheduler_->ConnectWorker(hello, &third).code(), absl::StatusCode::kAlreadyExists);
  clock_.Advance(absl::Seconds(2));  // 4 s > worker_lost_after, before any Tick
  ASSERT_TRUE(scheduler_->ConnectWorker(hello, &third).ok());
  EXPECT_EQ(second.closed.code(), absl::StatusCode::kAborted);

  hello.clear_instance_id();  // a worker older than instance_id
  RecordingLink fourth;
  ASSERT_TRUE(scheduler_->ConnectWorker(hello, &fourth).ok());
  EXPECT_EQ(third.closed.code(), absl::StatusCode::kAborted);
  scheduler_->DisconnectWorker("w1", &fourth);
}

// JobEvent.time: when it happened, by the worker's clock. Events a worker held while quantd
// was down keep their times; only events without one get quantd's receive time.
TEST_F(SchedulerTest, WorkerEventTimesAreKeptAndOnlyMissingOnesStamped) {
  const std::string job = SubmitOk("alice");
  RecordingLink* link = Connect("w1");
  clock_.Advance(absl::Seconds(40));
  v1::JobEvents events;
  events.set_job_id(job);
  events.set_first_worker_sequence(1);
  v1::JobEvent* held = events.add_events();
  held->mutable_loss()->set_step(1);
  held->mutable_time()->set_seconds(1700000000);
  held->mutable_time()->set_nanos(123);
  events.add_events()->mutable_loss()->set_step(2);  // an older worker: no time
  absl::StatusOr<int64_t> acked = absl::UnknownError("callback not called");
  scheduler_->IngestEvents("w1", link, events, [&](absl::StatusOr<int64_t> r) { acked = r; });
  ASSERT_TRUE(acked.ok()) << acked.status();
  std::vector<v1::JobEvent> losses;
  for (const auto& event : store_.AllEvents(job)) {
    if (event.has_loss()) losses.push_back(event);
    // quantd's own events carry quantd's clock.
    if (event.has_state_change()) {
      EXPECT_TRUE(event.has_time());
    }
  }
  ASSERT_EQ(losses.size(), 2u);
  EXPECT_EQ(losses[0].time().seconds(), 1700000000);
  EXPECT_EQ(losses[0].time().nanos(), 123);
  EXPECT_EQ(absl::FromUnixSeconds(losses[1].time().seconds()) +
                absl::Nanoseconds(losses[1].time().nanos()),
            clock_.Now());
}

TEST_F(SchedulerTest, HelloNamingAJobRunningOnAnotherWorkerSaysSo) {
  const std::string job = SubmitOk("alice");
  RecordingLink* good = Connect("good-w1");
  ASSERT_TRUE(Events("good-w1", good, job, 1, 1, 0).ok());
  v1::RunningJob claimed;
  claimed.set_job_id(job);
  claimed.set_attempt(0);
  LogCapture log;
  RecordingLink* bad = Connect("bad-w1", 1, 80, 1, {claimed});
  ASSERT_EQ(bad->sent[0].welcome().stop_jobs_size(), 1);
  EXPECT_THAT(log.text(), HasSubstr("attempt 0 is RUNNING on worker good-w1, not on bad-w1"));
  EXPECT_THAT(log.text(), ::testing::Not(HasSubstr("stale")));
  EXPECT_EQ(Get(job).state(), v1::JOB_STATE_RUNNING);
}

}  // namespace
}  // namespace quantd
