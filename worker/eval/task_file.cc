#include "worker/eval/task_file.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <regex>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "proto/common/status_macros.h"

namespace quantd::eval {
namespace {

using Json = nlohmann::json;

absl::Status LineError(int64_t line, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", problem));
}

double CodePoints(absl::string_view text) {
  double count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80 ? 1 : 0;
  return count;
}

// The value under `key`, or null when the object lacks it.
const Json& Field(const Json& object, const char* key) {
  static const Json kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

absl::StatusOr<std::string> StringField(const Json& object, const char* key, int64_t line) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return LineError(line, absl::StrCat("\"", key, "\" must be a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::vector<std::string>> StringList(const Json& value, const char* key,
                                                    int64_t line) {
  if (!value.is_array()) return LineError(line, absl::StrCat("\"", key, "\" must be a list"));
  std::vector<std::string> out;
  for (const auto& item : value) {
    if (!item.is_string()) {
      return LineError(line, absl::StrCat("\"", key, "\" must hold strings only"));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// An integer label, also written as a numeric string ("3"), as some exports do.
absl::StatusOr<int> IntegerField(const Json& object, const char* key, int64_t line) {
  auto it = object.find(key);
  if (it != object.end() && it->is_number_integer()) {
    // Read wide, so that a label past int's range is an error rather than a wrapped index.
    const int64_t value = it->is_number_unsigned()
                              ? static_cast<int64_t>(std::min<uint64_t>(
                                    it->get<uint64_t>(), std::numeric_limits<int64_t>::max()))
                              : it->get<int64_t>();
    if (value >= std::numeric_limits<int>::min() && value <= std::numeric_limits<int>::max()) {
      return static_cast<int>(value);
    }
    return LineError(line, absl::StrCat("\"", key, "\" is out of range: ", it->dump()));
  }
  if (it != object.end() && it->is_string()) {
    const std::string text = it->get<std::string>();
    if (!text.empty() && text.size() < 9 &&
        std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::stoi(text);
    }
  }
  return LineError(line, absl::StrCat("\"", key, "\" must be an integer"));
}

// The same context for every choice, each choice after `delimiter`.
MultipleChoiceExample SharedContext(const std::string& context,
                                    const std::vector<std::string>& choices,
                                    const std::string& delimiter, int label) {
  MultipleChoiceExample example;
  example.label = label;
  for (const auto& choice : choices) {
    example.contexts.push_back(context);
    example.continuations.push_back(delimiter + choice);
    example.choice_lengths.push_back(CodePoints(choice));
  }
  return example;
}

std::string Capitalized(std::string text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    text[i] = static_cast<char>(i == 0 ? absl::ascii_toupper(c) : absl::ascii_tolower(c));
  }
  return text;
}

// HellaSwag's clean-up of WikiHow markup, as lm-evaluation-harness does it.
std::string CleanHellaswag(const std::string& text) {
  static const std::regex kBracketed("\\[.*?\\]");
  std::string out(absl::StripAsciiWhitespace(text));
  out = absl::StrReplaceAll(out, {{" [title]", ". "}});
  out = std::regex_replace(out, kBracketed, "");
  return absl::StrReplaceAll(out, {{"  ", " "}});
}

absl::StatusOr<MultipleChoiceExample> Generic(const Json& o, int64_t line) {
  ASSIGN_OR_RETURN(std::string context, StringField(o, "context", line));
  ASSIGN_OR_RETURN(auto choices, StringList(Field(o, "choices"), "choices", line));
  ASSIGN_OR_RETURN(int label, IntegerField(o, "label", line));
  return SharedContext(context, choices, "", label);
}

absl::StatusOr<MultipleChoiceExample> Piqa(const Json& o, int64_t line) {
  ASSIGN_OR_RETURN(std::string goal, StringField(o, "goal", line));
  ASSIGN_OR_RETURN(std::string sol1, StringField(o, "sol1", line));
  ASSIGN_OR_RETURN(std::string sol2, StringField(o, "sol2", line));
  ASSIGN_OR_RETURN(int label, IntegerField(o, "label", line));
  return SharedContext("Question: " + goal + "\nAnswer:", {sol1, sol2}, " ", label);
}

absl::StatusOr<MultipleChoiceExample> Arc(const Json& o, int64_t line) {
  ASSIGN_OR_RETURN(std::string question, StringField(o, "question", line));
  ASSIGN_OR_RETURN(std::string answer, StringField(o, "answerKey", line));
  const Json& choices = Field(o, "choices");
  if (!choices.is_object()) return LineError(line, "\"choices\" must be an object");
  ASSIGN_OR_RETURN(auto texts, StringList(Field(choices, "text"), "choices.text", line));
  ASSIGN_OR_RETURN(auto keys, StringList(Field(choices, "label"), "choices.label", line));
  if (keys.size() != texts.size()) {
    return LineError(line, "\"choices.text\" and \"choices.label\" differ in length");
  }
  const auto gold = std::find(keys.begin(), keys.end(), answer);
  if (gold == keys.end()) {
    return LineError(line, absl::StrCat("answerKey \"", answer, "\" is not among the choices"));
  }
  return SharedContext("Question: " + question + "\nAnswer:", texts, " ",
                       static_cast<int>(gold - keys.begin()));
}

absl::StatusOr<MultipleChoiceExample> Hellaswag(const Json& o, int64_t line) {
  ASSIGN_OR_RETURN(std::string activity, StringField(o, "activity_label", line));
  ASSIGN_OR_RETURN(std::string ctx_a, StringField(o, "ctx_a", line));
  ASSIGN_OR_RETURN(std::string ctx_b, StringField(o, "ctx_b", line));
  ASSIGN_OR_RETURN(auto endings, StringList(Field(o, "endings"), "endings", line));
  ASSIGN_OR_RETURN(int label, IntegerField(o, "label", line));
  for (auto& ending : endings) ending = CleanHellaswag(ending);
  const std::string context = CleanHellaswag(activity + ": " + ctx_a + " " + Capitalized(ctx_b));
  return SharedContext(context, endings, " ", label);
}

absl::StatusOr<MultipleChoiceExample> Winogrande(const Json& o, int64_t line) {
  ASSIGN_OR_RETURN(std::string sentence, StringField(o, "sentence", line));
  ASSIGN_OR_RETURN(std::string option1, StringField(o, "option1", line));
  ASSIGN_OR_RETURN(std::string option2, StringField(o, "option2", line));
  ASSIGN_OR_RETURN(int answer, IntegerField(o, "answer", line));
  const size_t blank = sentence.find('_');
  if (blank == std::string::npos) return LineError(line, "\"sentence\" has no \"_\" to fill");
  const std::string rest(absl::StripAsciiWhitespace(sentence.substr(blank + 1)));
  MultipleChoiceExample example;
  example.label = answer - 1;  // "1" or "2"
  for (const auto& option : {option1, option2}) {
    example.contexts.push_back(sentence.substr(0, blank) + option);
    example.continuations.push_back(" " + rest);
    example.choice_lengths.push_back(CodePoints(rest));
  }
  return example;
}

absl::StatusOr<MultipleChoiceExample> Boolq(const Json& o, int64_t line) {
  ASSIGN_OR_RETURN(std::string passage, StringField(o, "passage", line));
  ASSIGN_OR_RETURN(std::string question, StringField(o, "question", line));
  // google/boolq says "answer": true/false; super_glue's export says "label": 1/0.
  int label = 0;
  if (Field(o, "answer").is_boolean()) {
    label = Field(o, "answer").get<bool>() ? 1 : 0;
  } else if (o.contains("label")) {
    ASSIGN_OR_RETURN(label, IntegerField(o, "label", line));
  } else {
    return LineError(line, "needs \"answer\" (true or false) or \"label\" (1 = yes, 0 = no)");
  }
  return SharedContext(passage + "\nQuestion: " + question + "?\nAnswer:", {"no", "yes"}, " ",
                       label);
}

struct Layout {
  const char* name;
  const char* key;  // a key only this layout has
  absl::StatusOr<MultipleChoiceExample> (*parse)(const Json&, int64_t);
};

constexpr Layout kLayouts[] = {
    {"generic", "context", Generic},
    {"piqa", "goal", Piqa},
    {"arc", "answerKey", Arc},
    {"hellaswag", "endings", Hellaswag},
    {"winogrande", "option1", Winogrande},
    {"boolq", "passage", Boolq},
};

}  // namespace

absl::StatusOr<MultipleChoiceExample> ParseTaskLine(absl::string_view json_line, int64_t line,
                                                    std::string* layout) {
  const Json object = Json::parse(json_line.begin(), json_line.end(), nullptr,
                                  /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) {
    return LineError(line, "not a JSON object");
  }
  const Layout* found = nullptr;
  for (const auto& candidate : kLayouts) {
    if (object.contains(candidate.key)) found = &candidate;
  }
  if (found == nullptr) {
    return LineError(line,
                     "matches no task layout (generic \"context\"/\"choices\"/\"label\", piqa, "
                     "arc, hellaswag, winogrande or boolq)");
  }
  if (!layout->empty() && *layout != found->name) {
    return LineError(line, absl::StrCat("is a ", found->name, " example in a ", *layout, " file"));
  }
  *layout = found->name;
  ASSIGN_OR_RETURN(MultipleChoiceExample example, found->parse(object, line));
  const int choices = static_cast<int>(example.continuations.size());
  if (choices < 2) return LineError(line, "needs at least two choices");
  if (example.label < 0 || example.label >= choices) {
    return LineError(line,
                     absl::StrCat("the answer is choice ", example.label + 1, " of ", choices));
  }
  return example;
}

absl::StatusOr<MultipleChoiceTask> ReadTaskFile(const std::string& path, const std::string& name,
                                                int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("task ", name, ": cannot open ", path));
  MultipleChoiceTask task;
  task.name = name;
  std::string text;
  for (int64_t line = 1;
       (limit <= 0 || static_cast<int64_t>(task.examples.size()) < limit) && std::getline(in, text);
       ++line) {
    if (absl::StripAsciiWhitespace(text).empty()) continue;
    auto example = ParseTaskLine(text, line, &task.layout);
    if (!example.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("task ", name, ": ", path, " ", example.status().message()));
    }
    task.examples.push_back(*std::move(example));
  }
  if (in.bad()) return absl::InternalError(absl::StrCat("task ", name, ": cannot read ", path));
  if (task.examples.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("task ", name, ": ", path, " has no examples"));
  }
  return task;
}

bool ReportsAccNorm(const std::string& layout) {
  return layout != "winogrande" && layout != "boolq";
}

}  // namespace quantd::eval
