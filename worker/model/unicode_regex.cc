#include "worker/model/unicode_regex.h"

#include <unicode/uregex.h>
#include <unicode/utext.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace quantd::model {
namespace {

// Rewrites \s and \S (outside of escapes like \\s) as Unicode White_Space classes.
std::string RewriteWhitespace(absl::string_view pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    const char next = pattern[++i];
    if (next == 's') {
      out += "\\p{White_Space}";
    } else if (next == 'S') {
      out += "\\P{White_Space}";
    } else {
      out += '\\';
      out += next;
    }
  }
  return out;
}

URegularExpression* Regex(void* p) { return static_cast<URegularExpression*>(p); }

}  // namespace

absl::StatusOr<std::unique_ptr<UnicodeRegex>> UnicodeRegex::Compile(absl::string_view pattern) {
  const std::string rewritten = RewriteWhitespace(pattern);
  UErrorCode status = U_ZERO_ERROR;
  UText* text =
      utext_openUTF8(nullptr, rewritten.data(), static_cast<int64_t>(rewritten.size()), &status);
  UParseError parse_error;
  URegularExpression* compiled = uregex_openUText(text, 0, &parse_error, &status);
  utext_close(text);
  if (U_FAILURE(status)) {
    if (compiled != nullptr) uregex_close(compiled);
    return absl::InvalidArgumentError(absl::StrCat("regex \"", pattern,
                                                   "\" does not compile: ", u_errorName(status),
                                                   " at offset ", parse_error.offset));
  }
  return std::unique_ptr<UnicodeRegex>(new UnicodeRegex(compiled));
}

UnicodeRegex::~UnicodeRegex() { uregex_close(Regex(compiled_)); }

std::vector<ByteRange> UnicodeRegex::FindAll(absl::string_view text) const {
  std::vector<ByteRange> matches;
  UErrorCode status = U_ZERO_ERROR;
  URegularExpression* regex = uregex_clone(Regex(compiled_), &status);  // per call: thread-safe
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  uregex_setUText(regex, utext, &status);
  while (U_SUCCESS(status) && uregex_findNext(regex, &status)) {
    const int64_t begin = uregex_start64(regex, 0, &status);
    const int64_t end = uregex_end64(regex, 0, &status);
    if (U_FAILURE(status)) break;
    if (end > begin) {
      matches.push_back({static_cast<size_t>(begin), static_cast<size_t>(end - begin)});
    }
  }
  uregex_close(regex);
  utext_close(utext);
  return matches;
}

}  // namespace quantd::model
