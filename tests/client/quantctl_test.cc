#include <fstream>
#include <sstream>

#include "client/quantctl/commands.h"
#include "client/quantctl/exit_codes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/common/args.h"

namespace quantd::quantctl {
namespace {

using ::testing::HasSubstr;

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

Outcome Quantctl(const std::vector<std::string>& argv) {
  std::ostringstream out, err;
  const int code = RunQuantctl(argv, out, err);
  return {code, out.str(), err.str()};
}

const std::string kExample = std::string(QUANTD_SOURCE_DIR) + "/client/examples/";

TEST(QuantctlTest, ValidatesTheExampleJobsAndFillsDefaults) {
  for (const char* file : {"llama2-7b-w4a4kv4.yaml", "stories260k-demo.yaml"}) {
    const Outcome run = Quantctl({"validate", kExample + file, "--output", "json"});
    ASSERT_EQ(run.code, kExitOk) << run.err;
    const auto spec = nlohmann::json::parse(run.out);
    EXPECT_EQ(spec["quant"]["wbits"], 4) << file;
    EXPECT_EQ(spec["quant"]["input_mode"], "QUANT_MODE_STATIC") << file;
    // A default the file does not set is filled in.
    EXPECT_EQ(spec["eval"]["eval_batch_size"], 16) << file;
  }
}

TEST(QuantctlTest, InvalidSpecExitsWithInputErrorNamingTheField) {
  const Outcome run =
      Quantctl({"validate", kExample + "llama2-7b-w4a4kv4.yaml", "--set", "prefix.len=65"});
  EXPECT_EQ(run.code, kExitInvalidInput);
  EXPECT_THAT(run.err, HasSubstr("prefix.len: must be 0..64"));
}

TEST(QuantctlTest, TypoInKeyIsNamed) {
  const std::string path = ::testing::TempDir() + "/typo.yaml";
  std::ofstream(path) << "model:\n  path: m\ncalibration:\n  dataset_path: d\nquant:\n  wbit: 4\n";
  const Outcome run = Quantctl({"validate", path});
  EXPECT_EQ(run.code, kExitInvalidInput);
  EXPECT_THAT(run.err, HasSubstr("quant.wbit: unknown key"));
}

TEST(QuantctlTest, MissingFileIsNotFound) {
  EXPECT_EQ(Quantctl({"validate", "/nonexistent.yaml"}).code, kExitNotFound);
}

TEST(QuantctlTest, UsageErrors) {
  EXPECT_EQ(Quantctl({}).code, kExitUsage);
  EXPECT_EQ(Quantctl({"frobnicate"}).code, kExitUsage);
  EXPECT_EQ(Quantctl({"get", "--no-such-flag"}).code, kExitUsage);
  EXPECT_EQ(Quantctl({"watch", "j-1", "--after"}).code, kExitUsage);
  EXPECT_EQ(Quantctl({"help"}).code, kExitOk);
}

// Each documented usage error exits 64 with a message naming the problem, before any call.
TEST(QuantctlTest, BadCommandLinesAreUsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"get"}, "expected JOB_ID"},
      {{"submit"}, "expected JOB.yaml"},
      {{"validate"}, "expected JOB.yaml"},
      {{"cancel"}, "expected JOB_ID"},
      {{"watch", "a", "b"}, "got also \"b\""},
      {{"get", "j-1", "--output", "xml"}, "--output"},
      {{"watch", "j-1", "--after", "abc"}, "--after must be a sequence number"},
      {{"list", "extra-arg"}, "unexpected argument \"extra-arg\""},
      {{"get", "j-1", "--limit", "5"}, "--limit does not apply to get"},
      {{"list", "--limit", "0"}, "--limit must be a positive integer"},
      {{"list", "--state", "bogus"}, "unknown state \"bogus\""},
      {{"list", "--timeout", "-1"}, "--timeout must be a positive number"},
      {{"validate", "x.yaml", "--watch"}, "--watch does not apply to validate"},
      {{"version", "now"}, "unexpected argument \"now\""},
  };
  for (const auto& [argv, message] : cases) {
    const Outcome run = Quantctl(argv);
    EXPECT_EQ(run.code, kExitUsage) << argv[0] << " " << (argv.size() > 1 ? argv[1] : "");
    EXPECT_THAT(run.err, HasSubstr(message)) << argv[0];
  }
  EXPECT_THAT(Quantctl({"help"}).out, HasSubstr("default 100"));
}

// A config file's timeout_seconds that is not a positive number is refused, naming the key.
TEST(QuantctlTest, ConfigTimeoutMustBeAPositiveNumber) {
  const std::string path = ::testing::TempDir() + "/quantctl_timeout.yaml";
  for (const char* value : {"abc", "-5", "0"}) {
    std::ofstream(path) << "timeout_seconds: " << value << "\n";
    ASSERT_EQ(setenv("QUANTCTL_CONFIG", path.c_str(), 1), 0);
    const Outcome run = Quantctl({"get", "j-1", "--addr", "127.0.0.1:1"});
    unsetenv("QUANTCTL_CONFIG");
    EXPECT_EQ(run.code, kExitInvalidInput) << value;
    EXPECT_THAT(run.err, HasSubstr("timeout_seconds must be a positive number")) << value;
    EXPECT_THAT(run.err, HasSubstr(value));
  }
}

TEST(QuantctlTest, ServerDownIsUnavailableWithAHint) {
  // Port 1 on loopback: nothing listens there.
  const Outcome run = Quantctl({"get", "j-000001", "--addr", "127.0.0.1:1", "--timeout", "2"});
  EXPECT_EQ(run.code, kExitUnavailable);
  EXPECT_THAT(run.err, HasSubstr("is quantd running"));
}

TEST(ArgsTest, FlagsAnywhereRepeatedAndWithEquals) {
  const auto args =
      Args::Parse({"job.yaml", "--set", "a=1", "--watch", "--set=b=2", "--addr", "h:1"},
                  {"set", "addr"}, {"watch"});
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(args->positional(), std::vector<std::string>{"job.yaml"});
  EXPECT_EQ(args->GetAll("set"), (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_TRUE(args->Has("watch"));
  EXPECT_EQ(args->Get("addr"), "h:1");
  EXPECT_EQ(args->Get("missing", "x"), "x");
}

TEST(ExitCodeTest, MapsStatusCodes) {
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("")), kExitPermission);
  EXPECT_EQ(ExitCodeFor(absl::PermissionDeniedError("")), kExitPermission);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("")), kExitNotFound);
  EXPECT_EQ(ExitCodeFor(absl::AlreadyExistsError("")), kExitInvalidInput);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("")), kExitInternal);
}

}  // namespace
}  // namespace quantd::quantctl
