// Turns a text file into the token stream that perplexity windows are cut from.
#ifndef QUANTD_WORKER_EVAL_TOKEN_STREAM_H_
#define QUANTD_WORKER_EVAL_TOKEN_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/model/tokenizer.h"

namespace quantd::eval {

enum class DocumentMode {
  kWholeFile,  // the whole text is one document: BOS + ids
  kBlankLine,  // paragraphs separated by blank lines, each stripped of surrounding
               // whitespace; each non-empty one becomes BOS + ids, concatenated
};

// Parses "whole" (the job spec's calibration.documents name; "whole-file" is accepted too) or
// "blank-line"; INVALID_ARGUMENT otherwise.
absl::StatusOr<DocumentMode> ParseDocumentMode(absl::string_view name);

// Splits `text` into paragraphs at lines that are empty or all whitespace, each stripped.
std::vector<std::string> SplitParagraphs(absl::string_view text);

// The concatenated BOS-prefixed documents. With `bos_per_document` false the BOS tokens are
// left out (for evaluation after a prefix KV cache that already ends in BOS, which must not be
// followed by a second one). FAILED_PRECONDITION when a BOS is needed and the tokenizer has
// none.
absl::StatusOr<std::vector<int32_t>> BuildTokenStream(const model::Tokenizer& tokenizer,
                                                      absl::string_view text, DocumentMode mode,
                                                      bool bos_per_document = true);

// Reads a whole text file with its line endings normalized to LF (CRLF and lone CR become LF,
// as text-mode reading does in Python, where the reference values were computed); NOT_FOUND
// when it cannot be opened.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace quantd::eval

#endif  // QUANTD_WORKER_EVAL_TOKEN_STREAM_H_
