#include "worker/model/device_choice.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "worker/model/dtype_names.h"

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

absl::Status CheckComputeDtype(const torch::Device& device, torch::ScalarType dtype) {
  const std::string name = DTypeName(dtype);
  if (!torch::isFloatingType(dtype)) {
    return absl::InvalidArgumentError("compute dtype " + name + ": not a floating type");
  }
  try {
    const torch::Tensor probe =
        torch::ones({2, 2}, torch::TensorOptions().dtype(dtype).device(device));
    (void)torch::matmul(probe, probe);
  } catch (const c10::Error& e) {
    const std::string why = e.what_without_backtrace();
    return absl::InvalidArgumentError(
        absl::StrCat("compute dtype ", name, " is not available on ", device.str(),
                     " with this LibTorch (", why.substr(0, why.find('\n')),
                     "); use float32 or bfloat16 there", device.is_cpu() ? ", or a GPU" : ""));
  }
  return absl::OkStatus();
}

}  // namespace quantd::model
