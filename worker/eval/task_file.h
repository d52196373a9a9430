// Zero-shot multiple-choice task files (DESIGN.md §3.9): JSON Lines, one example per line, in
// one of these layouts, recognised by their keys (every line of a file in the same one). The
// prompts are lm-evaluation-harness's for the same tasks; "+ choice" puts a space between.
//   generic     {"context": str, "choices": [str, ...], "label": int}; each choice is appended
//               to the context exactly as written (put the leading space in the choice)
//   piqa        {"goal", "sol1", "sol2", "label"}: "Question: <goal>\nAnswer:" + sol
//   arc         {"question", "choices": {"text": [...], "label": [...]}, "answerKey"}:
//               "Question: <question>\nAnswer:" + text (ARC-Easy and ARC-Challenge)
//   hellaswag   {"activity_label", "ctx_a", "ctx_b", "endings", "label"}: "<activity>: <ctx>"
//               + ending, both cleaned of "[title]" and other bracketed markup
//   winogrande  {"sentence", "option1", "option2", "answer"}: each option fills the "_" and the
//               rest of the sentence is the continuation scored after it
//   boolq       {"passage", "question", "answer": bool or "label": 0/1}: "<passage>\n
//               Question: <question>?\nAnswer:" + "no" / "yes"
#ifndef QUANTD_WORKER_EVAL_TASK_FILE_H_
#define QUANTD_WORKER_EVAL_TASK_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quantd::eval {

struct MultipleChoiceExample {
  // One scored request per choice: the continuation's log-likelihood after the context.
  std::vector<std::string> contexts;
  std::vector<std::string> continuations;
  // Length of each choice in characters (Unicode code points) for the length-normalised score.
  std::vector<double> choice_lengths;
  int label = 0;  // index of the right choice
};

struct MultipleChoiceTask {
  std::string name;
  std::string layout;  // "generic", "piqa", "arc", "hellaswag", "winogrande" or "boolq"
  std::vector<MultipleChoiceExample> examples;
};

// Whether acc_norm is a figure of this layout's task: lm-evaluation-harness reports it for
// PIQA, ARC and HellaSwag (and quantd for the generic layout), but not for WinoGrande (its
// choices are contexts, scored on the same continuation) or BoolQ ("no"/"yes": dividing by 2
// or 3 characters only favours "yes").
bool ReportsAccNorm(const std::string& layout);

// One line (1-based `line` for messages) in any of the layouts above.
absl::StatusOr<MultipleChoiceExample> ParseTaskLine(absl::string_view json_line, int64_t line,
                                                    std::string* layout);

// Reads a task file. NOT_FOUND when it cannot be opened; INVALID_ARGUMENT naming the file and
// line for a line that is not a JSON object, matches no layout or another layout than the
// first line, has fewer than two choices or a label out of range, and for a file without
// examples. Blank lines are skipped. `limit` > 0 keeps the first `limit` examples (the rest of
// the file is not read).
absl::StatusOr<MultipleChoiceTask> ReadTaskFile(const std::string& path, const std::string& name,
                                                int64_t limit = 0);

}  // namespace quantd::eval

#endif  // QUANTD_WORKER_EVAL_TASK_FILE_H_
