#include "server/rpc/worker_service.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/rpc/status.h"
#include "spdlog/spdlog.h"

namespace quantd {
namespace {

using ConnectReactorBase = grpc::ServerBidiReactor<v1::WorkerMessage, v1::SchedulerMessage>;

// Event batches of one stream that may wait for their commit before the stream stops
// reading (and gRPC flow control slows the worker down).
constexpr int kMaxPendingIngests = 32;

// The write side of one stream, as the Scheduler's WorkerLink, plus the read back-pressure
// on uncommitted event batches. Outlives the reactor when commit callbacks still hold it;
// after Detach() it drops everything.
class Outbox : public WorkerLink {
 public:
  // `read_target` is the reactor's message that StartRead fills; `peer` the worker's address.
  Outbox(ConnectReactorBase* reactor, v1::WorkerMessage* read_target, std::string peer)
      : reactor_(reactor), read_target_(read_target), peer_(std::move(peer)) {}

  void BeginIngest() {
    absl::MutexLock lock(&mu_);
    ++pending_ingests_;
  }

  // True when the reactor should not start the next read now; EndIngest() starts it later.
  bool PauseReading() {
    absl::MutexLock lock(&mu_);
    if (pending_ingests_ < kMaxPendingIngests) return false;
    read_paused_ = true;
    return true;
  }

  void EndIngest() {
    absl::MutexLock lock(&mu_);
    --pending_ingests_;
    if (!read_paused_ || pending_ingests_ >= kMaxPendingIngests) return;
    read_paused_ = false;
    if (reactor_ != nullptr && !closing_.has_value()) reactor_->StartRead(read_target_);
  }

  void Send(const v1::SchedulerMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr || closing_.has_value()) return;
    queue_.push_back(message);
    MaybeWrite();
  }

  void Close(const absl::Status& status) override { Finish(ToGrpcStatus(status)); }

  std::string peer() const override { return peer_; }

  // Ends the stream after the write in flight, dropping queued messages.
  void Finish(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr || closing_.has_value()) return;
    closing_ = status;
    if (!writing_) reactor_->Finish(status);
  }

  void WriteDone(bool ok) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!queue_.empty()) queue_.pop_front();
    if (reactor_ == nullptr) return;
    if (!ok && !closing_.has_value()) {
      closing_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed");
    }
    if (closing_.has_value()) {
      reactor_->Finish(*closing_);
      return;
    }
    MaybeWrite();
  }

  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
    queue_.clear();
  }

 private:
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || queue_.empty()) return;
    writing_ = true;
    reactor_->StartWrite(&queue_.front());
  }

  absl::Mutex mu_;
  ConnectReactorBase* reactor_ ABSL_GUARDED_BY(mu_);
  v1::WorkerMessage* const read_target_;
  const std::string peer_;
  int pending_ingests_ ABSL_GUARDED_BY(mu_) = 0;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::SchedulerMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> closing_ ABSL_GUARDED_BY(mu_);
};

class ConnectReactor : public ConnectReactorBase {
 public:
  ConnectReactor(Scheduler* scheduler, absl::Status auth, std::string peer)
      : scheduler_(scheduler),
        outbox_(std::make_shared<Outbox>(this, &incoming_, std::move(peer))) {
    if (!auth.ok()) {
      outbox_->Close(auth);
      return;
    }
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker closed its side or the stream broke
      outbox_->Finish(grpc::Status::OK);
      return;
    }
    absl::Status status = Handle(incoming_);
    if (!status.ok()) {
      spdlog::warn("worker {}: {}", worker_id_.empty() ? "(no hello)" : worker_id_,
                   status.ToString());
      outbox_->Close(status);
      return;
    }
    if (outbox_->PauseReading()) return;
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override { outbox_->WriteDone(ok); }

  // Needed when no read is outstanding (paused by back-pressure) as the call goes away.
  void OnCancel() override {
    outbox_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    if (!worker_id_.empty()) {
      scheduler_->DisconnectWorker(worker_id_, outbox_.get());
      spdlog::info("worker {} disconnected (was connected from {})", worker_id_, outbox_->peer());
    }
    outbox_->Detach();
    delete this;
  }

