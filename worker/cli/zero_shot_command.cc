#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "proto/spec/eval_tasks.h"
#include "worker/cli/commands.h"
#include "worker/cli/model_flags.h"
#include "worker/eval/multiple_choice.h"
#include "worker/model/dtype_names.h"
#include "worker/model/tokenizer.h"

namespace quantd::cli {
namespace {

absl::Status ZeroShot(const std::vector<std::string>& argv, std::ostream& out, bool* usage) {
  std::set<std::string> known = ModelFlagNames();
  known.insert({"tasks", "batch-size", "limit"});
  *usage = true;
  auto args = Args::Parse(argv, known);
  if (!args.ok()) return args.status();
  auto model_dir = args->Require("model");
  if (!model_dir.ok()) return model_dir.status();
  auto task_list = args->Require("tasks");
  if (!task_list.ok()) return task_list.status();
  auto batch_size = args->GetInt("batch-size", 16, 1);
  if (!batch_size.ok()) return batch_size.status();
  auto limit = args->GetInt("limit", 0, 0);
  if (!limit.ok()) return limit.status();
  bool json = false;
  if (auto s = OutputFormatFromArgs(*args, &json); !s.ok()) return s;
  if (auto options = LoadOptionsFromArgs(*args); !options.ok()) return options.status();
  // The list's own mistakes are usage errors, named by the flag (the files are read later).
  if (auto parsed = ParseEvalTasks(*task_list, "--tasks"); !parsed.ok()) return parsed.status();
  *usage = false;

  auto tokenizer = model::LoadTokenizer(*model_dir);
  if (!tokenizer.ok()) return tokenizer.status();
  auto tasks = eval::LoadTasks(*task_list, **tokenizer, *limit);  // before the model: fail fast
  if (!tasks.ok()) return tasks.status();
  if (tasks->empty()) return absl::InvalidArgumentError("--tasks names no task");
  auto llama = LoadModelFromArgs(*model_dir, *args);
  if (!llama.ok()) return llama.status();

  eval::MultipleChoiceOptions options;
  options.batch_size = *batch_size;
  options.bos_id = (*tokenizer)->bos_id();
  if (llama->prefix) options.prefix = quant::AsScoringPrefix(*llama->prefix);
  nlohmann::json results = nlohmann::json::array();
  if (!json) {
    out << absl::StrFormat("%-16s %-10s %8s %9s %7s %9s\n", "task", "layout", "examples", "acc",
                           "+/-", "acc_norm");
  }
  std::string non_finite;  // "task (N examples)" for each task with NaN/Inf scores
  for (const auto& task : *tasks) {
    auto scored = eval::EvaluateMultipleChoice(*llama->model, task, options);
    if (!scored.ok()) return scored.status();
    if (scored->non_finite_examples > 0) {
      absl::StrAppend(&non_finite, non_finite.empty() ? "" : ", ", task.name, " (",
                      scored->non_finite_examples, " of ", scored->examples, " examples)");
    }
    const bool with_norm = eval::ReportsAccNorm(task.layout);
    nlohmann::json row = {{"name", task.name},
                          {"layout", task.layout},
                          {"examples", scored->examples},
                          {"acc", scored->accuracy},
                          {"acc_stderr", scored->accuracy_stderr}};
    if (with_norm) row["acc_norm"] = scored->accuracy_norm;
    results.push_back(row);
    if (!json) {
      out << absl::StrFormat(
          "%-16s %-10s %8d %8.2f%% %7.2f %9s\n", task.name, task.layout, scored->examples,
          100 * scored->accuracy, 100 * scored->accuracy_stderr,
          with_norm ? absl::StrFormat("%.2f%%", 100 * scored->accuracy_norm) : std::string("-"));
    }
  }
  if (json) {
    out << nlohmann::json({{"model", *model_dir},
                           {"export", llama->is_export},
                           {"device", llama->model->device().str()},
                           {"prefix_tokens", llama->prefix ? llama->prefix->ids.size() : 0},
                           {"tasks", results}})
               .dump()
        << "\n";
  }
  if (!non_finite.empty()) {
    return absl::InternalError(
        absl::StrCat("NaN or Inf log-likelihoods in ", non_finite,
                     ": the model computes non-finite values (an overflow in ",
                     model::DTypeName(llama->model->dtype()), "?), so those accuracies are NaN"));
  }
  return absl::OkStatus();
}

}  // namespace

int RunZeroShot(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return RunCommandBody("zero-shot",
                        "--model DIR --tasks NAME=FILE[,NAME=FILE...] [--limit N] [--batch-size B] "
                        "[--output text|json] "
                        "[--dtype ...] [--device ...] [--streamed_blocks N]",
                        ZeroShot, args, out, err);
}

}  // namespace quantd::cli
