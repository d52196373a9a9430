// QuantizeService on the callback API: authenticates, converts the request, calls the
// Scheduler and answers when it calls back. No scheduling logic here.
//
// Thread-safe; the pointers are not owned and must outlive the service.
#ifndef QUANTD_SERVER_RPC_QUANTIZE_SERVICE_H_
#define QUANTD_SERVER_RPC_QUANTIZE_SERVICE_H_

#include "quantd/v1/quantize_service.grpc.pb.h"
#include "server/core/event_bus.h"
#include "server/core/job_store.h"
#include "server/core/scheduler.h"
#include "server/rpc/auth.h"

namespace quantd {

class QuantizeServiceImpl final : public v1::QuantizeService::CallbackService {
 public:
  // `watch_buffer`: live events a watcher may have pending before it is ended with
  // RESOURCE_EXHAUSTED.
  QuantizeServiceImpl(Scheduler* scheduler, JobStore* store, EventBus* bus,
                      const Authenticator* auth, size_t watch_buffer);

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::SubmitJobResponse* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* context,
                                                   const v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* GetJobMetrics(grpc::CallbackServerContext* context,
                                          const v1::GetJobMetricsRequest* request,
                                          v1::JobMetrics* response) override;

 private:
  Scheduler* const scheduler_;
  JobStore* const store_;
  EventBus* const bus_;
  const Authenticator* const auth_;
  const size_t watch_buffer_;
};

}  // namespace quantd

#endif  // QUANTD_SERVER_RPC_QUANTIZE_SERVICE_H_
