// Which LibTorch device a job or a command computes on, from its name.
#ifndef QUANTD_WORKER_MODEL_DEVICE_CHOICE_H_
#define QUANTD_WORKER_MODEL_DEVICE_CHOICE_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"

namespace quantd::model {

// `requested`: "" or "auto" (cuda:0 when LibTorch sees a CUDA device, else cpu), "cpu",
// "cuda" or "cuda:N". FAILED_PRECONDITION when CUDA is asked for and LibTorch has none (a CPU
// build of LibTorch, or no visible device) or not that many; INVALID_ARGUMENT for anything
// else.
absl::StatusOr<torch::Device> ChooseDevice(const std::string& requested);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_DEVICE_CHOICE_H_
