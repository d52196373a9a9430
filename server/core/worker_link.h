// WorkerLink: the scheduler's way to talk to one connected worker (the gRPC stream in
// production, a recorder in tests).
//
// The scheduler calls these with its own lock held: implementations must only queue the
// message and return, never block or call back into the scheduler.
#ifndef QUANTD_SERVER_CORE_WORKER_LINK_H_
#define QUANTD_SERVER_CORE_WORKER_LINK_H_

#include <string>

#include "absl/status/status.h"
#include "quantd/v1/worker_service.pb.h"

namespace quantd {

class WorkerLink {
 public:
  virtual ~WorkerLink() = default;
  virtual void Send(const v1::SchedulerMessage& message) = 0;
  // Ends the connection with `status` (e.g. the worker missed its heartbeats or another
  // connection took its place). The scheduler forgets the link after calling this.
  virtual void Close(const absl::Status& status) = 0;
  // The worker's address as the transport sees it (e.g. "ipv4:10.0.0.7:51234"), for logs;
  // empty when unknown.
  virtual std::string peer() const { return ""; }
};

}  // namespace quantd

#endif  // QUANTD_SERVER_CORE_WORKER_LINK_H_
