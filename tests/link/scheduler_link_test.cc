// The worker link against a scripted scheduler: the reconnect/resend protocol is what is
// under test, so the scheduler side is scripted here.
#include "worker/link/scheduler_link.h"

#include "worker/link/devices.h"

#include <condition_variable>
#include <future>

#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace quantd::link {
namespace {

using namespace std::chrono_literals;

v1::JobEvent Step(int step) {
  v1::JobEvent event;
  event.mutable_loss()->set_step(step);
  return event;
}

// Session 1: welcome, assign j-1 (attempt 2), acknowledge 3 events (after an ack of another
// attempt, which the link must ignore), then break the stream.
// Session 2: expect j-1 back with acked 3, take the rest and the finish.
class ScriptedScheduler final : public v1::WorkerService::Service {
 public:
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::SchedulerMessage, v1::WorkerMessage>* stream) override {
    const int session = ++sessions_;
    v1::WorkerMessage message;
    if (!stream->Read(&message) || !message.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello first");
    }
    hellos_.push_back(message.hello());
    authorization_ = std::string(context->client_metadata().find("authorization")->second.data(),
                                 context->client_metadata().find("authorization")->second.size());
    v1::SchedulerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_seconds(1);
    for (const auto& job : message.hello().running_jobs()) {
      *welcome.mutable_welcome()->add_reattached() = job;
    }
    stream->Write(welcome);
    if (session == 1) {
      v1::SchedulerMessage assignment;
      assignment.mutable_assignment()->mutable_job()->set_job_id("j-1");
      assignment.mutable_assignment()->mutable_job()->set_attempt(2);
      stream->Write(assignment);
    }
    while (stream->Read(&message)) {
      if (message.has_events()) {
        const auto& batch = message.events();
        EXPECT_TRUE(batch.has_attempt());
        EXPECT_EQ(batch.attempt(), 2);
        for (int i = 0; i < batch.events_size(); ++i) {
          const int64_t sequence = batch.first_worker_sequence() + i;
          if (sequence <= stored_) continue;  // a resend of what is already stored
          EXPECT_EQ(sequence, stored_ + 1);
          EXPECT_EQ(batch.events(i).loss().step(), sequence);
          stored_ = sequence;
        }
        if (session == 1 && stored_ >= 3) {
          v1::SchedulerMessage stale;
          stale.mutable_ack()->set_job_id("j-1");
          stale.mutable_ack()->set_worker_sequence(6);
          stale.mutable_ack()->set_attempt(1);
          stream->Write(stale);
          v1::SchedulerMessage ack;
          ack.mutable_ack()->set_job_id("j-1");
          ack.mutable_ack()->set_worker_sequence(3);
          ack.mutable_ack()->set_attempt(2);
          stream->Write(ack);
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scheduler restarting");
        }
        v1::SchedulerMessage ack;
        ack.mutable_ack()->set_job_id("j-1");
        ack.mutable_ack()->set_worker_sequence(stored_);
        ack.mutable_ack()->set_attempt(batch.attempt());
        stream->Write(ack);
      } else if (message.has_finished()) {
        finished_.set_value(message.finished());
      } else if (message.has_heartbeat()) {
        ++heartbeats_;
      }
    }
    return grpc::Status::OK;
  }

  std::atomic<int> sessions_{0};
  std::atomic<int> heartbeats_{0};
  std::vector<v1::Hello> hellos_;
  std::string authorization_;
  int64_t stored_ = 0;
  std::promise<v1::JobFinished> finished_;
};

TEST(SchedulerLinkTest, ResendsUnacknowledgedEventsAfterReconnectAndDeliversTheFinish) {
  ScriptedScheduler scheduler;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&scheduler);
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  EventOutbox outbox(1000, ::testing::TempDir() + "/link_outbox");
  std::promise<void> assigned;
  LinkOptions options;
  options.scheduler_address = "127.0.0.1:" + std::to_string(port);
  options.token = "worker-secret";
  options.worker_id = "node1-cpu";
  options.min_backoff = 10ms;
  options.devices = [] { return std::vector<v1::Device>{CpuDevice()}; };
  LinkCallbacks callbacks;
  SchedulerLink* link_ptr = nullptr;
  callbacks.on_assignment = [&](const v1::Assignment& assignment) {
    EXPECT_EQ(assignment.job().job_id(), "j-1");
    outbox.StartAttempt("j-1", assignment.job().attempt());
    for (int i = 1; i <= 6; ++i) outbox.Add("j-1", Step(i));
    link_ptr->Notify();
    assigned.set_value();
  };
  callbacks.running_jobs = [] {
    v1::RunningJob job;
    job.set_job_id("j-1");
    job.set_attempt(2);
    return std::vector<v1::RunningJob>{job};
  };
  SchedulerLink link(options, callbacks, &outbox);
  link_ptr = &link;
  link.Start();

  ASSERT_EQ(assigned.get_future().wait_for(10s), std::future_status::ready);
  // Wait until the second session has stored everything, then finish the job.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (outbox.acked("j-1") < 6 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(outbox.acked("j-1"), 6);
  v1::JobFinished finished;
  finished.set_job_id("j-1");
  finished.set_state(v1::JOB_STATE_SUCCEEDED);
  finished.set_attempt(2);
  link.Finish(finished);
  auto delivered = scheduler.finished_.get_future();
  ASSERT_EQ(delivered.wait_for(10s), std::future_status::ready);
  const v1::JobFinished got = delivered.get();
  EXPECT_EQ(got.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(got.attempt(), 2);
  link.Stop();
  server->Shutdown();

  EXPECT_EQ(scheduler.stored_, 6);
  ASSERT_GE(scheduler.hellos_.size(), 2u);
  EXPECT_EQ(scheduler.hellos_[0].worker_id(), "node1-cpu");
  ASSERT_EQ(scheduler.hellos_[0].devices_size(), 1);
  EXPECT_EQ(scheduler.hellos_[0].devices(0).id(), "cpu");
  ASSERT_EQ(scheduler.hellos_[1].running_jobs_size(), 1);
  EXPECT_EQ(scheduler.hellos_[1].running_jobs(0).acked_sequence(), 3)
      << "an ack of another attempt was taken for this one's";
  EXPECT_EQ(scheduler.hellos_[1].running_jobs(0).attempt(), 2);
  EXPECT_EQ(scheduler.authorization_, "Bearer worker-secret");
}

}  // namespace
}  // namespace quantd::link
