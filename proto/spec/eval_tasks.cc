#include "proto/spec/eval_tasks.h"

#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace quantd {
namespace {

absl::Status EntryError(absl::string_view label, size_t index, absl::string_view entry,
                        absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(label, ": entry ", index + 1, " (\"", entry, "\") ", problem));
}

bool IsNameCharacter(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
}

std::string NameFromPath(absl::string_view path) {
  const size_t slash = path.find_last_of('/');
  absl::string_view file = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  const size_t dot = file.find('.');
  return std::string(dot == absl::string_view::npos || dot == 0 ? file : file.substr(0, dot));
}

}  // namespace

absl::StatusOr<std::vector<EvalTaskFile>> ParseEvalTasks(absl::string_view text,
                                                         absl::string_view label) {
  std::vector<EvalTaskFile> tasks;
  if (absl::StripAsciiWhitespace(text).empty()) return tasks;
  std::set<std::string> names;
  const std::vector<absl::string_view> entries = absl::StrSplit(text, ',');
  for (size_t i = 0; i < entries.size(); ++i) {
    const absl::string_view entry = absl::StripAsciiWhitespace(entries[i]);
    if (entry.empty()) return EntryError(label, i, entry, "is empty (a stray comma?)");
    EvalTaskFile task;
    const size_t equals = entry.find('=');
    if (equals == absl::string_view::npos) {
      task.path = std::string(entry);
      task.name = NameFromPath(entry);
    } else {
      task.name = std::string(absl::StripAsciiWhitespace(entry.substr(0, equals)));
      task.path = std::string(absl::StripAsciiWhitespace(entry.substr(equals + 1)));
    }
    if (task.path.empty()) return EntryError(label, i, entry, "has no file path");
    if (task.name.empty()) return EntryError(label, i, entry, "has no task name");
    for (char c : task.name) {
      if (!IsNameCharacter(c)) {
        return EntryError(label, i, entry,
                          absl::StrCat("has the task name \"", task.name,
                                       "\"; names are letters, digits, '_', '-' and '.'"));
      }
    }
    if (!names.insert(task.name).second) {
      return EntryError(label, i, entry,
                        absl::StrCat("repeats the task name \"", task.name,
                                     "\"; give one of them another name with name=path"));
    }
    tasks.push_back(std::move(task));
  }
  return tasks;
}

}  // namespace quantd
