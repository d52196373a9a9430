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

bool IsArtifactDir(const std::string& dir) {
  std::error_code error;
  return std::filesystem::is_regular_file(dir + "/" + kQuantConfigFile, error);
}

}  // namespace quantd::exporter
