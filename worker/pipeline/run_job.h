// The one entry point of a QuantizeJob's computation, called by the job process
// (`quantd-worker exec-job`) and by local mode (`quantd-worker run --spec`).
//
// RunJob reports phases, progress (fraction and ETA, at least every few seconds), loss
// points and metrics through `sink`, checks `cancel` between steps, and returns the job's
// result. Phases: load the model; cut the calibration windows; detect outlier tokens
// (DESIGN.md §3.4, when the prefix is enabled or "prefixquant" is compared), reporting
// "outlier_ratio/layer<i>/before|after" and "prefix/count"; measure full-precision perplexity
// ("ppl/<dataset>/fp", and "ppl/<dataset>/fp_prefixed" with the detected prefix as context,
// which shows what the prefix alone changes); then build and evaluate the quantized model of the
// spec
// ("ppl/<dataset>/quantized": rotation, prefixed KV cache, quantizers, static calibration)
// and each `eval.compare` variant ("ppl/<dataset>/<variant>") on the same windows, with a
// loss point per window. A job with prefix.trainable or training.epochs > 0 builds its own
// variant through BuildTrainedVariant (training_stage.h): prefix training (PHASE_TRAIN_PREFIX;
// prefix.trainable implies outlier detection, whose tokens initialise the prefix) and block-wise
// fine-tuning (PHASE_FINETUNE, after "ppl/<dataset>/quantized_before_finetune"), streaming a
// loss point per step, with checkpoints under `options.work_dir`/train so that a rerun in the same
// folder resumes; the result's prefix is then the trained prefix's nearest tokens.
// Metric "pipeline/quantized" is 1 when a quantized model was evaluated.
//
// Failures carry a FailureReason: MODEL_LOAD for a model that cannot be read, USER_ERROR
// for a spec that does not fit the model or a missing dataset, CANCELLED, NUMERICAL for training
// that diverged beyond rollback, OOM (a LibTorch allocation failure, or weights larger than
// resources.max_memory, with the figures), INTERNAL.
#ifndef QUANTD_WORKER_PIPELINE_RUN_JOB_H_
#define QUANTD_WORKER_PIPELINE_RUN_JOB_H_

#include <string>

#include "absl/status/status.h"
#include "quantd/v1/job.pb.h"
#include "worker/runner/job_context.h"

namespace quantd::pipeline {

struct RunJobOptions {
  // Folder for the job's files (training checkpoints under train/, exports); empty: no
  // checkpoints. Relative dataset and model paths
  // in the spec are resolved against the process's working directory.
  std::string work_dir;
  // Where the model, the prefix KV cache and training live: "" / "auto" (the first visible
  // CUDA device when there is one, else the CPU), "cpu", "cuda" or "cuda:N"
  // (job_device.h). The model loads straight onto it; resources.max_memory bounds its weights.
  std::string device;
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
