// The one entry point of a QuantizeJob's computation, called by the job process
// (`quantd-worker exec-job`) and by local mode (`quantd-worker run --spec`).
//
// RunJob reports phases, progress (fraction and ETA, at least every few seconds), loss
// points and metrics through `sink`, checks `cancel` between steps, and returns the job's
// result. Today it runs what exists of the method: load the model (validating the spec
// against its shape) and measure full-precision perplexity on each evaluation dataset
// with a loss point per window. The PrefixQuant phases (rotation, outlier tokens, prefix
// training, quantization, fine-tuning, export) arrive with issues 6-9; until then a job
// that asks for them is told so in a warning log event, and the result says which phases
// ran (metric "pipeline/quantized" = 0).
//
// Failures carry a FailureReason: MODEL_LOAD for a model that cannot be read, USER_ERROR
// for a spec that does not fit the model or a missing dataset, CANCELLED, OOM, INTERNAL.
#ifndef QUANTD_WORKER_PIPELINE_RUN_JOB_H_
#define QUANTD_WORKER_PIPELINE_RUN_JOB_H_

#include <string>

#include "absl/status/status.h"
#include "quantd/v1/job.pb.h"
#include "worker/runner/job_context.h"

namespace quantd::pipeline {

struct RunJobOptions {
  // Folder for the job's files (checkpoints, exports); relative dataset and model paths
  // in the spec are resolved against the process's working directory.
  std::string work_dir;
};

struct RunJobOutcome {
  absl::Status status;
  v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED;
  v1::JobResult result;
};

RunJobOutcome RunJob(const v1::JobSpec& spec, const RunJobOptions& options, EventSink& sink,
                     CancellationToken& cancel);

}  // namespace quantd::pipeline

#endif  // QUANTD_WORKER_PIPELINE_RUN_JOB_H_
