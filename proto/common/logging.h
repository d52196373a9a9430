// Process-wide logging set-up on spdlog.
//
// Text for people ("2026-11-25 20:31:02.123 I quantd| message") or JSON lines for log
// collectors ({"time":"...","level":"info","logger":"quantd","msg":"..."}), chosen by the
// --log_format flag of each executable. Thread-safe after InitLogging returns.
#ifndef QUANTD_PROTO_COMMON_LOGGING_H_
#define QUANTD_PROTO_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace quantd {

enum class LogFormat { kText, kJson };

// Parses "text" or "json"; INVALID_ARGUMENT otherwise.
absl::Status ParseLogFormat(const std::string& name, LogFormat* format);

// Installs the default logger named `process_name`, writing to stderr in `format` at
// `level` ("trace", "debug", "info", "warning", "error"; INVALID_ARGUMENT otherwise).
absl::Status InitLogging(const std::string& process_name, LogFormat format,
                         const std::string& level);

// Escapes `text` for use inside a JSON string literal (without the quotes).
std::string JsonEscape(const std::string& text);

}  // namespace quantd

#endif  // QUANTD_PROTO_COMMON_LOGGING_H_
