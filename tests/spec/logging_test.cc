#include "spdlog/spdlog.h"
#include "proto/common/logging.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/common/version.h"

namespace quantd {
namespace {

TEST(LoggingTest, ParsesFormats) {
  LogFormat format;
  EXPECT_TRUE(ParseLogFormat("json", &format).ok());
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_TRUE(ParseLogFormat("text", &format).ok());
  EXPECT_EQ(format, LogFormat::kText);
  EXPECT_EQ(ParseLogFormat("xml", &format).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InitLogging("t", LogFormat::kText, "loud").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LoggingTest, JsonEscapeMakesValidJson) {
  const std::string nasty = "quote\" backslash\\ newline\n tab\t bell\x07 ünïcode";
  const auto parsed = nlohmann::json::parse("\"" + JsonEscape(nasty) + "\"");
  EXPECT_EQ(parsed.get<std::string>(), nasty);
}

TEST(LoggingTest, JsonLinesAreParseable) {
  ASSERT_TRUE(InitLogging("quantd-test", LogFormat::kJson, "info").ok());
  ::testing::internal::CaptureStderr();
  spdlog::info("job {} \"done\"", 7);
  spdlog::default_logger()->flush();
  const std::string line = ::testing::internal::GetCapturedStderr();
  const auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["msg"], "job 7 \"done\"");
  EXPECT_EQ(parsed["level"], "info");
  EXPECT_EQ(parsed["logger"], "quantd-test");
}

TEST(VersionTest, HasSemanticVersion) {
  EXPECT_EQ(VersionString().rfind("0.1.0", 0), 0u) << VersionString();
}

}  // namespace
}  // namespace quantd
