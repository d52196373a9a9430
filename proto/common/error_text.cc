#include "proto/common/error_text.h"

namespace quantd {

std::string WithoutBacktrace(absl::string_view message) {
  const size_t backtrace = message.find("\nException raised from ");
  return std::string(message.substr(0, backtrace));
}

absl::Status WithoutBacktrace(const absl::Status& status) {
  const absl::string_view message = status.message();
  if (message.find("\nException raised from ") == absl::string_view::npos) return status;
  absl::Status cut(status.code(), WithoutBacktrace(message));
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { cut.SetPayload(url, payload); });
  return cut;
}

}  // namespace quantd
