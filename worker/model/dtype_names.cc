#include "worker/model/dtype_names.h"

namespace quantd::model {

std::string DTypeName(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return "float32";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kFloat16:
      return "float16";
    default:
      return c10::toString(dtype);
  }
}

absl::StatusOr<torch::ScalarType> DTypeFromName(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  return absl::InvalidArgumentError("unknown dtype \"" + name + "\"");
}

}  // namespace quantd::model
