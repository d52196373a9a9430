// The names of the compute dtypes, as job specs, command flags and exports spell them.
#ifndef QUANTD_WORKER_MODEL_DTYPE_NAMES_H_
#define QUANTD_WORKER_MODEL_DTYPE_NAMES_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"

namespace quantd::model {

// "float32", "bfloat16", "float16"; any other dtype by LibTorch's own name (e.g. "Int").
std::string DTypeName(torch::ScalarType dtype);
// The inverse of DTypeName for the three float types; INVALID_ARGUMENT otherwise.
absl::StatusOr<torch::ScalarType> DTypeFromName(const std::string& name);

}  // namespace quantd::model

#endif  // QUANTD_WORKER_MODEL_DTYPE_NAMES_H_
