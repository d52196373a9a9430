#include "server/rpc/quantize_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/job_state.h"
#include "server/rpc/status.h"
#include "server/rpc/watch_reactor.h"

namespace quantd {
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

QuantizeServiceImpl::QuantizeServiceImpl(Scheduler* scheduler, JobStore* store, EventBus* bus,
                                         const Authenticator* auth, size_t watch_buffer)
    : scheduler_(scheduler), store_(store), bus_(bus), auth_(auth), watch_buffer_(watch_buffer) {}

grpc::ServerUnaryReactor* QuantizeServiceImpl::SubmitJob(grpc::CallbackServerContext* context,
                                                         const v1::SubmitJobRequest* request,
                                                         v1::SubmitJobResponse* response) {
  absl::StatusOr<Caller> caller = auth_->AuthenticateUser(*context);
  if (!caller.ok()) return Done(context, caller.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scheduler_->Submit(*caller, request->spec(), request->request_id(),
                     [reactor, response](absl::StatusOr<SubmitResult> result) {
                       if (!result.ok()) {
                         reactor->Finish(ToGrpcStatus(result.status()));
                         return;
                       }
                       *response->mutable_job() = std::move(result->job);
                       response->set_deduplicated(result->deduplicated);
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
}

grpc::ServerUnaryReactor* QuantizeServiceImpl::GetJob(grpc::CallbackServerContext* context,
                                                      const v1::GetJobRequest* request,
                                                      v1::Job* response) {
  absl::StatusOr<Caller> caller = auth_->AuthenticateUser(*context);
  if (!caller.ok()) return Done(context, caller.status());
  absl::StatusOr<v1::Job> job = scheduler_->GetJob(*caller, request->job_id());
  if (job.ok()) *response = std::move(*job);
  return Done(context, job.status());
}

grpc::ServerUnaryReactor* QuantizeServiceImpl::ListJobs(grpc::CallbackServerContext* context,
                                                        const v1::ListJobsRequest* request,
                                                        v1::ListJobsResponse* response) {
  absl::StatusOr<Caller> caller = auth_->AuthenticateUser(*context);
  if (!caller.ok()) return Done(context, caller.status());
  ListQuery query;
  query.page_size = request->page_size();
  query.page_token = request->page_token();
  query.owner = request->owner();
  for (int state : request->states()) query.states.push_back(static_cast<v1::JobState>(state));
  absl::StatusOr<ListResult> result = scheduler_->ListJobs(*caller, query);
  if (result.ok()) {
    for (v1::Job& job : result->jobs) *response->add_jobs() = std::move(job);
    response->set_next_page_token(result->next_page_token);
  }
  return Done(context, result.status());
}

grpc::ServerUnaryReactor* QuantizeServiceImpl::CancelJob(grpc::CallbackServerContext* context,
                                                         const v1::CancelJobRequest* request,
                                                         v1::Job* response) {
  absl::StatusOr<Caller> caller = auth_->AuthenticateUser(*context);
  if (!caller.ok()) return Done(context, caller.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  scheduler_->CancelJob(*caller, request->job_id(), request->reason(),
                        [reactor, response](absl::StatusOr<v1::Job> job) {
                          if (job.ok()) *response = std::move(*job);
                          reactor->Finish(ToGrpcStatus(job.status()));
                        });
  return reactor;
}

grpc::ServerWriteReactor<v1::JobEvent>* QuantizeServiceImpl::WatchJob(
    grpc::CallbackServerContext* context, const v1::WatchJobRequest* request) {
  absl::StatusOr<Caller> caller = auth_->AuthenticateUser(*context);
  if (!caller.ok()) return new FailedWriteReactor(ToGrpcStatus(caller.status()));
  if (request->after_sequence() < 0) {
    return new FailedWriteReactor(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "after_sequence: must be >= 0"));
  }
  absl::StatusOr<v1::Job> job = scheduler_->GetJob(*caller, request->job_id());
  if (!job.ok()) return new FailedWriteReactor(ToGrpcStatus(job.status()));
  // Events after a sequence the job has not reached could include its terminal one, which the
  // stream would skip and then never end.
  if (request->after_sequence() > job->last_sequence()) {
    return new FailedWriteReactor(grpc::Status(
        grpc::StatusCode::OUT_OF_RANGE,
        absl::StrCat("after_sequence ", request->after_sequence(), " is beyond job ",
                     request->job_id(), ": its last event is #", job->last_sequence())));
  }
  // The terminal state change is always a job's last event.
  const int64_t terminal_at = IsTerminal(job->state()) ? job->last_sequence() : 0;
  auto* reactor = new WatchReactor(store_, bus_, request->job_id(), request->after_sequence(),
                                   terminal_at, watch_buffer_);
  reactor->Begin();
  return reactor;
}

grpc::ServerUnaryReactor* QuantizeServiceImpl::GetJobMetrics(
    grpc::CallbackServerContext* context, const v1::GetJobMetricsRequest* request,
    v1::JobMetrics* response) {
  absl::StatusOr<Caller> caller = auth_->AuthenticateUser(*context);
  if (!caller.ok()) return Done(context, caller.status());
  absl::StatusOr<v1::JobMetrics> metrics = scheduler_->GetJobMetrics(*caller, request->job_id());
  if (metrics.ok()) *response = std::move(*metrics);
  return Done(context, metrics.status());
}

}  // namespace quantd
