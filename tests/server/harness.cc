#include "tests/server/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/generic/generic_stub.h"

namespace quantd::testing {
namespace {

// Reaps `pid`, waiting up to `timeout` for it to exit (on a pidfd, no polling loop); the
// exit code, 128+signal, or -1 on timeout.
int Reap(pid_t pid, absl::Duration timeout) {
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd fd{pidfd, POLLIN, 0};
    const int ready = poll(&fd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    close(pidfd);
    if (ready <= 0) return -1;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::string QuantdBinary() { return std::string(QUANTD_BINARY_DIR) + "/server/quantd"; }

absl::StatusOr<std::unique_ptr<QuantdProcess>> QuantdProcess::Start(const std::string& binary,
                                                                    std::vector<std::string> args,
                                                                    const std::string& log_path,
                                                                    absl::Duration timeout) {
  bool has_listen = false;
  for (const std::string& arg : args) has_listen |= arg.rfind("--listen=", 0) == 0;
  args.insert(args.begin(), binary);
  if (!has_listen) args.push_back("--listen=127.0.0.1:0");
  args.push_back("--metrics_listen=127.0.0.1:0");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(pipe_fds[1], STDOUT_FILENO);
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) dup2(log, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  auto process = std::unique_ptr<QuantdProcess>(new QuantdProcess);
  process->pid_ = pid;
  process->stdout_fd_ = pipe_fds[0];

  std::string line;
  const absl::Time deadline = absl::Now() + timeout;
  while (line.find('\n') == std::string::npos) {
    const int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (wait_ms <= 0)
      return absl::DeadlineExceededError("quantd did not get ready; see " + log_path);
    pollfd fd{process->stdout_fd_, POLLIN, 0};
    if (poll(&fd, 1, wait_ms) <= 0) continue;
    char buffer[256];
    const ssize_t n = read(process->stdout_fd_, buffer, sizeof(buffer));
    if (n <= 0) return absl::UnavailableError("quantd exited before it was ready; see " + log_path);
    line.append(buffer, n);
  }
  // "quantd ready port=<p> metrics_port=<m>"
  const size_t port_at = line.find("port=");
  const size_t metrics_at = line.find("metrics_port=");
  if (port_at == std::string::npos || metrics_at == std::string::npos ||
      !absl::SimpleAtoi(line.substr(port_at + 5, line.find(' ', port_at) - port_at - 5),
                        &process->port_) ||
      !absl::SimpleAtoi(line.substr(metrics_at + 13, line.find('\n') - metrics_at - 13),
                        &process->metrics_port_)) {
    return absl::InternalError("unexpected ready line: " + line);
  }
  return process;
}

QuantdProcess::~QuantdProcess() {
  Kill();
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

void QuantdProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  Reap(pid_, absl::Seconds(10));
  pid_ = -1;
}

int QuantdProcess::Terminate(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const int code = Reap(pid_, timeout);
  if (code >= 0) pid_ = -1;
  return code;
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& token, absl::Duration deadline) {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return context;
}

v1::JobSpec MinimalSpec() {
  v1::JobSpec spec;
  spec.mutable_model()->set_path("/models/tiny-llama");
  spec.mutable_calibration()->set_dataset_path("/data/calibration.txt");
  return spec;
}

// ---------------------------------------------------------------- FakeWorker

FakeWorker::FakeWorker(const std::string& address, std::string token, std::string worker_id,
                       int devices)
    : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
      stub_(v1::WorkerService::NewStub(channel_)),
      token_(std::move(token)),
      worker_id_(std::move(worker_id)),
      devices_(devices) {}

FakeWorker::~FakeWorker() {
  if (!started_) return;
  context_.TryCancel();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&ended_));
}

void FakeWorker::Connect(const std::vector<v1::RunningJob>& running) {
  if (!token_.empty()) context_.AddMetadata("authorization", "Bearer " + token_);
  stub_->async()->Connect(&context_, this);
  v1::WorkerMessage hello;
  hello.mutable_hello()->set_worker_id(worker_id_);
  hello.mutable_hello()->set_hostname("localhost");
  hello.mutable_hello()->set_max_jobs(devices_);
  for (int i = 0; i < devices_; ++i) {
    v1::Device* device = hello.mutable_hello()->add_devices();
    device->set_id("cuda:" + std::to_string(i));
    device->set_total_memory_bytes(80LL << 30);
    device->set_free_memory_bytes(80LL << 30);
  }
  for (const auto& job : running) *hello.mutable_hello()->add_running_jobs() = job;
  Send(hello);
  StartRead(&incoming_);
  started_ = true;
  StartCall();
}

bool FakeWorker::Send(const v1::WorkerMessage& message) {
  absl::MutexLock lock(&mu_);
  if (ended_) return false;
  outgoing_.push_back(message);
  if (!writing_) {
    writing_ = true;
    StartWrite(&outgoing_.front());
  }
  return true;
}

void FakeWorker::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  outgoing_.pop_front();
  if (ok && !outgoing_.empty()) {
    StartWrite(&outgoing_.front());
  } else {
    writing_ = false;
    if (!ok) outgoing_.clear();
  }
}

void FakeWorker::OnReadDone(bool ok) {
  if (!ok) return;
  {
    absl::MutexLock lock(&mu_);
    received_.push_back(incoming_);
    taken_.push_back(false);
  }
  StartRead(&incoming_);
}

void FakeWorker::OnDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  status_ = status;
  ended_ = true;
}

