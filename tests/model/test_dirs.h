// Test helper: a fresh scratch directory per test under the build tree.
#ifndef QUANTD_TESTS_MODEL_TEST_DIRS_H_
#define QUANTD_TESTS_MODEL_TEST_DIRS_H_

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace quantd::model::testing {

inline std::string ScratchDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(QUANTD_BINARY_DIR) / "test-scratch" /
                              (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::string Stories260K() { return std::string(QUANTD_SHARED_DATA) + "/models/stories260K"; }

}  // namespace quantd::model::testing

#endif  // QUANTD_TESTS_MODEL_TEST_DIRS_H_
