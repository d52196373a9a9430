// WorkerService.Connect on the callback API: one bidirectional reactor per worker stream.
//
// The first message must be a Hello (INVALID_ARGUMENT otherwise); the reactor then hands
// heartbeats, events, finished jobs and rejections to the Scheduler, and writes whatever
// the Scheduler sends through its WorkerLink (Welcome, assignments, cancellations, acks),
// one write at a time from a queue. Events are acknowledged (EventsAck, echoing the batch's
// attempt) only after they are committed, or at once when the Scheduler drops them as a
// stale attempt's; with more than 32 event batches of a stream waiting for their commit the
// reactor stops reading, so gRPC flow control slows the worker down. A worker token is
// required when authentication is on.
#ifndef QUANTD_SERVER_RPC_WORKER_SERVICE_H_
#define QUANTD_SERVER_RPC_WORKER_SERVICE_H_

#include "quantd/v1/worker_service.grpc.pb.h"
#include "server/core/scheduler.h"
#include "server/rpc/auth.h"

namespace quantd {

class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  // Not owned; must outlive the service.
  WorkerServiceImpl(Scheduler* scheduler, const Authenticator* auth)
      : scheduler_(scheduler), auth_(auth) {}

  grpc::ServerBidiReactor<v1::WorkerMessage, v1::SchedulerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Scheduler* const scheduler_;
  const Authenticator* const auth_;
};

}  // namespace quantd

#endif  // QUANTD_SERVER_RPC_WORKER_SERVICE_H_
