#include "proto/common/error_text.h"

namespace quantd {
namespace {

constexpr absl::string_view kBacktraceStart = "\nException raised from ";

}  // namespace

std::string WithoutBacktrace(absl::string_view message) {
  return std::string(message.substr(0, message.find(kBacktraceStart)));
}

absl::Status WithoutBacktrace(const absl::Status& status) {
  const absl::string_view message = status.message();
  if (message.find(kBacktraceStart) == absl::string_view::npos) return status;
  absl::Status cut(status.code(), WithoutBacktrace(message));
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { cut.SetPayload(url, payload); });
  return cut;
}

}  // namespace quantd
