#include "worker/eval/token_stream.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/common/status_macros.h"

namespace quantd::eval {

absl::StatusOr<DocumentMode> ParseDocumentMode(absl::string_view name) {
  if (name == "whole" || name == "whole-file") return DocumentMode::kWholeFile;
  if (name == "blank-line") return DocumentMode::kBlankLine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown document mode \"", name, "\" (whole, blank-line)"));
}

std::vector<std::string> SplitParagraphs(absl::string_view text) {
  std::vector<std::string> paragraphs;
  std::string current;
  auto flush = [&] {
    absl::string_view stripped = absl::StripAsciiWhitespace(current);
    if (!stripped.empty()) paragraphs.emplace_back(stripped);
    current.clear();
  };
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StripAsciiWhitespace(line).empty()) {
      flush();
    } else {
      absl::StrAppend(&current, line, "\n");
    }
  }
  flush();
  return paragraphs;
}

absl::StatusOr<std::vector<int32_t>> BuildTokenStream(const model::Tokenizer& tokenizer,
                                                      absl::string_view text, DocumentMode mode,
                                                      bool bos_per_document) {
  if (bos_per_document && tokenizer.bos_id() < 0) {
    return absl::FailedPreconditionError("the tokenizer has no BOS token");
  }
  std::vector<int32_t> stream;
  auto append = [&](absl::string_view document) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer.Encode(document));
    if (bos_per_document) stream.push_back(tokenizer.bos_id());
    stream.insert(stream.end(), ids.begin(), ids.end());
    return absl::OkStatus();
  };
  if (mode == DocumentMode::kWholeFile) {
    RETURN_IF_ERROR(append(text));
  } else {
    for (const auto& paragraph : SplitParagraphs(text)) RETURN_IF_ERROR(append(paragraph));
  }
  return stream;
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a folder, not a text file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  // Line endings as text mode reads them elsewhere (Python's universal newlines): CRLF and a
  // lone CR become LF.
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r') {
      out += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace quantd::eval
