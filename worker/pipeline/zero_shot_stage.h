// The zero-shot part of a job's evaluation (eval.eval_tasks): the task files are read and
// tokenized once, before any long work, and every evaluated model (full precision and each
// variant) is scored on them after its perplexities.
#ifndef QUANTD_WORKER_PIPELINE_ZERO_SHOT_STAGE_H_
#define QUANTD_WORKER_PIPELINE_ZERO_SHOT_STAGE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "quantd/v1/job.pb.h"
#include "worker/eval/multiple_choice.h"
#include "worker/model/llama.h"
#include "worker/model/tokenizer.h"
#include "worker/quant/prefix_cache.h"

namespace quantd::pipeline {

// The tasks of spec.eval.eval_tasks in their order. INVALID_ARGUMENT for a bad list or task
// file, NOT_FOUND for a missing one; both name the task.
absl::StatusOr<std::vector<eval::TokenizedTask>> LoadZeroShotTasks(
    const v1::JobSpec& spec, const model::Tokenizer& tokenizer);

// Scores `model` on `task`, after `prefix` when it is not null (the prefix's BOS stands for
// the requests' own), in batches of spec.eval.eval_batch_size requests.
absl::StatusOr<eval::MultipleChoiceResult> ScoreZeroShot(
    model::LlamaModel& model, const eval::TokenizedTask& task, const quant::PrefixCache* prefix,
    int32_t bos_id, int64_t batch_size, const std::function<bool(int64_t, int64_t)>& progress);

}  // namespace quantd::pipeline

#endif  // QUANTD_WORKER_PIPELINE_ZERO_SHOT_STAGE_H_