bool FakeWorker::SendEvents(const std::string& job_id, int64_t first_worker_sequence, int count,
                            const std::function<void(int64_t, v1::JobEvent*)>& fill,
                            std::optional<int32_t> attempt) {
  v1::WorkerMessage message;
  v1::JobEvents* events = message.mutable_events();
  events->set_job_id(job_id);
  if (attempt.has_value()) events->set_attempt(*attempt);
  events->set_first_worker_sequence(first_worker_sequence);
  for (int i = 0; i < count; ++i) {
    v1::JobEvent* event = events->add_events();
    if (fill) {
      fill(first_worker_sequence + i, event);
    } else {
      v1::LossPoint* loss = event->mutable_loss();
      loss->set_phase(v1::PHASE_TRAIN_PREFIX);
      loss->set_step(first_worker_sequence + i);
      loss->set_loss(10.0 / (first_worker_sequence + i));
    }
  }
  return Send(message);
}

bool FakeWorker::SendFinished(const std::string& job_id, v1::JobState state,
                              std::optional<int32_t> attempt) {
  v1::WorkerMessage message;
  message.mutable_finished()->set_job_id(job_id);
  if (attempt.has_value()) message.mutable_finished()->set_attempt(*attempt);
  message.mutable_finished()->set_state(state);
  if (state == v1::JOB_STATE_SUCCEEDED) {
    (*message.mutable_finished()->mutable_result()->mutable_metrics())["ppl/test/quantized"] = 6.2;
  }
  return Send(message);
}

bool FakeWorker::SendHeartbeat() {
  v1::WorkerMessage message;
  message.mutable_heartbeat();
  return Send(message);
}

std::optional<v1::SchedulerMessage> FakeWorker::Take(
    const std::function<bool(const v1::SchedulerMessage&)>& match, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t checked = 0;
  absl::MutexLock lock(&mu_);
  while (true) {
    for (; checked < received_.size(); ++checked) {
      if (!taken_[checked] && match(received_[checked])) {
        taken_[checked] = true;
        return received_[checked];
      }
    }
    if (ended_) return std::nullopt;
    const size_t seen = received_.size();
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ended_ || received_.size() != seen;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline)) return std::nullopt;
  }
}

std::optional<v1::Assignment> FakeWorker::TakeAssignment(absl::Duration timeout) {
  auto message = Take([](const v1::SchedulerMessage& m) { return m.has_assignment(); }, timeout);
  if (!message) return std::nullopt;
  return message->assignment();
}

bool FakeWorker::WaitAck(const std::string& job_id, int64_t worker_sequence,
                         absl::Duration timeout) {
  return Take(
             [&](const v1::SchedulerMessage& m) {
               return m.has_ack() && m.ack().job_id() == job_id &&
                      m.ack().worker_sequence() >= worker_sequence;
             },
             timeout)
      .has_value();
}

void FakeWorker::Vanish() {
  context_.TryCancel();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&ended_));
}

grpc::Status FakeWorker::Finish(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(&ended_), timeout)) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "stream still open");
  }
  return status_;
}

// ---------------------------------------------------------------- Watcher

Watcher::Watcher(const std::string& address, const std::string& token, const std::string& job_id,
                 int64_t after_sequence)
    : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
      stub_(v1::QuantizeService::NewStub(channel_)),
      context_(Context(token, absl::Seconds(120))) {
  request_.set_job_id(job_id);
  request_.set_after_sequence(after_sequence);
  stub_->async()->WatchJob(context_.get(), &request_, this);
  {
    absl::MutexLock lock(&mu_);
    reading_ = true;
  }
  StartRead(&incoming_);
  StartCall();
}

void Watcher::Pause() {
  absl::MutexLock lock(&mu_);
  paused_ = true;
}

void Watcher::Resume() {
  {
    absl::MutexLock lock(&mu_);
    paused_ = false;
    if (reading_ || status_.has_value()) return;
    reading_ = true;
  }
  StartRead(&incoming_);
}

Watcher::~Watcher() {
  Cancel();
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.has_value(); };
  mu_.Await(absl::Condition(&done));
}

void Watcher::Cancel() { context_->TryCancel(); }

void Watcher::OnReadDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    if (!ok) return;
    events_.push_back(incoming_);
    if (paused_) return;
    reading_ = true;
  }
  StartRead(&incoming_);
}

void Watcher::OnDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  status_ = status;
}

bool Watcher::WaitForSequence(int64_t sequence, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return status_.has_value() || (!events_.empty() && events_.back().sequence() >= sequence);
  };
  mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  return !events_.empty() && events_.back().sequence() >= sequence;
}

std::optional<grpc::Status> Watcher::WaitDone(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return status_.has_value(); };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return status_;
}

std::vector<v1::JobEvent> Watcher::events() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

int64_t Watcher::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return events_.empty() ? 0 : events_.back().sequence();
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  return ntohs(address.sin_port);
}

// ---------------------------------------------------------------- health

absl::StatusOr<int> HealthStatus(const std::string& address, const std::string& service) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  // HealthCheckRequest{service = 1}, encoded by hand (no generated health stubs here).
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);
    request_bytes.push_back(static_cast<char>(service.size()));
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  auto context = Context("", absl::Seconds(10));
  absl::Mutex mu;
  std::optional<grpc::Status> status;
  stub.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status result) {
                   absl::MutexLock lock(&mu);
                   status = result;
                 });
  absl::MutexLock lock(&mu);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return status.has_value(); };
  mu.Await(absl::Condition(&done));
  if (!status->ok()) return absl::UnavailableError(status->error_message());
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::DataLossError("bad health response");
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status = 1}: 0x08 <status>; empty = UNKNOWN (0).
  if (bytes.size() >= 2 && bytes[0] == 0x08) return static_cast<int>(bytes[1]);
  return 0;
}

// ---------------------------------------------------------------- HTTP

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to port ", port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("write failed");
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return absl::DataLossError("no HTTP body");
  return response.substr(body + 4);
}

}  // namespace quantd::testing
