// quantd + real quantd-worker processes on loopback, running real jobs on the shared
// stories260K model: success with every event in order, worker killed -> requeue on the
// other worker, scheduler killed -> re-attach and a gapless event log, cancel, crash.
#include <signal.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "quantd/v1/quantize_service.grpc.pb.h"
#include "tests/common/stories_job.h"
#include "tests/e2e/processes.h"
#include "tests/e2e/scheduler_calls.h"

namespace quantd::e2e {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kQuantd = std::string(QUANTD_BINARY_DIR) + "/server/quantd";
const std::string kWorker = std::string(QUANTD_BINARY_DIR) + "/worker/quantd-worker";
const std::string kData = QUANTD_SHARED_DATA;

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

class WorkerE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/quantd_e2e_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  void StartScheduler(int port = 0, const std::string& worker_lost_after = "3s") {
    const std::string log = dir_ + "/quantd." + std::to_string(++scheduler_starts_) + ".log";
    auto process = Process::Start(
        {kQuantd, "--listen=127.0.0.1:" + std::to_string(port), "--metrics_listen=127.0.0.1:0",
         "--db=" + dir_ + "/quantd.db", "--heartbeat_interval=1s",
         "--worker_lost_after=" + worker_lost_after, "--reattach_grace=30s", "--shutdown_grace=1s"},
        log);
    ASSERT_TRUE(process.ok()) << process.status();
    scheduler_ = std::move(*process);
    const auto ready = WaitForOutput(*scheduler_, "ready port=([0-9]+)", 20s);
    ASSERT_TRUE(ready.has_value()) << scheduler_->Output();
    port_ = std::stoi(*ready);
    stub_ = v1::QuantizeService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                                             grpc::InsecureChannelCredentials()));
  }

  std::unique_ptr<Process> StartWorker(const std::string& name,
                                       const std::map<std::string, std::string>& env = {}) {
    auto process =
        Process::Start({kWorker, "connect", "--scheduler=127.0.0.1:" + std::to_string(port_),
                        "--work_dir=" + dir_ + "/" + name, "--worker_id=" + name,
                        "--cancel_grace_seconds=2", "--metrics_listen=127.0.0.1:0"},
                       dir_ + "/" + name + ".log", env);
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? std::move(*process) : nullptr;
  }

  static v1::JobSpec Spec(int windows) {
    v1::JobSpec spec;
    spec.mutable_model()->set_path(kData + "/models/stories260K");
    spec.mutable_calibration()->set_dataset_path(kData + "/text/tinystories-valid-subset.txt");
    spec.mutable_calibration()->set_documents("blank-line");
    spec.mutable_eval()->set_eval_ppl(true);
    spec.mutable_eval()->set_ppl_seqlen(256);
    spec.mutable_eval()->set_ppl_max_windows(windows);
    return spec;
  }

  std::string Submit(const v1::JobSpec& spec) { return SubmitJob(*stub_, spec); }
  v1::Job Get(const std::string& job_id) { return GetJob(*stub_, job_id); }

  bool WaitForJob(const std::string& job_id, const std::function<bool(const v1::Job&)>& done,
                  std::chrono::milliseconds timeout) {
    return WaitFor([&] { return done(Get(job_id)); }, timeout);
  }

  // Every event of the job from the beginning to its terminal state, resuming after
  // broken streams (as quantctl watch does).
  std::vector<v1::JobEvent> WatchToEnd(const std::string& job_id,
                                       std::chrono::milliseconds timeout) {
    std::vector<v1::JobEvent> events;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + timeout);
      v1::WatchJobRequest request;
      request.set_job_id(job_id);
      request.set_after_sequence(events.empty() ? 0 : events.back().sequence());
      auto reader = stub_->WatchJob(&context, request);
      v1::JobEvent event;
      while (reader->Read(&event)) events.push_back(event);
      const grpc::Status status = reader->Finish();
      if (status.ok()) break;
      std::this_thread::sleep_for(100ms);
    }
    return events;
  }

  static void ExpectGapless(const std::vector<v1::JobEvent>& events) {
    for (size_t i = 0; i < events.size(); ++i) {
      ASSERT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1)) << "event " << i;
    }
  }

  static v1::JobState FinalState(const std::vector<v1::JobEvent>& events) {
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (it->has_state_change()) return it->state_change().to();
    }
    return v1::JOB_STATE_UNSPECIFIED;
  }

  std::string dir_;
  int scheduler_starts_ = 0;
  std::unique_ptr<Process> scheduler_;
  int port_ = 0;
  std::unique_ptr<v1::QuantizeService::Stub> stub_;
};

