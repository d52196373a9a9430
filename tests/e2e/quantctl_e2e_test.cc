// quantctl, the binary, against a real quantd and quantd-worker on loopback: every
// sub-command, its exit codes, and its JSON output.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/processes.h"

namespace quantd::e2e {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

const std::string kBin = QUANTD_BINARY_DIR;
const std::string kData = QUANTD_SHARED_DATA;

class QuantctlE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/quantctl_e2e_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    spec_ = dir_ + "/job.yaml";
    std::ofstream(spec_) << "model:\n  path: " << kData << "/models/stories260K\n"
                         << "calibration:\n  dataset_path: " << kData
                         << "/text/tinystories-valid-subset.txt\n  documents: blank-line\n"
                         << "eval:\n  eval_ppl: true\n  ppl_seqlen: 256\n  ppl_max_windows: 6\n";
  }

  void StartScheduler(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {kBin + "/server/quantd", "--listen=127.0.0.1:0",
                                     "--metrics_listen=127.0.0.1:0", "--db=" + dir_ + "/q.db"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto process = Process::Start(argv, dir_ + "/quantd.log");
    ASSERT_TRUE(process.ok());
    scheduler_ = std::move(*process);
    const auto port = WaitForOutput(*scheduler_, "ready port=([0-9]+)", 20s);
    ASSERT_TRUE(port.has_value()) << scheduler_->Output();
    addr_ = "127.0.0.1:" + *port;
  }

  void StartWorker(const std::map<std::string, std::string>& env = {},
                   const std::string& token = "") {
    std::vector<std::string> argv = {kBin + "/worker/quantd-worker", "connect",
                                     "--scheduler=" + addr_, "--work_dir=" + dir_ + "/work",
                                     "--metrics_listen=127.0.0.1:0"};
    if (!token.empty()) argv.push_back("--token=" + token);
    auto process = Process::Start(argv, dir_ + "/worker.log", env);
    ASSERT_TRUE(process.ok());
    worker_ = std::move(*process);
  }

  CommandResult Quantctl(std::vector<std::string> args,
                         const std::map<std::string, std::string>& env = {}) {
    args.insert(args.begin(), kBin + "/client/quantctl");
    args.push_back("--addr=" + addr_);
    return RunCommand(args, dir_ + "/quantctl." + std::to_string(++runs_) + ".out", 120s, env);
  }

  static std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

  std::string dir_, spec_, addr_;
  int runs_ = 0;
  std::unique_ptr<Process> scheduler_, worker_;
};

