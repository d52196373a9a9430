// The unary QuantizeService calls the end-to-end suites make, with short deadlines.
#ifndef QUANTD_TESTS_E2E_SCHEDULER_CALLS_H_
#define QUANTD_TESTS_E2E_SCHEDULER_CALLS_H_

#include <chrono>
#include <string>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "quantd/v1/quantize_service.grpc.pb.h"

namespace quantd::e2e {

// Queues `spec`; its job id ("" and a test failure when the call fails).
inline std::string SubmitJob(v1::QuantizeService::Stub& stub, const v1::JobSpec& spec) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitJobResponse response;
  const grpc::Status status = stub.SubmitJob(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.job().job_id();
}

// The job, or a job with state UNSPECIFIED when the scheduler cannot be reached.
inline v1::Job GetJob(v1::QuantizeService::Stub& stub, const std::string& job_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  if (!stub.GetJob(&context, request, &job).ok()) job.Clear();
  return job;
}

}  // namespace quantd::e2e

#endif  // QUANTD_TESTS_E2E_SCHEDULER_CALLS_H_