TEST_F(WorkerE2ETest, JobSucceedsAndTheWatcherGetsEveryEventInOrder) {
  StartScheduler();
  auto first = StartWorker("w1");
  auto second = StartWorker("w2");
  const std::string job_id = Submit(Spec(10));
  const auto events = WatchToEnd(job_id, 120s);
  ExpectGapless(events);
  EXPECT_EQ(FinalState(events), v1::JOB_STATE_SUCCEEDED);
  int loss_points = 0;
  double ppl = 0;
  for (const auto& event : events) {
    if (event.has_loss()) {
      EXPECT_EQ(event.loss().step(), loss_points++);
    }
    if (event.has_metric()) ppl = event.metric().value();
  }
  EXPECT_EQ(loss_points, 10);
  EXPECT_GT(ppl, 3.0);
  EXPECT_LT(ppl, 6.0);
  const v1::Job job = Get(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_GT(job.result().metrics().at("ppl/tinystories-valid-subset.txt/fp"), 3.0);
}

// A PrefixQuant job (W8A8KV8 static, rotation, detected prefix, three compared variants)
// through the scheduler: the watcher sees every phase, the outlier metrics and each variant's
// perplexity as events, and the stored result carries the same numbers.
TEST_F(WorkerE2ETest, QuantizationJobStreamsPhasesOutlierMetricsAndPerplexities) {
  StartScheduler();
  auto worker = StartWorker("w1");
  test_data::StoriesJobShape shape;
  shape.eval_windows = 8;
  v1::JobSpec spec = test_data::StoriesQuantSpec(kData + "/models/stories260K", shape);
  for (const char* variant : {"rtn", "rotation", "prefixquant"}) {
    spec.mutable_eval()->add_compare(variant);
  }
  const std::string job_id = Submit(spec);
  const auto events = WatchToEnd(job_id, 240s);
  ExpectGapless(events);
  ASSERT_EQ(FinalState(events), v1::JOB_STATE_SUCCEEDED);

  std::set<v1::Phase> phases;
  std::map<std::string, double> metrics;
  for (const auto& event : events) {
    if (event.has_phase_change()) phases.insert(event.phase_change().phase());
    if (event.has_metric()) metrics[event.metric().name()] = event.metric().value();
  }
  for (v1::Phase phase : {v1::PHASE_LOAD_MODEL, v1::PHASE_CALIBRATION_DATA,
                          v1::PHASE_DETECT_OUTLIERS, v1::PHASE_EVALUATE, v1::PHASE_DONE}) {
    EXPECT_EQ(phases.count(phase), 1u) << v1::Phase_Name(phase);
  }
  EXPECT_EQ(metrics.count("outlier_ratio/layer0/before"), 1u);
  EXPECT_EQ(metrics.count("outlier_ratio/layer0/after"), 1u);
  EXPECT_EQ(metrics.count("prefix/count"), 1u);
  const std::string ppl = "ppl/tinystories-valid-subset.txt/";
  const v1::Job job = Get(job_id);
  for (const char* label : {"fp", "fp_prefixed", "quantized", "rtn", "rotation", "prefixquant"}) {
    ASSERT_EQ(metrics.count(ppl + label), 1u) << label;
    // W8A8KV8 on stories260K stays close to full precision (every variant within 10 %).
    EXPECT_LT(metrics[ppl + label], 1.1 * metrics[ppl + "fp_prefixed"]) << label;
    EXPECT_EQ(job.result().metrics().at(ppl + label), metrics[ppl + label]) << label;
  }
  EXPECT_FALSE(job.result().prefix_text().empty());
}

TEST_F(WorkerE2ETest, KilledWorkerIsReplacedAndTheOtherWorkerFinishesTheJob) {
  StartScheduler();
  std::map<std::string, std::unique_ptr<Process>> workers;
  workers["w1"] = StartWorker("w1", {{"QUANTD_TEST_EVENT_DELAY_MS", "100"}});
  workers["w2"] = StartWorker("w2", {{"QUANTD_TEST_EVENT_DELAY_MS", "100"}});
  const std::string job_id = Submit(Spec(20));
  std::string running_on;
  ASSERT_TRUE(WaitForJob(
      job_id,
      [&](const v1::Job& job) {
        running_on = job.worker_id();
        return job.state() == v1::JOB_STATE_RUNNING && job.progress().fraction() > 0.1;
      },
      60s));
  workers.at(running_on)->Kill();
  ASSERT_TRUE(WaitForJob(
      job_id, [](const v1::Job& job) { return IsTerminal(job.state()); }, 120s));
  const v1::Job job = Get(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_NE(job.worker_id(), running_on);
  const auto events = WatchToEnd(job_id, 10s);
  ExpectGapless(events);
  bool lost = false;
  for (const auto& event : events) {
    if (event.has_state_change() &&
        event.state_change().failure().reason() == v1::FAILURE_REASON_WORKER_LOST) {
      lost = true;
    }
  }
  EXPECT_TRUE(lost) << "no WORKER_LOST requeue event";
}

// `systemctl stop` of a worker (SIGTERM, deploy/systemd/quantd-worker@.service): its running job
// is handed back at once (not lost after --worker_lost_after) and another worker finishes it.
TEST_F(WorkerE2ETest, SigtermedWorkerHandsItsJobBackAndAnotherWorkerFinishesIt) {
  // A long loss timeout: the hand-back must not depend on it, and a loaded machine (CI) must
  // not make the new worker look lost before its first heartbeats.
  StartScheduler(0, "20s");
  auto first = StartWorker("w1", {{"QUANTD_TEST_EVENT_DELAY_MS", "200"}});
  const std::string job_id = Submit(Spec(20));
  ASSERT_TRUE(WaitForJob(
      job_id,
      [](const v1::Job& job) {
        return job.state() == v1::JOB_STATE_RUNNING && job.progress().fraction() > 0.1;
      },
      60s));
  ASSERT_EQ(::kill(first->pid(), SIGTERM), 0);
  EXPECT_EQ(first->WaitExit(30s), 0) << first->Output();
  auto second = StartWorker("w2");
  ASSERT_TRUE(WaitForJob(
      job_id, [](const v1::Job& job) { return IsTerminal(job.state()); }, 120s));
  const v1::Job job = Get(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.worker_id(), "w2");
  EXPECT_EQ(job.attempt(), 1);
  const auto events = WatchToEnd(job_id, 10s);
  ExpectGapless(events);
  int requeues = 0;
  for (const auto& event : events) {
    if (!event.has_state_change() || event.state_change().to() != v1::JOB_STATE_QUEUED ||
        event.state_change().from() == v1::JOB_STATE_UNSPECIFIED) {
      continue;
    }
    ++requeues;
    EXPECT_EQ(event.state_change().failure().message(),
              "worker w1 stopped the job: the worker is shutting down");
  }
  EXPECT_EQ(requeues, 1);
}

// A worker that stops answering past --worker_lost_after (here: SIGSTOP) loses its job to the
// queue; when it answers again the scheduler refuses the old attempt back and assigns the job
// anew, to the same worker. The old attempt must be stopped without a word: its CANCELLED
// ending must not end the new attempt, which runs to SUCCEEDED.
TEST_F(WorkerE2ETest, WorkerThatWasPausedPastTheLossTimeoutRerunsTheJob) {
  StartScheduler();
  // Slow events keep the first attempt running until after the worker resumes.
  auto worker = StartWorker("w1", {{"QUANTD_TEST_EVENT_DELAY_MS", "300"}});
  const std::string job_id = Submit(Spec(20));
  ASSERT_TRUE(WaitForJob(
      job_id, [](const v1::Job& job) { return job.state() == v1::JOB_STATE_RUNNING; }, 60s));
  ASSERT_EQ(::kill(worker->pid(), SIGSTOP), 0);
  const bool requeued = WaitForJob(
      job_id, [](const v1::Job& job) { return job.state() == v1::JOB_STATE_QUEUED; }, 20s);
  ASSERT_EQ(::kill(worker->pid(), SIGCONT), 0);
  ASSERT_TRUE(requeued) << "the paused worker was not declared lost";
  ASSERT_TRUE(WaitForJob(
      job_id, [](const v1::Job& job) { return IsTerminal(job.state()); }, 120s));
  const v1::Job job = Get(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.attempt(), 1);
  EXPECT_GT(job.result().metrics().at("ppl/tinystories-valid-subset.txt/fp"), 3.0);
  const auto events = WatchToEnd(job_id, 10s);
  ExpectGapless(events);
  EXPECT_EQ(FinalState(events), v1::JOB_STATE_SUCCEEDED);
  // The resumed worker named attempt 0 in its Hello, so the scheduler told it to stop that
  // attempt (whatever it holds now); nothing of attempt 0 reached the scheduler after that.
  const std::string log = scheduler_->Output();
  EXPECT_THAT(log, HasSubstr("job " + job_id +
                             ": dropped a stale Hello running job from worker w1: attempt 0"));
  EXPECT_THAT(log, Not(HasSubstr("dropped a stale JobEvents")));
  EXPECT_THAT(log, Not(HasSubstr("dropped a stale JobFinished")));
}

TEST_F(WorkerE2ETest, SchedulerKilledMidJobWorkerReattachesAndTheLogStaysGapless) {
  StartScheduler();
  auto worker = StartWorker("w1", {{"QUANTD_TEST_EVENT_DELAY_MS", "100"}});
  const std::string job_id = Submit(Spec(30));
  ASSERT_TRUE(WaitForJob(
      job_id,
      [](const v1::Job& job) {
        return job.state() == v1::JOB_STATE_RUNNING && job.progress().fraction() > 0.2;
      },
      60s));
  const int port = port_;
  scheduler_->Kill();
  StartScheduler(port);
  const auto events = WatchToEnd(job_id, 120s);
  ExpectGapless(events);
  EXPECT_EQ(FinalState(events), v1::JOB_STATE_SUCCEEDED);
  int loss_points = 0;
  for (const auto& event : events) {
    if (event.has_loss()) {
      EXPECT_EQ(event.loss().step(), loss_points++);
    }
  }
  EXPECT_EQ(loss_points, 30);  // none lost, none duplicated across the restart
}

TEST_F(WorkerE2ETest, CancelEndsARunningJobAndItsProcess) {
  StartScheduler();
  auto worker = StartWorker("w1", {{"QUANTD_TEST_EVENT_DELAY_MS", "200"}});
  const std::string job_id = Submit(Spec(40));
  ASSERT_TRUE(WaitForJob(
      job_id, [](const v1::Job& job) { return job.state() == v1::JOB_STATE_RUNNING; }, 60s));
  const auto pid = WaitForOutput(*worker, "job " + job_id + ": started \\(pid ([0-9]+)\\)", 10s);
  ASSERT_TRUE(pid.has_value()) << worker->Output();
  const pid_t child = std::stoi(*pid);
  grpc::ClientContext context;
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  v1::Job cancelled;
  ASSERT_TRUE(stub_->CancelJob(&context, request, &cancelled).ok());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitForJob(
      job_id, [](const v1::Job& job) { return job.state() == v1::JOB_STATE_CANCELLED; }, 15s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(child); }, 5s)) << "job process " << child;
}

TEST_F(WorkerE2ETest, CrashingJobProcessFailsTheJobWithTheReason) {
  StartScheduler();
  auto worker = StartWorker("w1", {{"QUANTD_TEST_CRASH_AFTER_EVENTS", "3"}});
  const std::string job_id = Submit(Spec(5));
  ASSERT_TRUE(WaitForJob(
      job_id, [](const v1::Job& job) { return IsTerminal(job.state()); }, 60s));
  const v1::Job job = Get(job_id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(job.failure().reason(), v1::FAILURE_REASON_INTERNAL);
  EXPECT_THAT(job.failure().message(), HasSubstr("signal 11"));
  EXPECT_THAT(job.failure().message(), HasSubstr("crashing after 3 events"));
  EXPECT_FALSE(ProcessGone(worker->pid())) << "the worker itself must survive the crash";
}

}  // namespace
}  // namespace quantd::e2e