TEST_F(QuantctlE2ETest, EverySubcommandWithExitCodesAndJson) {
  StartScheduler();
  StartWorker();
  const CommandResult submitted = Quantctl({"submit", spec_, "--request-id", "nightly-1"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const std::string job_id = FirstLine(submitted.output);
  EXPECT_THAT(job_id, ::testing::StartsWith("j-"));
  // The same request id again: the same job, said so.
  const CommandResult again = Quantctl({"submit", spec_, "--request-id", "nightly-1"});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_THAT(again.output, HasSubstr(job_id + " (existing job)"));
  // A bad override never reaches the server.
  const CommandResult invalid = Quantctl({"submit", spec_, "--set", "quant.wbits=9"});
  EXPECT_EQ(invalid.exit_code, 65);
  EXPECT_THAT(invalid.output, HasSubstr("quant.wbits"));

  const CommandResult watched = Quantctl({"watch", job_id});
  EXPECT_EQ(watched.exit_code, 0) << watched.output;
  EXPECT_THAT(watched.output, HasSubstr("state RUNNING -> SUCCEEDED"));
  EXPECT_THAT(watched.output, HasSubstr("tinystories-valid-subset.txt"));  // metrics table

  const CommandResult json_watch = Quantctl({"watch", job_id, "--output", "json"});
  EXPECT_EQ(json_watch.exit_code, 0);
  std::istringstream lines(json_watch.output);
  std::string line;
  int parsed = 0;
  while (std::getline(lines, line)) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
    ++parsed;
  }
  EXPECT_GT(parsed, 8);

  const CommandResult got = Quantctl({"get", job_id, "--output", "json"});
  ASSERT_EQ(got.exit_code, 0);
  const auto job = nlohmann::json::parse(got.output);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  // python3 -m json.tool accepts it too (what scripts use).
  std::ofstream(dir_ + "/job.json") << got.output;
  EXPECT_EQ(RunCommand({"/usr/bin/python3", "-m", "json.tool", dir_ + "/job.json"},
                       dir_ + "/json_tool.out")
                .exit_code,
            0);

  const CommandResult listed = Quantctl({"list", "--state", "succeeded"});
  EXPECT_EQ(listed.exit_code, 0);
  EXPECT_THAT(listed.output, HasSubstr("JOB_ID"));
  EXPECT_THAT(listed.output, HasSubstr(job_id));
  const CommandResult yaml = Quantctl({"list", "--output", "yaml"});
  EXPECT_EQ(yaml.exit_code, 0);
  EXPECT_THAT(yaml.output, HasSubstr("job_id: " + job_id));

  const CommandResult logs = Quantctl({"logs", job_id});
  EXPECT_EQ(logs.exit_code, 0);
  EXPECT_THAT(logs.output, HasSubstr("loaded stories260K"));

  const CommandResult plotted = Quantctl({"plot", job_id, "--out", dir_ + "/curves.svg"});
  EXPECT_EQ(plotted.exit_code, 0) << plotted.output;
  std::ifstream svg(dir_ + "/curves.svg");
  std::string svg_text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_THAT(svg_text, HasSubstr("<polyline"));

  EXPECT_EQ(Quantctl({"get", "j-999999"}).exit_code, 66);
  EXPECT_EQ(Quantctl({"cancel", job_id}).exit_code, 0);  // finished: a no-op
}

TEST_F(QuantctlE2ETest, WatchExitCodesFollowFailedAndCancelledJobs) {
  StartScheduler();
  StartWorker({{"QUANTD_TEST_EVENT_DELAY_MS", "200"}});
  const std::string bad_spec = dir_ + "/bad.yaml";
  std::ofstream(bad_spec) << "model:\n  path: /nonexistent/model\ncalibration:\n"
                          << "  dataset_path: /nonexistent/text\n";
  const CommandResult failing = Quantctl({"submit", bad_spec, "--watch"});
  EXPECT_EQ(failing.exit_code, 1) << failing.output;
  EXPECT_THAT(failing.output, HasSubstr("MODEL_LOAD"));
  // With --output json the whole stream is JSON Lines: the submit reply, then the events.
  const CommandResult json = Quantctl({"submit", bad_spec, "--watch", "--output", "json"});
  EXPECT_EQ(json.exit_code, 1) << json.output;
  std::istringstream lines(json.output);
  int documents = 0;
  for (std::string line; std::getline(lines, line);) {
    const auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded()) << "not one JSON document: " << line;
    if (documents++ == 0) {
      EXPECT_TRUE(parsed.contains("job")) << line;
    }
  }
  EXPECT_GE(documents, 3);

  const CommandResult slow = Quantctl({"submit", spec_});
  const std::string job_id = FirstLine(slow.output);
  ASSERT_TRUE(WaitFor(
      [&] {
        return Quantctl({"get", job_id}).output.find("RUNNING") != std::string::npos;
      },
      60s));
  EXPECT_EQ(Quantctl({"cancel", job_id}).exit_code, 0);
  EXPECT_EQ(Quantctl({"watch", job_id}).exit_code, 2);
}

TEST_F(QuantctlE2ETest, TokensAreCheckedAndConfigFileIsRead) {
  std::ofstream(dir_ + "/tokens") << "alice-token alice user\nworker-token w1 worker\n";
  StartScheduler({"--tokens_file=" + dir_ + "/tokens"});
  const CommandResult anonymous = Quantctl({"list"});
  EXPECT_EQ(anonymous.exit_code, 77);
  EXPECT_THAT(anonymous.output, HasSubstr("QUANTD_TOKEN"));
  EXPECT_EQ(Quantctl({"list", "--token", "wrong"}).exit_code, 77);
  EXPECT_EQ(Quantctl({"list"}, {{"QUANTD_TOKEN", "alice-token"}}).exit_code, 0);
  std::ofstream(dir_ + "/quantctl.yaml") << "token: alice-token\n";
  EXPECT_EQ(Quantctl({"list"}, {{"QUANTCTL_CONFIG", dir_ + "/quantctl.yaml"}}).exit_code, 0);
  std::ofstream(dir_ + "/typo.yaml") << "tokne: alice-token\n";
  const CommandResult typo = Quantctl({"list"}, {{"QUANTCTL_CONFIG", dir_ + "/typo.yaml"}});
  EXPECT_EQ(typo.exit_code, 65);
  EXPECT_THAT(typo.output, HasSubstr("unknown key \"tokne\""));
}

}  // namespace
}  // namespace quantd::e2e
