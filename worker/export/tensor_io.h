// Conversions between LibTorch dtypes, safetensors dtypes and the dtype names of an export.
#ifndef QUANTD_WORKER_EXPORT_TENSOR_IO_H_
#define QUANTD_WORKER_EXPORT_TENSOR_IO_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"
#include "worker/model/safetensors_header.h"

namespace quantd::exporter {

// F32, F16, BF16, I32, I8, U8 (others map to F32; callers pass only these).
model::StDType StDTypeOf(torch::ScalarType dtype);
// "float32", "bfloat16", "float16" (others: "unsupported").
std::string DTypeName(torch::ScalarType dtype);
// The inverse of DTypeName for the three float types; INVALID_ARGUMENT otherwise.
absl::StatusOr<torch::ScalarType> DTypeFromName(const std::string& name);

}  // namespace quantd::exporter

#endif  // QUANTD_WORKER_EXPORT_TENSOR_IO_H_
