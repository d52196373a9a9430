// Error messages fit to show a user: LibTorch's c10::Error::what() ends with
// "\nException raised from <function> at <file>:<line> (most recent call first):" and a list of
// stack frames, kilobytes that say nothing to the person whose job failed.
#ifndef QUANTD_PROTO_COMMON_ERROR_TEXT_H_
#define QUANTD_PROTO_COMMON_ERROR_TEXT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace quantd {

// `message` up to a LibTorch backtrace, if it has one; otherwise unchanged.
std::string WithoutBacktrace(absl::string_view message);

// The same status (code and payloads) with its message cut as above.
absl::Status WithoutBacktrace(const absl::Status& status);

}  // namespace quantd

#endif  // QUANTD_PROTO_COMMON_ERROR_TEXT_H_
