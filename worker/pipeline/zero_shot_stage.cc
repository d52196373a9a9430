#include "worker/pipeline/zero_shot_stage.h"

#include "proto/common/status_macros.h"
#include "proto/spec/eval_tasks.h"
#include "worker/eval/task_file.h"

namespace quantd::pipeline {

absl::StatusOr<std::vector<eval::TokenizedTask>> LoadZeroShotTasks(
    const v1::JobSpec& spec, const model::Tokenizer& tokenizer) {
  ASSIGN_OR_RETURN(std::vector<EvalTaskFile> files, ParseEvalTasks(spec.eval().eval_tasks()));
  std::vector<eval::TokenizedTask> tasks;
  for (const auto& file : files) {
    ASSIGN_OR_RETURN(eval::MultipleChoiceTask task, eval::ReadTaskFile(file.path, file.name));
    ASSIGN_OR_RETURN(eval::TokenizedTask tokenized, eval::TokenizeTask(tokenizer, task));
    tasks.push_back(std::move(tokenized));
  }
  return tasks;
}

absl::StatusOr<eval::MultipleChoiceResult> ScoreZeroShot(
    model::LlamaModel& model, const eval::TokenizedTask& task, const quant::PrefixCache* prefix,
    int32_t bos_id, int64_t batch_size, const std::function<bool(int64_t, int64_t)>& progress) {
  eval::MultipleChoiceOptions options;
  options.batch_size = batch_size;
  options.bos_id = bos_id;
  if (prefix != nullptr) {
    options.prefix.kv = &prefix->kv;
    options.prefix.last_logits = prefix->last_logits;
    options.prefix.length = static_cast<int64_t>(prefix->ids.size());
    options.prefix.ends_with_bos =
        !prefix->ids.empty() && bos_id >= 0 && prefix->ids.back() == bos_id;
  }
  return eval::EvaluateMultipleChoice(model, task, options, progress);
}

}  // namespace quantd::pipeline
