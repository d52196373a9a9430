// Device names of jobs and commands (worker/model/device_choice.h).
#include "worker/model/device_choice.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quantd::model {
namespace {

using ::testing::HasSubstr;

TEST(DeviceChoiceTest, ChoosesTheCpuOrTheFirstVisibleGpu) {
  auto automatic = ChooseDevice("auto");
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ(automatic->is_cuda(), torch::cuda::is_available());
  EXPECT_EQ(ChooseDevice("")->str(), automatic->str());
  EXPECT_TRUE(ChooseDevice("cpu")->is_cpu());
}

TEST(DeviceChoiceTest, RejectsUnknownNamesAndMissingGpus) {
  for (const std::string bad : {"gpu", "cuda:", "cuda:-1", "cuda:x", "CPU"}) {
    auto device = ChooseDevice(bad);
    EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  if (torch::cuda::is_available()) {
    auto missing = ChooseDevice("cuda:" + std::to_string(torch::cuda::device_count()));
    EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  } else {
    auto cuda = ChooseDevice("cuda");
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(cuda.status().message(), HasSubstr("no CUDA device"));
  }
}

}  // namespace
}  // namespace quantd::model
