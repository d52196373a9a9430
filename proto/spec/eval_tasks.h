// The `eval.eval_tasks` field: zero-shot multiple-choice tasks as a comma-separated list of
// "name=path" or "path" entries (the name is then the file name without its extension), e.g.
// "piqa=/data/piqa/validation.jsonl, /data/arc_easy.jsonl". The paths are read by the worker.
#ifndef QUANTD_PROTO_SPEC_EVAL_TASKS_H_
#define QUANTD_PROTO_SPEC_EVAL_TASKS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quantd {

struct EvalTaskFile {
  std::string name;  // used in metric names: acc/<name>/<variant>
  std::string path;
};

// An empty or all-blank text is no task. INVALID_ARGUMENT, with a message that starts with
// `label` (the field or flag the text came from), for an empty entry, an empty path, a name
// outside [A-Za-z0-9_.-] or a name used twice.
absl::StatusOr<std::vector<EvalTaskFile>> ParseEvalTasks(
    absl::string_view text, absl::string_view label = "eval.eval_tasks");

}  // namespace quantd

#endif  // QUANTD_PROTO_SPEC_EVAL_TASKS_H_
