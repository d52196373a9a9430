// Which LibTorch device a job or a command computes on, from its name, and whether it can
// compute in a given dtype.
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

// OK when this LibTorch can compute in `dtype` on `device`, found by multiplying two tiny
// matrices there. INVALID_ARGUMENT, naming both and what to use instead, for a non-floating
// dtype or a pair it cannot run (e.g. float16 on the CPU with LibTorch 1.13, which has no
// float16 matmul there); without this such jobs fail mid-run with LibTorch's stack trace.
absl::Status CheckComputeDtype(const torch::Device& device, torch::ScalarType dtype);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_DEVICE_CHOICE_H_
