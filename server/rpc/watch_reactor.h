// The server-streaming reactor of WatchJob: a WatchSession written to the wire, one event
// per write, with no thread of its own. It ends the stream with OK after the terminal
// event, RESOURCE_EXHAUSTED when the client reads too slowly, CANCELLED when the client
// goes away, or UNAVAILABLE on Stop() (server shutdown).
//
// Created by QuantizeServiceImpl::WatchJob; deletes itself in OnDone.
#ifndef QUANTD_SERVER_RPC_WATCH_REACTOR_H_
#define QUANTD_SERVER_RPC_WATCH_REACTOR_H_

#include <deque>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_callback.h"
#include "quantd/v1/job.pb.h"
#include "server/core/watch_session.h"

namespace quantd {

class WatchReactor : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  WatchReactor(JobStore* store, EventBus* bus, const std::string& job_id, int64_t after_sequence,
               int64_t terminal_at, size_t max_buffered);

  // Begins replaying. Call once, right after construction.
  void Begin();

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishOnce(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  WatchSession session_;
  absl::Mutex mu_;
  std::deque<EventPtr> ready_ ABSL_GUARDED_BY(mu_);
  EventPtr in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// A write reactor that fails at once (bad request, no access).
class FailedWriteReactor : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  explicit FailedWriteReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace quantd

#endif  // QUANTD_SERVER_RPC_WATCH_REACTOR_H_
