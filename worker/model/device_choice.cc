#include "worker/model/device_choice.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace quantd::model {

absl::StatusOr<torch::Device> ChooseDevice(const std::string& requested) {
  if (requested.empty() || requested == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  if (requested == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (requested != "cuda" && !(absl::StartsWith(requested, "cuda:") &&
                               absl::SimpleAtoi(requested.substr(5), &index) && index >= 0)) {
    return absl::InvalidArgumentError("device: expected auto, cpu, cuda or cuda:N, got \"" +
                                      requested + "\"");
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError("device " + requested +
                                         ": this LibTorch has no CUDA device to use");
  }
  if (index >= static_cast<int>(torch::cuda::device_count())) {
    return absl::FailedPreconditionError("device " + requested + ": only " +
                                         std::to_string(torch::cuda::device_count()) +
                                         " CUDA device(s) visible");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace quantd::model
