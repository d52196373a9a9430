// Training jobs through real quantd + quantd-worker processes on loopback (stories260K): a
// watcher sees the prefix-training and fine-tuning loss points live, in order; a worker killed
// during fine-tuning is replaced by one on the same work dir, and the requeued job resumes at the
// next unfinished block with the final perplexity of an uninterrupted run.
#include <filesystem>
#include <map>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "quantd/v1/quantize_service.grpc.pb.h"
#include "tests/common/stories_job.h"
#include "tests/e2e/processes.h"
#include "tests/e2e/scheduler_calls.h"

namespace quantd::e2e {
namespace {

using namespace std::chrono_literals;

const std::string kQuantd = std::string(QUANTD_BINARY_DIR) + "/server/quantd";
const std::string kWorker = std::string(QUANTD_BINARY_DIR) + "/worker/quantd-worker";
const std::string kData = QUANTD_SHARED_DATA;
constexpr char kPpl[] = "ppl/tinystories-valid-subset.txt/quantized";

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

class TrainingE2ETest : public ::testing::Test {
 protected:
  // Workers are declared lost after 10 s without a heartbeat (not 3 s as in worker_e2e_test), so
  // that on a loaded machine the replacement worker is not itself dropped before its first
  // heartbeat: these tests are about training, not about heartbeats.
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/quantd_train_e2e_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto process =
        Process::Start({kQuantd, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                        "--db=" + dir_ + "/quantd.db", "--heartbeat_interval=1s",
                        "--worker_lost_after=10s", "--reattach_grace=30s", "--shutdown_grace=1s"},
                       dir_ + "/quantd.log");
    ASSERT_TRUE(process.ok()) << process.status();
    scheduler_ = std::move(*process);
    const auto port = WaitForOutput(*scheduler_, "ready port=([0-9]+)", 20s);
    ASSERT_TRUE(port.has_value()) << scheduler_->Output();
    port_ = *port;
    stub_ = v1::QuantizeService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + port_, grpc::InsecureChannelCredentials()));
  }

  // A worker `id` keeping its job folders under <dir>/<work>.
  std::unique_ptr<Process> StartWorker(const std::string& id, const std::string& work,
                                       const std::map<std::string, std::string>& env = {}) {
    auto process = Process::Start(
        {kWorker, "connect", "--scheduler=127.0.0.1:" + port_, "--work_dir=" + dir_ + "/" + work,
         "--worker_id=" + id, "--cancel_grace_seconds=2", "--metrics_listen=127.0.0.1:0"},
        dir_ + "/" + id + ".log", env);
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? std::move(*process) : nullptr;
  }

  // W4A8KV8 static with a trained prefix and 2 fine-tuning epochs: 2 steps per epoch and block.
  static v1::JobSpec Spec() {
    test_data::StoriesJobShape shape;
    shape.wbits = 4;
    shape.validation_windows = 2;
    shape.training_seqlen = 128;
    shape.eval_windows = 4;
    v1::JobSpec spec = test_data::StoriesQuantSpec(kData + "/models/stories260K", shape);
    spec.mutable_quant()->set_mse_init(false);
    spec.mutable_rotation()->set_qk_online_had(false);
    spec.mutable_eval()->set_eval_ppl(false);
    spec.mutable_prefix()->set_trainable(true);
    spec.mutable_prefix()->set_epochs(2);
    spec.mutable_prefix()->set_lr(1e-2);
    spec.mutable_training()->set_epochs(2);
    spec.mutable_training()->set_quant_lr(5e-3);
    spec.mutable_training()->set_weight_lr(1e-3);
    spec.mutable_training()->set_batch_size(4);
    return spec;
  }

  std::string Submit(const v1::JobSpec& spec) { return SubmitJob(*stub_, spec); }
  v1::Job Get(const std::string& job_id) { return GetJob(*stub_, job_id); }

  // Reads the job's events from the start; `on_event` sees each as it arrives and may return
  // false to stop reading.
  // Feeds the job's events to `on_event` until it returns false (then true), or the stream
  // ends or `timeout` passes (then false).
  bool Watch(const std::string& job_id, std::chrono::milliseconds timeout,
             const std::function<bool(const v1::JobEvent&)>& on_event) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    auto reader = stub_->WatchJob(&context, request);
    v1::JobEvent event;
    bool stopped = false;
    while (!stopped && reader->Read(&event)) {
      if (!on_event(event)) {
        context.TryCancel();
        stopped = true;
      }
    }
    reader->Finish();
    return stopped;
  }

  std::string dir_;
  std::string port_;
  std::unique_ptr<Process> scheduler_;
  std::unique_ptr<v1::QuantizeService::Stub> stub_;
};

