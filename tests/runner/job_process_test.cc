// The worker's job isolation with real child processes.
#include "worker/runner/job_process.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quantd::runner {
namespace {

using ::testing::HasSubstr;

struct Ran {
  JobOutcome outcome;
  std::vector<v1::JobEvent> events;
  pid_t pid = 0;
};

Ran RunFake(const std::vector<std::string>& mode,
            std::chrono::milliseconds cancel_after = std::chrono::milliseconds(-1),
            std::chrono::milliseconds grace = std::chrono::milliseconds(5000)) {
  JobProcessOptions options;
  options.argv = {FAKE_JOB_PATH};
  options.argv.insert(options.argv.end(), mode.begin(), mode.end());
  options.log_path = ::testing::TempDir() + "/fake_job_" + mode[0] + ".log";
  ::unlink(options.log_path.c_str());
  options.cancel_grace = grace;
  auto process = JobProcess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  Ran ran;
  ran.pid = (*process)->pid();
  // The cancel comes `cancel_after` after the child's first event: by then it has set up its
  // signal handling, however slowly a loaded machine started it.
  std::promise<void> first_event;
  std::future<void> started = first_event.get_future();
  std::thread canceller;
  if (cancel_after.count() >= 0) {
    canceller = std::thread([&, p = process->get()] {
      started.wait();
      std::this_thread::sleep_for(cancel_after);
      p->RequestCancel();
    });
  }
  ran.outcome = (*process)->Run([&](v1::JobEvent event) {
    if (ran.events.empty()) first_event.set_value();
    ran.events.push_back(event);
  });
  if (ran.events.empty()) first_event.set_value();
  if (canceller.joinable()) canceller.join();
  return ran;
}

// True when no process with `pid` exists any more (reaped, not a zombie).
bool Gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

TEST(JobProcessTest, SuccessForwardsEveryEventInOrderWithResult) {
  const Ran ran = RunFake({"succeed", "200"});
  EXPECT_EQ(ran.outcome.state, v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(ran.events.size(), 201u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_DOUBLE_EQ(ran.events[i].progress().fraction(), (i + 1) / 200.0);
  }
  EXPECT_DOUBLE_EQ(ran.outcome.result.metrics().at("ppl"), 4.117);
  EXPECT_TRUE(Gone(ran.pid));
  // The child stamps each event when it emits it (JobEvent.time), in order.
  for (size_t i = 0; i < ran.events.size(); ++i) {
    ASSERT_TRUE(ran.events[i].has_time()) << i;
    EXPECT_GT(ran.events[i].time().seconds(), 1700000000) << i;
    if (i > 0) {
      EXPECT_GE(ran.events[i].time().seconds(), ran.events[i - 1].time().seconds());
    }
  }
}

TEST(JobProcessTest, ReportedFailureKeepsTheChildsReason) {
  const Ran ran = RunFake({"fail", "-"});
  EXPECT_EQ(ran.outcome.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(ran.outcome.failure.reason(), v1::FAILURE_REASON_USER_ERROR);
  EXPECT_EQ(ran.outcome.failure.message(), "calibration file not found");
}

TEST(JobProcessTest, SegfaultIsFailedWithSignalAndLogTail) {
  const Ran ran = RunFake({"segfault", "-"});
  EXPECT_EQ(ran.outcome.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(ran.outcome.signal, SIGSEGV);
  EXPECT_EQ(ran.outcome.failure.reason(), v1::FAILURE_REASON_INTERNAL);
  EXPECT_THAT(ran.outcome.failure.message(), HasSubstr("signal 11"));
  EXPECT_THAT(ran.outcome.failure.message(), HasSubstr("about to crash in block 3"));
  EXPECT_EQ(ran.events.size(), 2u);  // what it sent before dying still arrives
  EXPECT_TRUE(Gone(ran.pid));
}

TEST(JobProcessTest, UnexpectedExitCodeIsInternalFailure) {
  const Ran ran = RunFake({"exit7", "-"});
  EXPECT_EQ(ran.outcome.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(ran.outcome.exit_code, 7);
  EXPECT_THAT(ran.outcome.failure.message(), HasSubstr("exited with code 7"));
  EXPECT_THAT(ran.outcome.failure.message(), HasSubstr("unexpected trouble"));
}

TEST(JobProcessTest, CorruptEventStreamFailsTheJob) {
  const Ran ran = RunFake({"garbage", "-"});
  EXPECT_EQ(ran.outcome.state, v1::JOB_STATE_FAILED);
  EXPECT_THAT(ran.outcome.failure.message(), HasSubstr("corrupt events"));
}

TEST(JobProcessTest, CancelStopsAtTheNextStep) {
  const auto start = std::chrono::steady_clock::now();
  const Ran ran = RunFake({"wait-cancel", "-"}, std::chrono::milliseconds(100));
  EXPECT_EQ(ran.outcome.state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(ran.outcome.exit_code, kChildCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  EXPECT_TRUE(Gone(ran.pid));
}

// systemd stops a unit by sending SIGTERM to every process in it, job processes included,
// maybe before the worker asks them to stop: a child that exits as cancelled was stopped, it
// did not fail (the scheduler requeues a job stopped that way).
TEST(JobProcessTest, ChildCancelledFromOutsideIsCancelledNotFailed) {
  JobProcessOptions options;
  options.argv = {FAKE_JOB_PATH, "wait-cancel", "-"};
  options.log_path = ::testing::TempDir() + "/fake_job_outside.log";
  auto process = JobProcess::Start(options);
  ASSERT_TRUE(process.ok()) << process.status();
  const pid_t pid = (*process)->pid();
  bool signalled = false;
  const JobOutcome outcome = (*process)->Run([&](v1::JobEvent) {
    // After the first event the child handles SIGTERM.
    if (!signalled) signalled = ::kill(pid, SIGTERM) == 0;
  });
  EXPECT_TRUE(signalled);
  EXPECT_EQ(outcome.exit_code, kChildCancelled);
  EXPECT_EQ(outcome.state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(outcome.failure.reason(), v1::FAILURE_REASON_CANCELLED);
  EXPECT_THAT(outcome.failure.message(), HasSubstr("stopped from outside the worker"));
}

TEST(JobProcessTest, ChildIgnoringSigtermIsKilledAfterTheGrace) {
  const auto start = std::chrono::steady_clock::now();
  const Ran ran =
      RunFake({"ignore-term", "-"}, std::chrono::milliseconds(50), std::chrono::milliseconds(300));
  EXPECT_EQ(ran.outcome.state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(ran.outcome.signal, SIGKILL);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  EXPECT_TRUE(Gone(ran.pid));
}

TEST(JobProcessTest, MissingProgramIsAFailureNotACrash) {
  JobProcessOptions options;
  options.argv = {"/nonexistent/quantd-job"};
  options.log_path = ::testing::TempDir() + "/missing.log";
  auto process = JobProcess::Start(options);
  ASSERT_TRUE(process.ok());
  const JobOutcome outcome = (*process)->Run([](v1::JobEvent) {});
  EXPECT_EQ(outcome.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(outcome.exit_code, 127);
  EXPECT_THAT(outcome.failure.message(), HasSubstr("exec of the job process failed"));
}

}  // namespace
}  // namespace quantd::runner
