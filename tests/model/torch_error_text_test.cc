// A real LibTorch error, as jobs and commands show it (proto/common/error_text.h).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/common/error_text.h"
#include "worker/model/llama.h"

namespace quantd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(TorchErrorTextTest, ALibTorchErrorKeepsItsMessageAndLosesItsFrames) {
  std::string what;
  try {
    (void)torch::matmul(torch::ones({2, 3}), torch::ones({2, 3}));
  } catch (const c10::Error& e) {
    what = e.what();
  }
  ASSERT_THAT(what, HasSubstr("Exception raised from")) << "LibTorch's format changed: " << what;
  const std::string shown = WithoutBacktrace(what);
  EXPECT_THAT(shown, HasSubstr("cannot be multiplied"));
  EXPECT_THAT(shown, Not(HasSubstr("Exception raised from")));
  EXPECT_THAT(shown, Not(HasSubstr("frame #")));
}

}  // namespace
}  // namespace quantd
