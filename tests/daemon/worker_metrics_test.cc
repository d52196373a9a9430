#include "worker/daemon/worker_metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quantd::daemon {
namespace {

using ::testing::HasSubstr;

v1::JobEvent Phase(v1::Phase phase) {
  v1::JobEvent event;
  event.mutable_phase_change()->set_phase(phase);
  return event;
}

v1::JobEvent Loss(int step, const std::string& split = "train", int block = 0,
                  v1::Phase phase = v1::PHASE_FINETUNE) {
  v1::JobEvent event;
  event.mutable_loss()->set_step(step);
  event.mutable_loss()->set_split(split);
  event.mutable_loss()->set_block(block);
  event.mutable_loss()->set_phase(phase);
  return event;
}

TEST(WorkerMetricsTest, TracksJobsPhasesStepsAndDevices) {
  WorkerMetrics metrics;
  v1::Device gpu;
  gpu.set_id("cuda:0");
  gpu.set_total_memory_bytes(int64_t{80} << 30);
  gpu.set_free_memory_bytes(int64_t{70} << 30);
  metrics.SetDevices({gpu});
  metrics.SetConnected(true);
  metrics.OnJobStarted("j-1");
  metrics.OnJobEvent("j-1", Phase(v1::PHASE_FINETUNE));
  for (int step = 0; step < 3; ++step) metrics.OnJobEvent("j-1", Loss(step));
  std::string text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("quantd_worker_jobs_running 1"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_jobs_in_phase{phase=\"finetune\"} 1"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_steps_total 3"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_step_duration_seconds_count 2"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_job_events_total 4"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_scheduler_connected 1"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_device_memory_bytes{device=\"cuda:0\",kind=\"total\"} "
                              "85899345920"));
  metrics.OnJobFinished("j-1", v1::JOB_STATE_SUCCEEDED);
  text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("quantd_worker_jobs_running 0"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_jobs_in_phase{phase=\"finetune\"} 0"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_jobs_finished_total{outcome=\"succeeded\"} 1"));
  EXPECT_EQ(text.find("j-1"), std::string::npos) << "no job ids as labels";
}

// The step histogram times training steps only: not evaluation loss points (they come in
// bursts), not the gap into a new block or phase (set-up, not a step).
TEST(WorkerMetricsTest, StepDurationsAreTrainingStepsWithinABlock) {
  WorkerMetrics metrics;
  metrics.OnJobStarted("j-1");
  metrics.OnJobEvent("j-1", Phase(v1::PHASE_TRAIN_PREFIX));
  metrics.OnJobEvent("j-1", Loss(0, "train", -1, v1::PHASE_TRAIN_PREFIX));
  metrics.OnJobEvent("j-1", Loss(1, "train", -1, v1::PHASE_TRAIN_PREFIX));  // 1 duration
  metrics.OnJobEvent("j-1", Loss(1, "val", -1, v1::PHASE_TRAIN_PREFIX));    // not a step
  metrics.OnJobEvent("j-1", Phase(v1::PHASE_FINETUNE));
  metrics.OnJobEvent("j-1", Loss(0, "train", 0));  // first of a phase
  metrics.OnJobEvent("j-1", Loss(1, "train", 0));  // 2 durations
  metrics.OnJobEvent("j-1", Loss(2, "train", 1));  // first of a block
  metrics.OnJobEvent("j-1", Loss(3, "train", 1));  // 3 durations
  metrics.OnJobEvent("j-1", Phase(v1::PHASE_EVALUATE));
  for (int i = 0; i < 4; ++i) metrics.OnJobEvent("j-1", Loss(i, "eval", 0, v1::PHASE_EVALUATE));
  const std::string text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("quantd_worker_steps_total 6"));
  EXPECT_THAT(text, HasSubstr("quantd_worker_step_duration_seconds_count 3"));
}

// One HTTP request to 127.0.0.1:port; the whole response.
std::string HttpGet(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "";
  (void)!::send(fd, request.data(), request.size(), 0);
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
  ::close(fd);
  return response;
}

TEST(WorkerMetricsTest, ServesOnAnEphemeralPort) {
  WorkerMetrics metrics;
  ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());
  EXPECT_GT(metrics.port(), 0);
  metrics.OnJobStarted("j-9");
  const std::string ok = HttpGet(metrics.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(ok, HasSubstr("HTTP/1.0 200 OK"));
  EXPECT_THAT(ok, HasSubstr("quantd_worker_jobs_running 1"));
  EXPECT_THAT(HttpGet(metrics.port(), "GET /secret HTTP/1.0\r\n\r\n"), HasSubstr("404"));
  EXPECT_EQ(HttpGet(metrics.port(), "garbage without end"), "");  // dropped after 2 s
  EXPECT_FALSE(metrics.Serve("not-an-address").ok());
  WorkerMetrics second;
  EXPECT_EQ(second.Serve("127.0.0.1:" + std::to_string(metrics.port())).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace quantd::daemon
