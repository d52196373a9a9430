// Device names of jobs and commands (worker/model/device_choice.h).
#include "worker/model/device_choice.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "torch/version.h"
#include "worker/model/llama.h"

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

// The probe agrees with what a model can do: where it says yes, a forward pass in that dtype
// runs; where it says no, loading fails with the reason instead of a forward pass failing later.
TEST(DeviceChoiceTest, ComputeDtypeProbeAgreesWithTheModel) {
  const torch::Device cpu(torch::kCPU);
  EXPECT_TRUE(CheckComputeDtype(cpu, torch::kFloat32).ok());
  EXPECT_TRUE(CheckComputeDtype(cpu, torch::kBFloat16).ok());
  const absl::Status integer = CheckComputeDtype(cpu, torch::kInt32);
  EXPECT_EQ(integer.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(integer.message(), HasSubstr("not a floating type"));

  const absl::Status half = CheckComputeDtype(cpu, torch::kFloat16);
#if TORCH_VERSION_MAJOR < 2
  EXPECT_FALSE(half.ok()) << "LibTorch 1.13 has no float16 matmul on the CPU";
#endif
  LoadOptions options;
  options.dtype = torch::kFloat16;
  auto model = LlamaModel::Load(std::string(QUANTD_SHARED_DATA) + "/models/stories260K", options);
  if (half.ok()) {
    ASSERT_TRUE(model.ok()) << model.status();
    ForwardRequest request;
    request.input_ids = torch::tensor({{1, 400, 401}}, torch::kInt64);
    EXPECT_TRUE((*model)->Forward(request).ok());
  } else {
    EXPECT_EQ(half.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(half.message(), HasSubstr("float16 is not available on cpu"));
    EXPECT_THAT(half.message(), HasSubstr("use float32 or bfloat16"));
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(model.status().message(), half.message());
  }
}

}  // namespace
}  // namespace quantd::model
