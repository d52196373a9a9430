// Helpers for tests and benchmarks that talk to a real quantd process over loopback gRPC:
// starting/killing the process, a scripted fake worker, a watcher, and an HTTP GET.
// Every wait takes a deadline; nothing sleeps to wait for things.
#ifndef QUANTD_TESTS_SERVER_HARNESS_H_
#define QUANTD_TESTS_SERVER_HARNESS_H_

#include <sys/types.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "quantd/v1/quantize_service.grpc.pb.h"
#include "quantd/v1/worker_service.grpc.pb.h"

namespace quantd::testing {

// A quantd child process listening on loopback ports chosen by the kernel.
class QuantdProcess {
 public:
  // Runs `binary` with `args` plus --metrics_listen on port 0 (and --listen on port 0 unless
  // `args` has a --listen) and waits (up to
  // `timeout`) for its ready line. Its stderr goes to `log_path`.
  static absl::StatusOr<std::unique_ptr<QuantdProcess>> Start(
      const std::string& binary, std::vector<std::string> args, const std::string& log_path,
      absl::Duration timeout = absl::Seconds(30));
  ~QuantdProcess();  // SIGKILL when still running

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }

  void Kill();  // SIGKILL and reap
  // SIGTERM and reap; the exit code, or -1 when it did not exit within `timeout`.
  int Terminate(absl::Duration timeout);

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
};

// The path of the quantd binary in the build tree.
std::string QuantdBinary();

// A context with "authorization: Bearer <token>" (none when token is empty) and a deadline.
std::unique_ptr<grpc::ClientContext> Context(const std::string& token,
                                             absl::Duration deadline = absl::Seconds(10));

v1::JobSpec MinimalSpec();

// A worker speaking WorkerService.Connect from a script (a callback-API client reactor).
class FakeWorker : public grpc::ClientBidiReactor<v1::WorkerMessage, v1::SchedulerMessage> {
 public:
  FakeWorker(const std::string& address, std::string token, std::string worker_id, int devices = 1);
  ~FakeWorker() override;  // cancels the stream and waits for it to end

  // Opens the stream and sends Hello (with `running` jobs).
  void Connect(const std::vector<v1::RunningJob>& running = {});
  // Queues a message; false once the stream ended.
  bool Send(const v1::WorkerMessage& message);
  // `attempt` unset: as a worker that predates the field.
  bool SendEvents(const std::string& job_id, int64_t first_worker_sequence, int count,
                  const std::function<void(int64_t, v1::JobEvent*)>& fill = nullptr,
                  std::optional<int32_t> attempt = std::nullopt);
  bool SendFinished(const std::string& job_id, v1::JobState state,
                    std::optional<int32_t> attempt = std::nullopt);
  bool SendHeartbeat();

  // The first not yet taken message that matches, waiting up to `timeout`.
  std::optional<v1::SchedulerMessage> Take(
      const std::function<bool(const v1::SchedulerMessage&)>& match, absl::Duration timeout);
  std::optional<v1::Assignment> TakeAssignment(absl::Duration timeout);
  // Waits for an EventsAck of `job_id` covering `worker_sequence`.
  bool WaitAck(const std::string& job_id, int64_t worker_sequence, absl::Duration timeout);

  // Drops the connection without a goodbye (a crashed worker).
  void Vanish();
  // Waits for the stream to end and returns its status.
  grpc::Status Finish(absl::Duration timeout);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  const std::string token_;
  const std::string worker_id_;
  const int devices_;
  grpc::ClientContext context_;
  v1::SchedulerMessage incoming_;
  bool started_ = false;
  absl::Mutex mu_;
  std::deque<v1::WorkerMessage> outgoing_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::SchedulerMessage> received_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> taken_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// WatchJob on a callback-API client reactor, collecting events.
class Watcher : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  Watcher(const std::string& address, const std::string& token, const std::string& job_id,
          int64_t after_sequence);
  ~Watcher() override;  // cancels and waits for the end

  // Waits until an event with sequence >= `sequence` arrived.
  bool WaitForSequence(int64_t sequence, absl::Duration timeout);
  // Waits for the stream to end; nullopt on timeout.
  std::optional<grpc::Status> WaitDone(absl::Duration timeout);
  std::vector<v1::JobEvent> events() const;
  // Sequence of the newest event received (0 when none).
  int64_t last_sequence() const;
  void Cancel();
  // Stops reading after the event being read now (a slow client); Resume() reads again.
  void Pause();
  void Resume();

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::QuantizeService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> context_;
  v1::WatchJobRequest request_;
  v1::JobEvent incoming_;
  mutable absl::Mutex mu_;
  std::vector<v1::JobEvent> events_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> status_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
};

// A loopback TCP port that was free a moment ago (for a server that must keep its port
// across restarts); 0 on failure.
int FreePort();

// grpc.health.v1.Health/Check of `service` ("" = the server): 1 SERVING, 2 NOT_SERVING.
absl::StatusOr<int> HealthStatus(const std::string& address, const std::string& service);

// GET http://127.0.0.1:<port><path>; the body.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

}  // namespace quantd::testing

#endif  // QUANTD_TESTS_SERVER_HARNESS_H_
