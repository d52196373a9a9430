// A gtest fixture for tests against a real quantd process: a scratch folder per test with a
// tokens file, quantd started on its own database there, and quantd's log printed when the
// test fails. The folder is removed afterwards.
#ifndef QUANTD_TESTS_SERVER_QUANTD_FIXTURE_H_
#define QUANTD_TESTS_SERVER_QUANTD_FIXTURE_H_

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server/harness.h"

namespace quantd::testing {

// Alice (a user) and the workers' token.
inline constexpr char kAliceAndWorkerTokens[] =
    "alice-token alice user\nworker-token workers worker\n";

class QuantdFixture : public ::testing::Test {
 protected:
  // Makes the scratch folder <TempDir>/<prefix>_<pid>_<test name> with `tokens` as its tokens
  // file. Call it from SetUp.
  void MakeScratch(const std::string& prefix, const std::string& tokens) {
    dir_ = ::testing::TempDir() + "/" + prefix + "_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    const std::string command = "rm -rf '" + dir_ + "' && mkdir -p '" + dir_ + "'";
    ASSERT_EQ(std::system(command.c_str()), 0);
    std::ofstream(dir_ + "/tokens") << tokens;
  }

  void TearDown() override {
    if (HasFailure()) {
      std::ifstream log(dir_ + "/quantd.log");
      std::cerr << "---- quantd.log ----\n" << log.rdbuf() << "\n";
    }
    process_.reset();
    const std::string command = "rm -rf '" + dir_ + "'";
    (void)std::system(command.c_str());
  }

  // quantd on <dir_>/quantd.db with the tokens file and a 1 s shutdown grace, then `extra`;
  // its stderr goes to <dir_>/<log>.
  void StartQuantdProcess(const std::vector<std::string>& extra,
                          const std::string& log = "quantd.log") {
    std::vector<std::string> args = {"--db=" + dir_ + "/quantd.db",
                                     "--tokens_file=" + dir_ + "/tokens", "--shutdown_grace=1s"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = QuantdProcess::Start(QuantdBinary(), args, dir_ + "/" + log);
    ASSERT_TRUE(process.ok()) << process.status();
    process_ = std::move(*process);
  }

  std::string dir_;
  std::unique_ptr<QuantdProcess> process_;
};

}  // namespace quantd::testing

#endif  // QUANTD_TESTS_SERVER_QUANTD_FIXTURE_H_
