#include "worker/export/tensor_io.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "nlohmann/json.hpp"
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
  return std::filesystem::is_regular_file(dir + "/" + kQuantConfigFile, error) ||
         std::filesystem::is_regular_file(dir + "/" + kManifestFile, error);
}

bool IsReplaceableArtifactDir(const std::string& dir) {
  std::ifstream in(dir + "/" + kManifestFile);
  if (!in) return false;
  const nlohmann::json manifest = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!manifest.is_object() || manifest.value("format", std::string()) != kFormatName ||
      !manifest.contains("files") || !manifest.at("files").is_array()) {
    return false;
  }
  std::set<std::string> listed = {kManifestFile};
  for (const auto& file : manifest.at("files")) {
    if (file.is_object() && file.contains("name") && file.at("name").is_string()) {
      listed.insert(file.at("name").get<std::string>());
    }
  }
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (!entry.is_regular_file(error) || entry.is_symlink(error) ||
        listed.count(entry.path().filename().string()) == 0) {
      return false;
    }
  }
  return !error;
}

}  // namespace quantd::exporter
