#include "worker/model/checkpoint.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "proto/common/status_macros.h"

namespace quantd::model {
namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

torch::ScalarType TorchType(StDType dtype) {
  switch (dtype) {
    case StDType::kF16:
      return torch::kFloat16;
    case StDType::kBF16:
      return torch::kBFloat16;
    default:
      return torch::kFloat32;
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& path) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  if (!IsDirectory(path)) {
    RETURN_IF_ERROR(checkpoint->AddFile(path, nullptr));
    return checkpoint;
  }
  const std::string index_path = path + "/model.safetensors.index.json";
  const std::string single_path = path + "/model.safetensors";
  if (!IsFile(index_path)) {
    if (!IsFile(single_path)) {
      return absl::NotFoundError(
          absl::StrCat("no model.safetensors or ", "model.safetensors.index.json in ", path));
    }
    RETURN_IF_ERROR(checkpoint->AddFile(single_path, nullptr));
    return checkpoint;
  }

  std::ifstream in(index_path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::InternalError(absl::StrCat("cannot read ", index_path));
  nlohmann::json index = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a JSON object"));
  }
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object() || map_it->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": missing or empty \"weight_map\" object"));
  }
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : map_it->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry of '", name, "' is not a file name"));
    }
    const std::string& file = shard.get_ref<const std::string&>();
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry of '", name, "' names '", file,
                       "', which is not a plain file name in the model directory"));
    }
    by_shard[file].push_back(name);
  }
  for (const auto& [file, names] : by_shard) {
    RETURN_IF_ERROR(checkpoint->AddFile(path + "/" + file, &names));
  }
  return checkpoint;
}

absl::Status Checkpoint::AddFile(const std::string& path, const std::vector<std::string>* only) {
  ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  ASSIGN_OR_RETURN(SafetensorsHeader header,
                   ParseSafetensorsHeader(file->data(), file->size(), path));
  std::set<std::string> wanted;
  if (only != nullptr) wanted.insert(only->begin(), only->end());
  for (auto& entry : header.tensors) {
    if (only != nullptr && wanted.erase(entry.name) == 0) continue;
    if (tensors_.count(entry.name) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", entry.name, "' appears in both ",
                                                     tensors_[entry.name].file->path(), " and ",
                                                     path));
    }
    Located located;
    located.file = file;
    located.data_offset = header.data_offset;
    located.entry = std::move(entry);
    tensors_.emplace(located.entry.name, std::move(located));
  }
  if (!wanted.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path, " lacks tensor '",
                                                   *wanted.begin(),
                                                   "' that the index assigns to it"));
  }
  return absl::OkStatus();
}

bool Checkpoint::Contains(const std::string& name) const { return tensors_.count(name) != 0; }

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  for (const auto& [name, unused] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<SafetensorsEntry> Checkpoint::Entry(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
  }
  return it->second.entry;
}

absl::StatusOr<torch::Tensor> Checkpoint::Load(const std::string& name,
                                               torch::ScalarType dtype) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
  }
  const Located& located = it->second;
  const SafetensorsEntry& entry = located.entry;
  if (!IsFloatWeightDType(entry.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file ", located.file->path(), ", tensor '", name, "': dtype ",
                     StDTypeName(entry.dtype), " is not supported for weights (F32, F16 or BF16)"));
  }
  try {
    const torch::ScalarType stored = TorchType(entry.dtype);
    uint8_t* bytes = located.file->data() + located.data_offset + entry.begin;
    const bool aligned = reinterpret_cast<uintptr_t>(bytes) % StDTypeSize(entry.dtype) == 0;
    std::shared_ptr<MappedFile> keep = located.file;
    torch::Tensor tensor;
    if (aligned) {
      tensor = torch::from_blob(
          bytes, entry.shape, [keep](void*) {}, torch::TensorOptions().dtype(stored));
    } else {
      tensor = torch::empty(entry.shape, torch::TensorOptions().dtype(stored));
      std::memcpy(tensor.data_ptr(), bytes, entry.end - entry.begin);
    }
    if (stored != dtype) tensor = tensor.to(dtype);
    return tensor;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("loading tensor '", name, "' from ", located.file->path(), ": ", e.what()));
  }
}

absl::StatusOr<torch::Tensor> Checkpoint::Load(const std::string& name, torch::ScalarType dtype,
                                               const std::vector<int64_t>& expected_shape) const {
  ASSIGN_OR_RETURN(SafetensorsEntry entry, Entry(name));
  if (entry.shape != expected_shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file ", tensors_.at(name).file->path(), ", tensor '", name,
                     "': shape ", ShapeString(entry.shape),
                     " disagrees with config.json, which implies ", ShapeString(expected_shape)));
  }
  return Load(name, dtype);
}

absl::StatusOr<torch::Tensor> Checkpoint::LoadStored(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
  }
  const Located& located = it->second;
  const SafetensorsEntry& entry = located.entry;
  torch::ScalarType stored;
  switch (entry.dtype) {
    case StDType::kF64:
      stored = torch::kFloat64;
      break;
    case StDType::kF32:
      stored = torch::kFloat32;
      break;
    case StDType::kF16:
      stored = torch::kFloat16;
      break;
    case StDType::kBF16:
      stored = torch::kBFloat16;
      break;
    case StDType::kI64:
      stored = torch::kInt64;
      break;
    case StDType::kI32:
      stored = torch::kInt32;
      break;
    case StDType::kI16:
      stored = torch::kInt16;
      break;
    case StDType::kI8:
      stored = torch::kInt8;
      break;
    case StDType::kU8:
      stored = torch::kUInt8;
      break;
    case StDType::kBool:
      stored = torch::kBool;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors file ", located.file->path(), ", tensor '", name, "': dtype ",
                       StDTypeName(entry.dtype), " cannot be loaded"));
  }
  try {
    torch::Tensor tensor = torch::empty(entry.shape, torch::TensorOptions().dtype(stored));
    std::memcpy(tensor.data_ptr(), located.file->data() + located.data_offset + entry.begin,
                entry.end - entry.begin);
    return tensor;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("loading tensor '", name, "' from ", located.file->path(), ": ", e.what()));
  }
}

std::string Checkpoint::FileOf(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? std::string() : it->second.file->path();
}

}  // namespace quantd::model