TEST_F(TrainingE2ETest, WatcherSeesLossPointsLiveAndInOrder) {
  auto worker = StartWorker("w1", "w1", {{"QUANTD_TEST_EVENT_DELAY_MS", "20"}});
  const std::string job_id = Submit(Spec());
  // (phase, block) -> last step seen
  std::map<std::pair<int, int>, int64_t> last_step;
  int prefix_points = 0, finetune_points = 0, seen_while_running = 0;
  v1::JobState final_state = v1::JOB_STATE_UNSPECIFIED;
  Watch(job_id, 180s, [&](const v1::JobEvent& event) {
    if (event.has_loss() && event.loss().split() == "train" &&
        event.loss().phase() != v1::PHASE_EVALUATE) {
      const auto key = std::make_pair(static_cast<int>(event.loss().phase()), event.loss().block());
      auto it = last_step.find(key);
      if (it != last_step.end()) {
        EXPECT_GT(event.loss().step(), it->second);
      }
      last_step[key] = event.loss().step();
      (event.loss().phase() == v1::PHASE_TRAIN_PREFIX ? prefix_points : finetune_points)++;
      // Live: the job is still running when its loss point reaches the watcher.
      if (prefix_points + finetune_points <= 3 || event.loss().block() == 2) {
        if (Get(job_id).state() == v1::JOB_STATE_RUNNING) ++seen_while_running;
      }
    }
    if (event.has_state_change() && IsTerminal(event.state_change().to())) {
      final_state = event.state_change().to();
      return false;
    }
    return true;
  });
  EXPECT_EQ(final_state, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(prefix_points, 4);           // 2 epochs x 2 steps
  EXPECT_EQ(finetune_points, 5 * 4);     // 5 blocks x 2 epochs x 2 steps
  EXPECT_EQ(seen_while_running, 3 + 4);  // the first three points and block 2's four
  // Blocks arrive in order: block b's points all come before block b + 1's.
  for (int b = 0; b < 5; ++b) {
    EXPECT_EQ(last_step.at({v1::PHASE_FINETUNE, b}), 3) << "block " << b;
  }
}

TEST_F(TrainingE2ETest, WorkerKilledDuringFinetuningResumesAtTheNextBlock) {
  auto worker = StartWorker("w1", "shared", {{"QUANTD_TEST_EVENT_DELAY_MS", "100"}});
  const std::string job_id = Submit(Spec());
  // Kill the worker (and with it the job process) once block 2 is being trained. Without the
  // assertion a slow machine would kill it earlier and fail below with a puzzling figure.
  ASSERT_TRUE(Watch(job_id, 240s,
                    [&](const v1::JobEvent& event) {
                      return !(event.has_loss() && event.loss().phase() == v1::PHASE_FINETUNE &&
                               event.loss().block() >= 2);
                    }))
      << "no fine-tuning loss of block 2 or later within 240 s; job state "
      << v1::JobState_Name(Get(job_id).state());
  worker->Kill();
  // A new worker on the same work dir (as after a node restart) gets the requeued job.
  auto replacement = StartWorker("w2", "shared");
  ASSERT_TRUE(WaitFor([&] { return IsTerminal(Get(job_id).state()); }, 180s));
  const v1::Job job = Get(job_id);
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.worker_id(), "w2");
  const auto& metrics = job.result().metrics();
  const double resumed_at = metrics.at("finetune/resumed_at_block");
  EXPECT_GE(resumed_at, 2);
  EXPECT_LT(resumed_at, 5);
  bool lost = false, resumed_log = false;
  EXPECT_TRUE(Watch(job_id, 60s, [&](const v1::JobEvent& event) {
    if (event.has_state_change() &&
        event.state_change().failure().reason() == v1::FAILURE_REASON_WORKER_LOST) {
      lost = true;
    }
    if (event.has_log() &&
        event.log().message().find("fine-tuning resumed at block") != std::string::npos) {
      resumed_log = true;
    }
    return !(event.has_state_change() && IsTerminal(event.state_change().to()));
  })) << "the replayed event log did not reach the job's end within 60 s";
  EXPECT_TRUE(lost);
  EXPECT_TRUE(resumed_log);

  // The same spec uninterrupted (a new job: its own folder, no checkpoint).
  const std::string reference_id = Submit(Spec());
  ASSERT_TRUE(WaitFor([&] { return IsTerminal(Get(reference_id).state()); }, 180s));
  const v1::Job reference = Get(reference_id);
  ASSERT_EQ(reference.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(reference.result().metrics().at("finetune/resumed_at_block"), 0);
  const double expected = reference.result().metrics().at(kPpl);
  EXPECT_NEAR(metrics.at(kPpl), expected, 1e-4 * expected);
}

}  // namespace
}  // namespace quantd::e2e
