// Unicode regular expressions for tokenizer.json pre-tokenizers, on ICU.
//
// Patterns are in the dialect Hugging Face tokenizers uses (Oniguruma): \p{L}, \p{N},
// (?i:...), look-ahead; \s and \S mean Unicode White_Space (ICU's own \s is narrower, so
// they are rewritten). Immutable after Compile(); FindAll() is thread-safe.
#ifndef QUANTD_WORKER_MODEL_UNICODE_REGEX_H_
#define QUANTD_WORKER_MODEL_UNICODE_REGEX_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/model/bpe.h"

namespace quantd::model {

class UnicodeRegex {
 public:
  // INVALID_ARGUMENT with ICU's message for a pattern that does not compile.
  static absl::StatusOr<std::unique_ptr<UnicodeRegex>> Compile(absl::string_view pattern);
  ~UnicodeRegex();

  // Byte ranges of the non-empty, non-overlapping matches in UTF-8 `text`, left to right.
  std::vector<ByteRange> FindAll(absl::string_view text) const;

 private:
  explicit UnicodeRegex(void* compiled) : compiled_(compiled) {}
  void* compiled_;  // URegularExpression*
};

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_UNICODE_REGEX_H_