 private:
  absl::Status Handle(const v1::WorkerMessage& message) {
    if (worker_id_.empty()) {
      if (!message.has_hello()) {
        return absl::InvalidArgumentError("the first message must be a Hello");
      }
      absl::Status status = scheduler_->ConnectWorker(message.hello(), outbox_.get());
      if (!status.ok()) return status;
      worker_id_ = message.hello().worker_id();
      spdlog::info("worker {} connected ({} devices, {} running jobs) from {}", worker_id_,
                   message.hello().devices_size(), message.hello().running_jobs_size(),
                   outbox_->peer());
      return absl::OkStatus();
    }
    switch (message.kind_case()) {
      case v1::WorkerMessage::kHello:
        return absl::InvalidArgumentError("hello: sent twice on one stream");
      case v1::WorkerMessage::kHeartbeat:
        return scheduler_->Heartbeat(worker_id_, outbox_.get(), message.heartbeat());
      case v1::WorkerMessage::kEvents: {
        std::shared_ptr<Outbox> outbox = outbox_;
        const std::string worker_id = worker_id_;
        const std::string job_id = message.events().job_id();
        const std::optional<int32_t> attempt =
            message.events().has_attempt() ? std::optional<int32_t>(message.events().attempt())
                                           : std::nullopt;
        outbox->BeginIngest();
        scheduler_->IngestEvents(
            worker_id_, outbox_.get(), message.events(),
            [outbox, worker_id, job_id, attempt](absl::StatusOr<int64_t> ack) {
              outbox->EndIngest();
              v1::SchedulerMessage reply;
              if (ack.ok()) {
                reply.mutable_ack()->set_job_id(job_id);
                reply.mutable_ack()->set_worker_sequence(*ack);
                if (attempt.has_value()) reply.mutable_ack()->set_attempt(*attempt);
              } else if (absl::IsFailedPrecondition(ack.status())) {
                // Not this worker's job (any more): tell it to stop.
                reply.mutable_cancellation()->set_job_id(job_id);
                reply.mutable_cancellation()->set_reason(std::string(ack.status().message()));
              } else if (absl::IsInvalidArgument(ack.status())) {
                // A batch no worker sends (e.g. an absurd worker sequence): acknowledging it
                // would hide the fault, ignoring it would leave the worker waiting.
                spdlog::warn("worker {}: {}", worker_id, ack.status().ToString());
                outbox->Close(ack.status());
                return;
              } else {
                return;
              }
              outbox->Send(reply);
            });
        return absl::OkStatus();
      }
      case v1::WorkerMessage::kFinished: {
        // Once recorded, an EventsAck of the job (the worker sent the finish after its last
        // event was acknowledged, so this one acknowledges the finish).
        std::shared_ptr<Outbox> outbox = outbox_;
        v1::SchedulerMessage ack;
        ack.mutable_ack()->set_job_id(message.finished().job_id());
        if (message.finished().has_attempt()) {
          ack.mutable_ack()->set_attempt(message.finished().attempt());
        }
        absl::Status status =
            scheduler_->FinishJob(worker_id_, outbox_.get(), message.finished(),
                                  [outbox, ack](int64_t worker_sequence) mutable {
                                    ack.mutable_ack()->set_worker_sequence(worker_sequence);
                                    outbox->Send(ack);
                                  });
        if (absl::IsInvalidArgument(status)) return status;
        if (!status.ok()) spdlog::warn("worker {}: {}", worker_id_, status.ToString());
        return absl::OkStatus();
      }
      case v1::WorkerMessage::kRejected: {
        absl::Status status =
            scheduler_->RejectAssignment(worker_id_, outbox_.get(), message.rejected());
        if (!status.ok()) spdlog::warn("worker {}: {}", worker_id_, status.ToString());
        return absl::OkStatus();
      }
      default:
        return absl::InvalidArgumentError("worker message: empty");
    }
  }

  Scheduler* const scheduler_;
  std::shared_ptr<Outbox> outbox_;
  std::string worker_id_;  // set by the Hello; read and written by the read chain only
  v1::WorkerMessage incoming_;
};

}  // namespace

grpc::ServerBidiReactor<v1::WorkerMessage, v1::SchedulerMessage>* WorkerServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  absl::Status auth = auth_->AuthenticateWorker(*context).status();
  if (!auth.ok()) {
    // The message never includes the token.
    spdlog::warn("refused a worker connection from {}: {}", context->peer(),
                 std::string(auth.message()));
  }
  return new ConnectReactor(scheduler_, std::move(auth), context->peer());
}

}  // namespace quantd
