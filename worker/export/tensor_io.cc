#include "worker/export/tensor_io.h"

#include <filesystem>

#include "worker/export/artifact_format.h"

namespace quantd::exporter {

model::StDType StDTypeOf(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat16:
      return model::StDType::kF16;
    case torch::kBFloat16:
      return model::StDType::kBF16;
    case torch::kInt32:
      return model::StDType::kI32;
    case torch::kInt8:
      return model::StDType::kI8;
    case torch::kUInt8:
      return model::StDType::kU8;
    default:
      return model::StDType::kF32;
  }
}

std::string DTypeName(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return "float32";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kFloat16:
      return "float16";
    default:
      return "unsupported";
  }
}

absl::StatusOr<torch::ScalarType> DTypeFromName(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  return absl::InvalidArgumentError("unknown dtype \"" + name + "\"");
}

bool IsArtifactDir(const std::string& dir) {
  std::error_code error;
  return std::filesystem::is_regular_file(dir + "/" + kQuantConfigFile, error);
}

}  // namespace quantd::exporter
