#include "server/rpc/watch_reactor.h"

#include <vector>

#include "server/rpc/status.h"

namespace quantd {

WatchReactor::WatchReactor(JobStore* store, EventBus* bus, const std::string& job_id,
                           int64_t after_sequence, int64_t terminal_at, size_t max_buffered)
    : session_(store, bus, job_id, after_sequence, terminal_at, max_buffered, [this] {
        absl::MutexLock lock(&mu_);
        Pump();
      }) {}

void WatchReactor::Begin() {
  session_.Start();
  absl::MutexLock lock(&mu_);
  Pump();
}

void WatchReactor::Pump() {
  if (finished_ || writing_) return;
  if (ready_.empty()) {
    std::vector<EventPtr> batch;
    switch (session_.Poll(&batch)) {
      case WatchSession::Next::kEvents:
        ready_.assign(batch.begin(), batch.end());
        break;
      case WatchSession::Next::kWait:
        return;
      case WatchSession::Next::kEnd:
        FinishOnce(grpc::Status::OK);
        return;
      case WatchSession::Next::kError:
        FinishOnce(ToGrpcStatus(session_.status()));
        return;
    }
  }
  in_flight_ = std::move(ready_.front());
  ready_.pop_front();
  writing_ = true;
  StartWrite(in_flight_.get());
}

void WatchReactor::FinishOnce(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

void WatchReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  in_flight_.reset();
  if (!ok) {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    return;
  }
  Pump();
}

void WatchReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  if (!writing_) FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void WatchReactor::OnDone() {
  session_.Stop();  // no wake-up after this
  // The thread that called Finish() may still be leaving Pump(): wait for it.
  { absl::MutexLock lock(&mu_); }
  delete this;
}

}  // namespace quantd
