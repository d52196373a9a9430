#include "proto/common/logging.h"

#include <memory>

#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace quantd {
namespace {

// Formats one record as a JSON object on one line.
class JsonLineFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    time_formatter_.format(msg, time_);
    std::string line = "{\"time\":\"";
    line.append(time_.data(), time_.size());
    time_.clear();
    line += "\",\"level\":\"";
    const auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",\"logger\":\"";
    line += JsonEscape(std::string(msg.logger_name.data(), msg.logger_name.size()));
    line += "\",\"msg\":\"";
    line += JsonEscape(std::string(msg.payload.data(), msg.payload.size()));
    line += "\"}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLineFormatter>();
  }

 private:
  spdlog::pattern_formatter time_formatter_{"%Y-%m-%dT%H:%M:%S.%e%z",
                                            spdlog::pattern_time_type::utc, ""};
  spdlog::memory_buf_t time_;
};

}  // namespace

absl::Status ParseLogFormat(const std::string& name, LogFormat* format) {
  if (name == "text") {
    *format = LogFormat::kText;
  } else if (name == "json") {
    *format = LogFormat::kJson;
  } else {
    return absl::InvalidArgumentError("log format must be \"text\" or \"json\", got \"" +
                                      name + "\"");
  }
  return absl::OkStatus();
}

absl::Status InitLogging(const std::string& process_name, LogFormat format,
                         const std::string& level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(level == "warning" ? "warn" : level);
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError("unknown log level \"" + level + "\"");
  }
  auto logger = std::make_shared<spdlog::logger>(
      process_name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonLineFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %L %n| %v");
  }
  logger->set_level(parsed);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

std::string JsonEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace quantd
