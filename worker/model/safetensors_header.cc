#include "worker/model/safetensors_header.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace quantd::model {
namespace {

struct DTypeInfo {
  StDType dtype;
  absl::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 12> kDTypes = {{
    {StDType::kF64, "F64", 8},
    {StDType::kF32, "F32", 4},
    {StDType::kF16, "F16", 2},
    {StDType::kBF16, "BF16", 2},
    {StDType::kI64, "I64", 8},
    {StDType::kI32, "I32", 4},
    {StDType::kI16, "I16", 2},
    {StDType::kI8, "I8", 1},
    {StDType::kU8, "U8", 1},
    {StDType::kBool, "BOOL", 1},
    {StDType::kF8E4M3, "F8_E4M3", 1},
    {StDType::kF8E5M2, "F8_E5M2", 1},
}};

absl::Status Invalid(absl::string_view label, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors file ", label, ": ", what));
}

absl::Status InvalidTensor(absl::string_view label, absl::string_view tensor,
                           absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors file ", label, ", tensor '", tensor, "': ", what));
}

absl::Status ParseEntry(const std::string& name, const nlohmann::json& value, uint64_t data_size,
                        absl::string_view label, SafetensorsEntry* entry) {
  if (!value.is_object()) return InvalidTensor(label, name, "entry is not a JSON object");
  entry->name = name;

  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end() || !dtype_it->is_string()) {
    return InvalidTensor(label, name, "missing or non-string \"dtype\"");
  }
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  auto known = std::find_if(kDTypes.begin(), kDTypes.end(),
                            [&](const DTypeInfo& info) { return info.name == dtype_name; });
  if (known == kDTypes.end()) {
    return InvalidTensor(label, name, absl::StrCat("unknown dtype \"", dtype_name, "\""));
  }
  entry->dtype = known->dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end() || !shape_it->is_array()) {
    return InvalidTensor(label, name, "missing or non-array \"shape\"");
  }
  if (shape_it->size() > 16) return InvalidTensor(label, name, "more than 16 dimensions");
  // Element count with overflow checks; a count above 2^62 cannot be a real tensor.
  constexpr uint64_t kLimit = uint64_t{1} << 62;
  uint64_t elements = 1;
  for (const auto& dim : *shape_it) {
    if (!dim.is_number_unsigned()) {
      return InvalidTensor(label, name, "shape entries must be non-negative integers");
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d > kLimit || (d != 0 && elements > kLimit / d)) {
      return InvalidTensor(label, name, "shape is too large");
    }
    elements *= d;
    entry->shape.push_back(static_cast<int64_t>(d));
  }

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    return InvalidTensor(label, name, "\"data_offsets\" must be two non-negative integers");
  }
  entry->begin = (*offsets_it)[0].get<uint64_t>();
  entry->end = (*offsets_it)[1].get<uint64_t>();
  if (entry->end < entry->begin) {
    return InvalidTensor(label, name, "data_offsets end before they begin");
  }
  if (entry->end > data_size) {
    return InvalidTensor(label, name,
                         absl::StrCat("data_offsets [", entry->begin, ", ", entry->end,
                                      ") reach past the data section (", data_size,
                                      " bytes); the file is truncated or corrupt"));
  }
  if (elements > kLimit / known->size || entry->end - entry->begin != elements * known->size) {
    return InvalidTensor(
        label, name,
        absl::StrCat("byte range holds ", entry->end - entry->begin,
                     " bytes but the shape and dtype need ", elements * known->size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view StDTypeName(StDType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return info.name;
  }
  return "?";
}

size_t StDTypeSize(StDType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return info.size;
  }
  return 0;
}

bool IsFloatWeightDType(StDType dtype) {
  return dtype == StDType::kF32 || dtype == StDType::kF16 || dtype == StDType::kBF16;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(const uint8_t* file, size_t size,
                                                         absl::string_view label) {
  if (size < 8) {
    return absl::DataLossError(absl::StrCat("safetensors file ", label, ": only ", size,
                                            " bytes, shorter than the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file[i];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Invalid(label, absl::StrCat("header length ", header_len, " exceeds the ",
                                       kMaxSafetensorsHeaderBytes, "-byte limit"));
  }
  if (header_len > size - 8) {
    return absl::DataLossError(absl::StrCat("safetensors file ", label, ": header length ",
                                            header_len, " reaches past the end of the file (", size,
                                            " bytes); the file is truncated"));
  }
  const char* text = reinterpret_cast<const char*>(file + 8);
  nlohmann::json root = nlohmann::json::parse(text, text + header_len, nullptr,
                                              /*allow_exceptions=*/false);
  if (root.is_discarded()) return Invalid(label, "header is not valid JSON");
  if (!root.is_object()) return Invalid(label, "header is not a JSON object");

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  header.data_size = size - header.data_offset;
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return Invalid(label, "__metadata__ is not a JSON object");
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          return Invalid(label, absl::StrCat("__metadata__ value of '", mkey, "' is not a string"));
        }
        header.metadata[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    SafetensorsEntry entry;
    auto status = ParseEntry(key, value, header.data_size, label, &entry);
    if (!status.ok()) return status;
    header.tensors.push_back(std::move(entry));
  }

  // Ranges must not overlap (empty tensors occupy no bytes and may share an offset).
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& entry : header.tensors) {
    if (entry.end > entry.begin) by_offset.push_back(&entry);
  }
  std::sort(
      by_offset.begin(), by_offset.end(),
      [](const SafetensorsEntry* a, const SafetensorsEntry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      return InvalidTensor(
          label, by_offset[i]->name,
          absl::StrCat("byte range overlaps tensor '", by_offset[i - 1]->name, "'"));
    }
  }
  return header;
}

}  // namespace quantd::model
